"""One of our SavedModel exports as an `Engine` (its float signature; one per head).

The export itself (signatures, model facts, version layout) is `esrgan_tf.export.saved_model`.
"""

from __future__ import annotations

from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from esrgan_tf.core.errors import ModelError
from esrgan_tf.export import versions
from esrgan_tf.export.saved_model import read_model_facts, resolve_version_dir
from esrgan_tf.inference.engine import Engine


def saved_model_engine(path: str, precision: Optional[str] = "float32",
                       head: Optional[str] = None) -> Engine:
  """Loads one of our SavedModel exports as an `Engine` calling its float signature.

  Args:
    path: A version directory, or an export base (the highest integer version is used).
    precision: The precision is fixed at export time; a different request is logged and the
      export's own precision is used. None: no preference.
    head: A multi-head export's head (its `upscale_<head>_float` signature); None: the default
      head (`upscale_float`).

  Returns:
    An `Engine` (scale and info from the asset JSON).

  Raises:
    ModelError: Not a SavedModel, not ours, it fails to load, or no such head.
  """
  return saved_model_engines(path, precision, heads=(head,))[head]


def saved_model_engines(path: str, precision: Optional[str] = "float32",
                        heads=None) -> dict:
  """{head: Engine} sharing one load; `heads` default: every head of a multi-head export, or
  [None] (the default output). Other arguments and errors as `saved_model_engine`."""
  version_dir = resolve_version_dir(path)
  facts = read_model_facts(version_dir)
  if heads is None:
    heads = [h["name"] for h in facts.get("heads", ())] or [None]
  try:
    outputs = {head: versions.float_signature(facts, head) for head in heads}
  except KeyError as e:
    raise ModelError(f"{version_dir}: {e.args[0]}") from None
  exported = facts.get("precision", "float32")
  if precision is not None and precision != exported:
    logging.warning("%s was exported with precision %s; precision=%s is ignored (precision is "
                    "fixed at export: re-export with --precision=%s)", version_dir, exported,
                    precision, precision)
  try:
    loaded = tf.saved_model.load(version_dir)
  except Exception as e:  # TF raises many types for a corrupt SavedModel.
    raise ModelError(f"{version_dir}: SavedModel fails to load ({type(e).__name__}: {e})") from e
  info = {"precision": exported, "arch": facts.get("arch", {}), "source": facts.get("source", ""),
          "version_dir": version_dir, "max_pixels": facts.get("max_pixels")}
  if facts.get("heads"):
    info.update(default_head=facts.get("default_head"),
                heads={h["name"]: h["scale"] for h in facts["heads"]})
  upscalers = {}
  for head, (name, scale) in outputs.items():
    if name not in loaded.signatures:
      raise ModelError(f"{version_dir}: no {name} signature")
    signature = loaded.signatures[name]

    def fn(batch: np.ndarray, signature=signature) -> np.ndarray:
      return signature(images=tf.convert_to_tensor(batch, tf.float32))["upscaled"].numpy()

    fn.loaded = loaded  # keeps the restored object (and its variables) alive.
    head_info = {"head": head or facts["default_head"]} if facts.get("heads") else {}
    upscalers[head] = Engine(fn=fn, scale=scale, info={**info, **head_info},
                             name=version_dir + (f" [{head}]" if head else ""))
  return upscalers
