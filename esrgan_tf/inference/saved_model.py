"""One of our SavedModel exports as an `Engine` (its `upscale_float` signature).

The export itself (signatures, model facts, version layout) is `esrgan_tf.export.saved_model`.
"""

from __future__ import annotations

from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from esrgan_tf.core.errors import ModelError
from esrgan_tf.export.saved_model import read_model_facts, resolve_version_dir
from esrgan_tf.inference.engine import Engine


def saved_model_engine(path: str, precision: Optional[str] = "float32") -> Engine:
  """Loads one of our SavedModel exports as an `Engine` calling its `upscale_float` signature.

  Args:
    path: A version directory, or an export base (the highest integer version is used).
    precision: The precision is fixed at export time; a different request is logged and the
      export's own precision is used. None: no preference.

  Returns:
    An `Engine` (scale and info from the asset JSON).

  Raises:
    ModelError: Not a SavedModel, not ours, or it fails to load.
  """
  version_dir = resolve_version_dir(path)
  facts = read_model_facts(version_dir)
  exported = facts.get("precision", "float32")
  if precision is not None and precision != exported:
    logging.warning("%s was exported with precision %s; precision=%s is ignored (precision is "
                    "fixed at export: re-export with --precision=%s)", version_dir, exported,
                    precision, precision)
  try:
    loaded = tf.saved_model.load(version_dir)
    signature = loaded.signatures["upscale_float"]
  except KeyError:
    raise ModelError(f"{version_dir}: no upscale_float signature") from None
  except Exception as e:  # TF raises many types for a corrupt SavedModel.
    raise ModelError(f"{version_dir}: SavedModel fails to load ({type(e).__name__}: {e})") from e

  def fn(batch: np.ndarray) -> np.ndarray:
    return signature(images=tf.convert_to_tensor(batch, tf.float32))["upscaled"].numpy()

  fn.loaded = loaded  # keeps the restored object (and its variables) alive.
  info = {"precision": exported, "arch": facts.get("arch", {}), "source": facts.get("source", ""),
          "version_dir": version_dir, "max_pixels": facts.get("max_pixels")}
  return Engine(fn=fn, scale=int(facts["scale"]), name=version_dir, info=info)
