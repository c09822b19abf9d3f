r"""esrgan-export: a generator → TF Serving SavedModel version, a .tflite, or a .onnx.

  esrgan-export --model=runs/x4/ --export_dir=exports/esrgan               # → exports/esrgan/1/
  esrgan-export --model=RealESRGAN_x4plus.pth --export_dir=exports/esrgan --format=both \
      --tflite_quantize=fp16 --tflite_input_size=64x64
  esrgan-export --model=g.keras --export_dir=exports/esrgan --format=tflite --tflite_quantize=int8
  esrgan-export --model=RealESRGAN_x4plus.pth --export_dir=exports/esrgan --format=onnx

The .tflite goes to `<export_dir>/esrgan_x<scale>_<H>x<W>_<quantize>.tflite` (TF Serving ignores
files in a model base directory); a multi-head model gives one per head,
`esrgan_<head>_x<scale>_<H>x<W>_<quantize>.tflite`, and one SavedModel with signatures per head.
none/fp16/dynamic files must pass the GPU-delegate compatibility check; int8 files (calibrated,
float32 islands) and int16x8 files are for CPU/NNAPI/DSP, not the GPU delegate.

The .onnx (tf2onnx, the `onnx` extra) goes to `<export_dir>/esrgan_x<scale>[_nhwc_uint8][_fp16]
.onnx` (a multi-head model: one per head, `esrgan_<head>_x...`): float32 [N, 3, H, W] in [0, 1]
→ [N, 3, sH, sW] with dynamic N/H/W (or uint8 NHWC with --onnx_layout=nhwc_uint8), the model
facts in its metadata. It has no pixel limit (--max_pixels is the SavedModel's): whatever runs it
bounds the input size.
"""

import dataclasses
import os

from absl import flags, logging

from esrgan_tf import cli
from esrgan_tf.cli import shared_flags
from esrgan_tf.core import precision as precision_lib
from esrgan_tf.core.errors import ModelError
from esrgan_tf.export import onnx as onnx_export
from esrgan_tf.export import tflite as tflite_modes  # TF-free at import
from esrgan_tf.export import versions

_MODEL = shared_flags.define_model_flags(
    server=False, threads=False, generators_only=True,
    precisions=precision_lib.INFERENCE_PRECISIONS,
    precision_default="float32", verb="exports")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Model base directory (TF Serving's).")
_FORMAT = flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite", "both", "onnx"],
                            "What to write: a SavedModel version, a .tflite, both, or a .onnx.")
_QUANTIZE = flags.DEFINE_enum(
    "tflite_quantize", "none", list(tflite_modes.QUANTIZE_MODES),
    "TFLite: none (float32), fp16 (float16 weights), dynamic (int8 weights, dynamic-range), "
    "int8 (calibrated int8 convolutions with float32 islands, see --int8_float_ops) or int16x8 "
    "(calibrated int16 activations, int8 weights: more accurate, but XNNPACK has no int16 "
    "kernels, so slow on CPUs). int8 and int16x8 files are for CPU/NNAPI/DSP, not the TFLite "
    "GPU delegate (it runs float models); see --calibration_dir.")
_FLOAT_OPS = flags.DEFINE_list(
    "int8_float_ops", None, "--tflite_quantize=int8: TFLite op types kept in float32 (float "
    "islands), comma-separated, e.g. ADD,MUL,LEAKY_RELU; empty = every op int8; default ADD,MUL "
    "(the residual additions and 0.2 scalings).")
_CALIBRATION_DIR = flags.DEFINE_string(
    "calibration_dir", None, "--tflite_quantize=int8/int16x8: images whose tiles (of "
    "--tflite_input_size) calibrate the activation ranges; default the bundled photos "
    "(esrgan_tf/samples/train).")
_INPUT_SIZE = flags.DEFINE_string("tflite_input_size", "64x64",
                                  "HxW of the static TFLite input (the tile size on device).")
_VERSION = flags.DEFINE_integer("version", None, "SavedModel version; default next free.")
_MAX_PIXELS = flags.DEFINE_integer("max_pixels", versions.GRAPH_MAX_PIXELS,
                                   "Per-image input pixel limit of the SavedModel signatures.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing version / .tflite.")
_ONNX_LAYOUT = flags.DEFINE_enum(
    "onnx_layout", "nchw_float", list(onnx_export.LAYOUTS),
    "ONNX input/output: nchw_float (float32 [N, C, H, W] in [0, 1], Real-ESRGAN's pytorch2onnx "
    "layout, what chaiNNer and ONNX Runtime tools expect) or nhwc_uint8 (uint8 pixels).")
_ONNX_WEIGHTS = flags.DEFINE_enum(
    "onnx_weights", "float32", list(onnx_export.WEIGHT_TYPES),
    "ONNX convolution weights: float32, or float16 (half the file; computed in float32).")
_ONNX_OPSET = flags.DEFINE_enum("onnx_opset", str(onnx_export.DEFAULT_OPSET),
                                [str(v) for v in onnx_export.OPSETS], "ONNX opset.")
_ONNX_LICENCE = flags.DEFINE_string(
    "onnx_licence", None, "Licence of the weights (SPDX) for the ONNX metadata; default: the "
    "published model's licence when --model is one, else 'unknown'.")
_GPU_CHECK = flags.DEFINE_bool(
    "gpu_check", True, "Refuse a .tflite the TFLite GPU delegate could not run fully. Applies to "
    "none/fp16 (and dynamic) files; int8/int16x8 files are for CPU (XNNPACK), NNAPI and DSPs, "
    "not the GPU delegate, and are not checked.")


