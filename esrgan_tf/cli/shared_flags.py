"""Flags several commands share, defined in one place and resolved into the library's objects.

  * Model flags (`define_model_flags`): --model, --server, --model_name, --blend_with,
    --blend_weight, --precision, --num_threads → `resolver.ModelSpec`.
  * Tiling flags (`define_tile_flags`): --tile, --tile_overlap, --tile_batch, --pre_pad →
    `tiling.TileSpec`.
  * Output flags (`define_output_flags`) of the commands that write upscaled files
    (esrgan-upscale, esrgan-beam): --alpha, --max_pixels, --overwrite, --suffix, --format,
    --outscale, --multi_frame → `batch.Options`.

Importing this module defines nothing: each command calls the `define_*` functions at import time
with what it accepts (esrgan-export takes no --server and its --precision has no "auto";
esrgan-eval tiles only on request and never pre-pads).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional, Sequence

from absl import flags

from esrgan_tf import cli
from esrgan_tf.core import precision as precision_lib
from esrgan_tf.images import image_io
from esrgan_tf.inference import batch as batch_lib
from esrgan_tf.inference import tiling  # numpy only: no TensorFlow at import

_MODEL_HELP = ("A published name (esrgan-models list), .keras file, training workdir, checkpoint "
               "(.pth/.pt/.safetensors/ncnn .param), SavedModel directory or export base, "
               ".tflite or .onnx file.")
_GENERATOR_HELP = ("A generator: a published name (esrgan-models list), .keras file, training "
                   "workdir or checkpoint (.pth/.pt/.safetensors/ncnn .param).")
_PRECISION_HELP = {
    "auto": ("Compute precision of Keras/workdir/checkpoint models: auto = bfloat16 where the "
             "CPU has native bf16 (AVX512_BF16 / AMX-BF16), else float32. SavedModels keep "
             "their export's."),
    "fixed": ("SavedModel compute precision, fixed at export (build it for the server it will "
              "run on): bfloat16 is fast only on CPUs with native bf16: "
              f"{precision_lib.BF16_CPUS}."),
}


@dataclasses.dataclass(frozen=True)
class ModelFlags:
  """The flag holders of one command (None where the command does not take that flag)."""

  model: flags.FlagHolder
  blend_with: flags.FlagHolder
  blend_weight: flags.FlagHolder
  precision: flags.FlagHolder
  server: Optional[flags.FlagHolder] = None
  model_name: Optional[flags.FlagHolder] = None
  num_threads: Optional[flags.FlagHolder] = None
  head: Optional[flags.FlagHolder] = None
  blend_heads: Optional[flags.FlagHolder] = None

  def given(self) -> str:
    """The model or server the user named (for error messages)."""
    return self.model.value or (self.server.value if self.server is not None else None) or ""

  def spec(self, *, precision: Optional[str] = None):
    """The `resolver.ModelSpec` these flags describe.

    Args:
      precision: Overrides --precision (e.g. esrgan-export's fixed value for a SavedModel).

    Raises:
      app.UsageError: Inconsistent flags (exit status 2).
    """
    from esrgan_tf.inference import resolver  # pylint: disable=g-import-not-at-top
    if not self.model.value and not (self.server is not None and self.server.value):
      either = " or --server" if self.server is not None else ""
      raise cli.usage(f"--model{either} is required")
    try:
      return resolver.ModelSpec(
          model=self.model.value,
          server=self.server.value if self.server is not None else None,
          model_name=self.model_name.value if self.model_name is not None else "esrgan",
          blend_with=self.blend_with.value, blend_weight=self.blend_weight.value,
          precision=precision or self.precision.value,
          num_threads=self.num_threads.value if self.num_threads is not None else None,
          head=self.head.value if self.head is not None else None,
          blend_heads=self.blend_heads.value if self.blend_heads is not None else None)
    except ValueError as e:
      message = str(e).replace("a model and a server", "--model and --server")
      for name in ("blend_with", "blend_weight", "blend_heads", "head"):
        message = re.sub(rf"\b(?<!-){name}\b", f"--{name}", message)
      raise cli.usage(message)


def define_model_flags(*, server: bool = True, threads: bool = True, heads: bool = True,
                       generators_only: bool = False,
                       precisions: Sequence[str] = precision_lib.PRECISION_FLAG_VALUES,
                       precision_default: str = "auto", precision_note: str = "",
                       verb: str = "runs") -> ModelFlags:
  """Defines the model flags of a command (call once, at the command module's import).

  Args:
    server: Also --server and --model_name (a TF Serving endpoint instead of --model).
    threads: Also --num_threads.
    heads: Also --head and --blend_heads (multi-head models).
    generators_only: --model takes Keras generators only (what esrgan-export converts).
    precision_note: Appended to --precision's help.
    precisions: The --precision values accepted.
    precision_default: Its default.
    verb: How the help of --blend_with reads ("runs", "evaluates", "exports").

  Returns:
    The holders, for `ModelFlags.spec()`.
  """
  help_key = "auto" if "auto" in precisions else "fixed"
  holders = dict(
      model=flags.DEFINE_string("model", None,
                                _GENERATOR_HELP if generators_only else _MODEL_HELP),
      blend_with=flags.DEFINE_string(
          "blend_with", None, f"Generator blended into --model (same architecture): {verb} "
          "W·model + (1−W)·blend_with, W = --blend_weight (Real-ESRGAN's -dn)."),
      blend_weight=flags.DEFINE_float("blend_weight", None,
                                      "W in [0, 1], the weight of --model (needs --blend_with)."),
      precision=flags.DEFINE_enum("precision", precision_default, list(precisions),
                                  _PRECISION_HELP[help_key] + precision_note))
  if server:
    holders["server"] = flags.DEFINE_string("server", None,
                                            "HOST:PORT of a TF Serving gRPC endpoint.")
    holders["model_name"] = flags.DEFINE_string("model_name", "esrgan", "Model name on --server.")
  if threads:
    holders["num_threads"] = flags.DEFINE_integer(
        "num_threads", None, "CPU threads (TF intra-op, TFLite, ONNX Runtime).")
  if heads:
    holders["head"] = flags.DEFINE_string(
        "head", None, "Multi-head models (one trunk, several outputs): the head to run; default "
        "the model's default head. With --server: the export's upscale_<head>_float signature.")
    holders["blend_heads"] = flags.DEFINE_string(
        "blend_heads", None, "Multi-head Keras models (.keras, workdir): run Σ weight · head "
        "image of heads of one scale from ONE trunk pass, e.g. psnr:0.3,gan:0.7 (weights sum "
        "to 1).")
  return ModelFlags(**holders)


@dataclasses.dataclass(frozen=True)
class TileFlags:
  """The tiling flag holders of one command (None where it does not take that flag)."""

  tile: flags.FlagHolder
  overlap: flags.FlagHolder
  batch: Optional[flags.FlagHolder] = None
  pre_pad: Optional[flags.FlagHolder] = None

  def spec(self):
    """The `tiling.TileSpec` these flags describe.

    Raises:
      app.UsageError: Out-of-range values (exit status 2).
    """
    try:
      return tiling.TileSpec(tile=self.tile.value, overlap=self.overlap.value,
                             batch=self.batch.value if self.batch is not None else 1,
                             pre_pad=self.pre_pad.value if self.pre_pad is not None else 0)
    except ValueError as e:
      given = [name for name, holder in (("tile", self.tile), ("tile_overlap", self.overlap),
                                         ("tile_batch", self.batch), ("pre_pad", self.pre_pad))
               if holder is not None]
      raise cli.usage(f"--{'/--'.join(given)}: {e}")


def define_tile_flags(*, tile_default: Optional[int] = None, batch: bool = True,
                      pre_pad: bool = True) -> TileFlags:
  """Defines the tiling flags of a command (call once, at the command module's import).

  Args:
    tile_default: --tile's default (None: esrgan-upscale's, `tiling.DEFAULT_TILE`).
    batch: Also --tile_batch.
    pre_pad: Also --pre_pad (else nothing is padded).

  Returns:
    The holders, for `TileFlags.spec()`.
  """
  holders = dict(
      tile=flags.DEFINE_integer(
          "tile", tiling.DEFAULT_TILE if tile_default is None else tile_default,
          "Tile size in input pixels; 0 = whole image at once."),
      overlap=flags.DEFINE_integer("tile_overlap", tiling.DEFAULT_OVERLAP,
                                   "Tile overlap in input pixels (cross-faded)."))
  if batch:
    holders["batch"] = flags.DEFINE_integer("tile_batch", 1,
                                            "Tiles per model call (1 keeps memory lowest).")
  if pre_pad:
    holders["pre_pad"] = flags.DEFINE_integer(
        "pre_pad", tiling.DEFAULT_PRE_PAD,
        "Reflect-pad each image by this many input pixels on every side before upscaling and "
        "crop the padding off the output (Real-ESRGAN's --pre_pad, which pads bottom/right only "
        "and defaults to 0): the model sees continued content instead of its zero padding at "
        "the image's edges. 0 = off.")
  return TileFlags(**holders)


@dataclasses.dataclass(frozen=True)
class OutputFlags:
  """How upscaled files are written (the holders of `define_output_flags`)."""

  alpha: flags.FlagHolder
  max_pixels: flags.FlagHolder
  overwrite: flags.FlagHolder
  suffix: flags.FlagHolder
  format: flags.FlagHolder
  outscale: flags.FlagHolder
  multi_frame: flags.FlagHolder

  def check(self) -> None:
    """Raises app.UsageError (exit status 2) for out-of-range values."""
    if self.max_pixels.value is not None and self.max_pixels.value < 0:
      raise cli.usage(f"--max_pixels must be ≥ 0, got {self.max_pixels.value}")
    if self.outscale.value is not None and not self.outscale.value > 0:
      raise cli.usage(f"--outscale must be positive, got {self.outscale.value}")

  def max_pixels_for(self, scale: int) -> int:
    """--max_pixels, or the default sized by the output's memory at this scale."""
    if self.max_pixels.value is None:
      return batch_lib.output_bounded_max_pixels(scale)
    return self.max_pixels.value

  def options(self, tiles, scale: int) -> batch_lib.Options:
    """The per-file `batch.Options` for a model of this scale."""
    return batch_lib.Options(
        tiles=tiles, alpha=self.alpha.value, max_pixels=self.max_pixels_for(scale),
        multi_frame=self.multi_frame.value, overwrite=self.overwrite.value,
        format=self.format.value, outscale=self.outscale.value)


def define_output_flags() -> OutputFlags:
  """Defines the output flags of a command that writes upscaled files (call once, at import)."""
  return OutputFlags(
      alpha=flags.DEFINE_enum("alpha", "bicubic", list(image_io.ALPHA_MODES),
                              "Alpha channel upscaling: bicubic, or through the model."),
      max_pixels=flags.DEFINE_integer(
          "max_pixels", None,
          "Largest input W×H, checked from the header before decoding; 0 = any. Default: sized "
          "by the output's memory (the whole output is held in memory, ~24 B per output pixel): "
          f"{batch_lib.OUTPUT_MEMORY_BUDGET >> 30} GiB of output, i.e. "
          f"{batch_lib.output_bounded_max_pixels(4):,} input pixels at ×4, "
          f"{batch_lib.output_bounded_max_pixels(2):,} at ×2."),
      overwrite=flags.DEFINE_bool("overwrite", False,
                                  "Replace existing outputs (else skip them)."),
      suffix=flags.DEFINE_string("suffix", batch_lib.DEFAULT_SUFFIX,
                                 "Appended to output names ('{scale}' = the model's scale)."),
      format=flags.DEFINE_enum("format", None, ["png", "jpg", "webp", "bmp", "tiff"],
                               "Image output format (default: the input's)."),
      outscale=flags.DEFINE_float(
          "outscale", None, "Final scale F: the model output is resized with Lanczos to "
          "(int(w·F), int(h·F)); default the model's scale."),
      multi_frame=flags.DEFINE_enum(
          "multi_frame", "error", list(image_io.MULTI_FRAME_MODES),
          "Animated/multi-page inputs: fail, or upscale the first frame."))
