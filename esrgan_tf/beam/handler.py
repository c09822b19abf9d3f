"""The RunInference model handler: a `--model` loaded once per worker process (or per machine).

Beam's `TFModelHandlerTensor` does not fit Keras 3 SavedModels (it needs tensorflow_hub and
tf_keras, then fails on `_UserObject` or on stacking images of different sizes), and an image
here is not one tensor: it is tiled, its alpha is upscaled separately, it may be resized. So the
handler runs exactly what `esrgan-upscale` runs per image, `batch.upscale_image`, one image
per batch (sizes differ; the model's batch is `--tile_batch` tiles of one image).

Model sharing: with `large_model=True` Beam loads one model per machine and hands the worker
processes a proxy that forwards method calls only (`apache_beam.utils.multi_process_shared`),
so the loaded object, `LoadedModel`, exposes everything through methods; `run_inference` builds
an `Engine` view of it that the tiler uses the same way whether the model is local or proxied.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Iterable, Optional, Sequence

from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from esrgan_tf.beam import io
from esrgan_tf.core.errors import ModelError
from esrgan_tf.images import image_io
from esrgan_tf.inference import batch as batch_lib
from esrgan_tf.inference import engine as engine_lib
from esrgan_tf.inference import resolver
from esrgan_tf.inference.resolver import ModelSpec
from esrgan_tf.weights import registry

logger = logging.getLogger(__name__)

NAMESPACE = "esrgan_beam"
_MODEL_LOADS = Metrics.counter(NAMESPACE, "model_loads")
# ModelSpec → the model `model_scale` loaded in this process: a runner that works in the
# launcher's own process (the FnApiRunner in memory) takes it over instead of loading it again.
_LAUNCHER_COPY: dict = {}


def load_engine(spec: ModelSpec) -> engine_lib.Engine:
  """Loads the model on this machine (URLs staged to local files first).

  "auto" precision is resolved here, so each worker's CPU decides.

  Raises:
    ModelError: As `resolver.load_engine`, or a URL that cannot be copied.
  """
  try:
    model = io.stage(spec.model)
    blend_with = io.stage(spec.blend_with) if spec.blend_with else None
  except (OSError, ValueError) as e:  # BeamIOError is an OSError.
    raise ModelError(f"{spec.model}: cannot copy the model to this worker ({e})") from e
  return resolver.load_engine(dataclasses.replace(spec, model=model, blend_with=blend_with))


def model_scale(spec: ModelSpec) -> int:
  """The model's scale, for output names and the default --max_pixels, known at launch.

  A registry name answers from the registry (the launcher downloads nothing); anything else is
  loaded once here, which also reports a bad --model before any worker starts.

  Raises:
    ModelError: The model cannot be loaded.
  """
  if spec.model in registry.REGISTRY and not os.path.exists(spec.model):  # resolve_spec's rule
    return registry.REGISTRY[spec.model].scale
  upscaler = _LAUNCHER_COPY[spec] = load_engine(spec)
  return int(upscaler.scale)


class LoadedModel:
  """A loaded model behind methods only (what Beam's cross-process proxy can forward)."""

  def __init__(self, upscaler: engine_lib.Engine):
    self._upscaler = upscaler
    self._counted = False
    self._lock = threading.Lock()  # A worker runs several bundles at once, in threads.

  def upscale(self, batch):
    """float32 [N, H, W, C] in [0, 1] → float32 [N, sH, sW, C]."""
    return self._upscaler(batch)

  def facts(self) -> tuple:
    """(scale, name, input_size, max_batch) of the model."""
    u = self._upscaler
    return u.scale, u.name, u.input_size, u.max_batch

  def first_use(self) -> bool:
    """True exactly once per loaded model (counts loads where the load itself cannot count:
    a shared model loads outside any bundle, where Beam metrics are not collected)."""
    with self._lock:
      first, self._counted = not self._counted, True
    return first


def upscaler_view(model) -> engine_lib.Engine:
  """An `Engine` calling a `LoadedModel` (or a proxy of one) through its methods."""
  scale, name, input_size, max_batch = model.facts()
  return engine_lib.Engine(fn=model.upscale, scale=scale, name=name,
                               input_size=input_size, max_batch=max_batch)


class UpscaleModelHandler(ModelHandler[image_io.LoadedImage, image_io.LoadedImage, LoadedModel]):
  """Decoded image in, upscaled image out (what `image_io.write_image` writes), one per batch."""

  def __init__(self, spec: ModelSpec, options: batch_lib.Options, *, large_model: bool = False):
    """Initialises the handler.

    Args:
      spec: The model.
      options: Per-image processing (tile, overlap, tile batch, pre_pad, alpha, outscale).
      large_model: One model per machine, shared by its worker processes through a proxy
        (Beam's `share_model_across_processes`), instead of one per process.
    """
    # One image per batch: images differ in size, and a failure then fails that image alone.
    super().__init__(min_batch_size=1, max_batch_size=1, large_model=large_model)
    self._spec = spec
    self._options = options

  def load_model(self) -> LoadedModel:
    upscaler = _LAUNCHER_COPY.pop(self._spec, None)
    if upscaler is not None:
      logger.info("model %s (x%d) taken over from the launcher in process %d", self._spec.model,
                  upscaler.scale, os.getpid())
      return LoadedModel(upscaler)
    start = time.perf_counter()
    upscaler = load_engine(self._spec)
    # One line per load in the worker's log (Beam collects no metrics while a DoFn is set up).
    logger.info("loaded model %s (x%d) in process %d in %.1f s", self._spec.model,
                upscaler.scale, os.getpid(), time.perf_counter() - start)
    return LoadedModel(upscaler)

  def run_inference(self, batch: Sequence[image_io.LoadedImage], model: LoadedModel,
                    inference_args: Optional[dict[str, Any]] = None
                    ) -> Iterable[PredictionResult]:
    if model.first_use():
      _MODEL_LOADS.inc()
    upscaler = upscaler_view(model)
    return [PredictionResult(img, batch_lib.upscale_image(img, upscaler, self._options))
            for img in batch]