def parse_size(text: str) -> tuple[int, int]:
  """'64x48' → (64, 48)."""
  try:
    h, w = (int(part) for part in text.lower().split("x"))
  except ValueError:
    raise cli.usage(f"--tflite_input_size must look like HxW (e.g. 64x64), got {text!r}")
  if h < 1 or w < 1:
    raise cli.usage(f"--tflite_input_size must be positive, got {text!r}")
  return h, w


def tflite_file_name(scale: int, size: tuple[int, int], quantize: str, head=None) -> str:
  """esrgan_x4_64x64_none.tflite, or esrgan_<head>_x4_64x64_none.tflite for a head."""
  prefix = "esrgan" if head is None else f"esrgan_{head}"
  return f"{prefix}_x{scale}_{size[0]}x{size[1]}_{quantize}.tflite"


def _source(model: str) -> str:
  """What the export's facts record as its source: a path made absolute, a published name as is."""
  return model if not os.path.exists(model) else os.path.abspath(model)


def _single_outputs(generator):
  """(head or None, single-output generator) pairs: a multi-head model's trunk + each head as a
  plain RRDBNet (a .tflite holds one static-shape function), else the generator itself. One
  copy at a time."""
  heads = getattr(generator, "head_names", None)
  if heads is None:
    yield None, generator
    return
  for head in heads:
    yield head, generator.to_rrdbnet(head)


def main(argv):
  if len(argv) > 1:
    raise cli.usage(f"unexpected arguments: {argv[1:]}")
  if not _EXPORT_DIR.value:
    raise cli.usage("--export_dir is required")
  spec = _MODEL.spec()
  size = parse_size(_INPUT_SIZE.value)
  if _CALIBRATION_DIR.value and _QUANTIZE.value not in ("int8", "int16x8"):
    raise cli.usage("--calibration_dir applies to --tflite_quantize=int8/int16x8 only")
  if _FLOAT_OPS.value is not None and _QUANTIZE.value != "int8":
    raise cli.usage("--int8_float_ops applies to --tflite_quantize=int8 only")
  if _FORMAT.value in ("tflite", "onnx") and spec.precision != "float32":
    raise cli.usage("--precision applies to the SavedModel; TFLite uses --tflite_quantize, "
                    "ONNX --onnx_weights")
  missing = onnx_export.missing_packages() if _FORMAT.value == "onnx" else []
  if missing:  # before the model loads
    cli.fail(f"--format=onnx needs {', '.join(missing)}: pip install 'esrgan_tf[onnx]'")
  # pylint: disable=g-import-not-at-top  (TensorFlow after cli.run has set its log level)
  from esrgan_tf.export import saved_model, tflite
  from esrgan_tf.inference import resolver
  # pylint: enable=g-import-not-at-top
  source = _source(spec.model)
  if spec.blend_with:
    source = dataclasses.replace(spec, model=source, blend_with=_source(spec.blend_with)).name
  try:
    generator = resolver.load_generator(spec)
  except ModelError as e:
    cli.fail(e, spec.model)
  with_tflite = _FORMAT.value in ("tflite", "both")
  try:
    if _FORMAT.value in ("saved_model", "both"):
      path = saved_model.export_saved_model(
          generator, _EXPORT_DIR.value, version=_VERSION.value, precision=spec.precision,
          max_pixels=_MAX_PIXELS.value, source=source,
          tflite_input_size=size if with_tflite else None, overwrite=_OVERWRITE.value)
      print(f"SavedModel: {path}")
      if spec.precision == "bfloat16":
        here = precision_lib.cpu_bf16_flags()
        print(f"bfloat16 export: fast on CPUs with AVX512_BF16 or AMX-BF16 "
              f"({precision_lib.BF16_CPUS}); elsewhere oneDNN emulates bf16, slower than "
              f"float32. This machine: {', '.join(here) if here else 'no native bf16'}.")
    if with_tflite:
      for head, model in _single_outputs(generator):
        name = tflite_file_name(model.scale, size, _QUANTIZE.value, head)
        path = tflite.convert(model, os.path.join(_EXPORT_DIR.value, name), input_size=size,
                              quantize=_QUANTIZE.value, gpu_check=_GPU_CHECK.value,
                              overwrite=_OVERWRITE.value, calibration_dir=_CALIBRATION_DIR.value,
                              float_ops=_FLOAT_OPS.value)
        checked = _GPU_CHECK.value and _QUANTIZE.value in tflite.GPU_QUANTIZE_MODES
        logging.info("GPU-delegate check: %s", "passed" if checked else "skipped")
        print(f"TFLite: {path} ({os.path.getsize(path) / 2**20:.2f} MiB)")
    if _FORMAT.value == "onnx":
      options = onnx_export.OnnxOptions(
          layout=_ONNX_LAYOUT.value, weights=_ONNX_WEIGHTS.value, opset=int(_ONNX_OPSET.value),
          licence=_ONNX_LICENCE.value or "")
      for head, model in _single_outputs(generator):
        name = onnx_export.default_filename(model.scale, options)
        if head is not None:
          name = name.replace("esrgan_", f"esrgan_{head}_", 1)
        path = onnx_export.convert(model, os.path.join(_EXPORT_DIR.value, name), options,
                                   source=source, overwrite=_OVERWRITE.value)
        print(f"ONNX: {path} ({os.path.getsize(path) / 2**20:.2f} MiB)")
  except (OSError, ValueError) as e:  # FileExistsError names --overwrite; GpuIncompatibleError
    # is a ValueError.
    cli.fail(e)


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
