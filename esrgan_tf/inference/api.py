"""The Python API: `esrgan_tf.load(model)` → an `Upscaler` whose `upscale(image)` does what
esrgan-upscale does to a file (Real-ESRGAN's `RealESRGANer(...).enhance(img)`).

    import esrgan_tf
    up = esrgan_tf.load("RealESRGAN_x4plus")           # any --model spec
    out = up.upscale(image)                             # numpy HWC uint8/uint16/float, or PIL
    out = up.upscale(image, outscale=3.5, tile=esrgan_tf.TileSpec(tile=128), precision="float32")

Same behaviour as the CLI: tiles with cross-faded seams and reflect pre-padding (`TileSpec`),
precision "auto" (bfloat16 where the CPU has native bf16), alpha upscaled bicubically (or through
the model), grayscale kept grayscale, 16-bit kept 16-bit, `outscale` resized with Lanczos.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Optional

from absl import logging
import numpy as np
from PIL import Image

from esrgan_tf.core import precision as precision_lib
from esrgan_tf.images import image_io, pixels
from esrgan_tf.inference import batch, resolver, tiling
from esrgan_tf.inference.engine import Engine

# ITU-R 601-2 luma, as Pillow's convert("L") and esrgan-upscale's grayscale outputs.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_NUMPY_CHANNELS = (1, 2, 3, 4)  # gray, gray+alpha, RGB, RGBA (a 2-D array is gray)


@dataclasses.dataclass(frozen=True)
class _Kind:
  """What the caller gave, so that the result comes back the same way."""

  pil: bool
  dtype: np.dtype
  squeeze: bool  # a 2-D gray array (no channel axis)


def _from_numpy(array: np.ndarray) -> tuple[image_io.LoadedImage, _Kind]:
  array = np.asarray(array)
  squeeze = array.ndim == 2
  planes = array[..., None] if squeeze else array
  if planes.ndim != 3 or planes.shape[-1] not in _NUMPY_CHANNELS or min(planes.shape) < 1:
    raise ValueError(f"image must be HxW or HxWxC with C in {_NUMPY_CHANNELS}, got shape "
                     f"{array.shape}")
  if array.dtype.kind == "u" and array.dtype.itemsize in (1, 2):
    native = planes.astype(array.dtype.newbyteorder("="), copy=False)  # big-endian uint16 too
    values, depth = pixels.to_float(native), 8 * array.dtype.itemsize
  elif array.dtype.kind == "f":
    if not np.all(np.isfinite(planes)):
      raise ValueError("image has NaN or infinite values")
    values, depth = np.clip(planes.astype(np.float32), 0.0, 1.0), 16
  else:
    raise ValueError(f"image dtype must be uint8, uint16 or float, got {array.dtype}")
  channels = planes.shape[-1]
  color = values[..., :3] if channels >= 3 else np.repeat(values[..., :1], 3, axis=-1)
  alpha = values[..., -1] if channels in (2, 4) else None
  img = image_io.LoadedImage(
      path="<array>", format="PNG", mode="array", color=np.ascontiguousarray(color),
      alpha=None if alpha is None else np.ascontiguousarray(alpha), bit_depth=depth,
      grayscale=channels < 3)
  kind = np.dtype(array.dtype.name) if array.dtype.kind == "u" else array.dtype
  return img, _Kind(pil=False, dtype=kind, squeeze=squeeze)


def _from_pil(image: Image.Image) -> tuple[image_io.LoadedImage, _Kind]:
  """Through esrgan-upscale's own reader (modes, CMYK profiles, EXIF orientation, 16-bit gray
  and its refusals), by way of an uncompressed TIFF in memory that holds every Pillow mode."""
  if image.mode in ("La", "RGBa"):  # premultiplied: TIFF cannot hold them
    image = image.convert(image.mode[:-1] + "A")
  buffer = io.BytesIO()
  options = {"exif": image.getexif()}
  if image.info.get("icc_profile"):
    options["icc_profile"] = image.info["icc_profile"]
  try:
    image.save(buffer, format="TIFF", **options)
  except (OSError, ValueError) as e:
    raise ValueError(f"unsupported PIL image (mode {image.mode}): {e}") from e
  try:
    img = image_io.decode_image_bytes(buffer.getvalue(), max_pixels=None, name="<PIL image>")
  except image_io.ImageError as e:
    raise ValueError(str(e)) from e
  dtype = np.dtype(np.uint16 if img.bit_depth == 16 else np.uint8)
  return img, _Kind(pil=True, dtype=dtype, squeeze=False)


def _to_caller(img: image_io.LoadedImage, kind: _Kind):
  color = img.color
  if img.grayscale:
    color = (color @ _LUMA)[..., None]
  if np.issubdtype(kind.dtype, np.floating):
    planes = color if img.alpha is None else np.concatenate([color, img.alpha[..., None]], -1)
    planes = planes.astype(kind.dtype, copy=False)
  else:
    depth = img.bit_depth
    if kind.pil and depth == 16 and (color.shape[-1] > 1 or img.alpha is not None):
      depth = 8  # Pillow holds 16 bits only as one gray plane ("I;16")
    planes = pixels.join_planes(np.ascontiguousarray(color), img.alpha, depth)
  if kind.squeeze or (kind.pil and planes.shape[-1] == 1):
    planes = planes[..., 0]
  return Image.fromarray(planes) if kind.pil else planes


class Upscaler:
  """A super-resolution model ready to upscale images (what `esrgan_tf.load` returns).

  Attributes:
    spec: The `resolver.ModelSpec` it was loaded from.
    tiles: The default `tiling.TileSpec` of `upscale`.
    alpha: The default alpha mode ("bicubic" or "model").
  """

  def __init__(self, spec: resolver.ModelSpec, *, tiles: tiling.TileSpec = tiling.TileSpec(),
               alpha: str = "bicubic"):
    if alpha not in image_io.ALPHA_MODES:
      raise ValueError(f"alpha must be one of {image_io.ALPHA_MODES}, got {alpha!r}")
    self.spec, self.tiles, self.alpha = spec, tiles, alpha
    self._engines: dict[str, Engine] = {}
    self._default = self._engine(spec.precision)

  def _engine(self, precision: str) -> Engine:
    """The engine computing in `precision`: a Keras model is wrapped again (same head or blend),
    never reloaded; other kinds keep the precision they were built with."""
    resolved = precision_lib.resolve_precision(precision)
    if not self._engines:
      self._engines[resolved] = resolver.load_engine(
          dataclasses.replace(self.spec, precision=resolved))
    elif resolved not in self._engines:
      if self.model is None:
        logging.warning("%s: precision is fixed for this kind of model; %s ignored", self.name,
                        precision)
        return self._default
      self._engines[resolved] = resolver.rewrap(self.model, self.spec, resolved)
    return self._engines[resolved]

  @property
  def engine(self) -> Engine:
    """The low-level engine (float32 NHWC batches in [0, 1] → upscaled batches)."""
    return self._default

  @property
  def model(self):
    """The Keras generator behind the engine, or None (SavedModel, TFLite, a server)."""
    return getattr(self._default.fn, "model", None)

  @property
  def scale(self) -> int:
    return self._default.scale

  @property
  def name(self) -> str:
    return self.spec.name

  def upscale(self, image, *, outscale: Optional[float] = None,
              tile: Optional[tiling.TileSpec] = None, precision: Optional[str] = None,
              alpha: Optional[str] = None):
    """Upscales one image as esrgan-upscale upscales a file.

    Args:
      image: numpy HxW (gray), HxWx1, HxWx2 (gray + alpha), HxWx3 or HxWx4, of uint8, uint16 or
        float in [0, 1]; or a `PIL.Image.Image` (read as esrgan-upscale reads a file: EXIF
        orientation applied, CMYK converted, mode F refused).
      outscale: Final scale F: the model's output resized with Lanczos to (int(w·F), int(h·F));
        None: the model's scale.
      tile: Tiling for this call (default: `self.tiles`, esrgan-upscale's defaults).
      precision: "auto", "float32" or "bfloat16" for this call (Keras models only; SavedModels
        keep their export's precision).
      alpha: "bicubic" or "model" for this call.

    Returns:
      The upscaled image of the same kind: same dtype (float stays float32/float64 in [0, 1]),
      same channel layout, or a PIL image (16-bit gray as "I;16"; Pillow has no 16-bit colour,
      so other 16-bit results come back as 8 bit).

    Raises:
      ValueError: An unsupported array or mode, bad options.
      ModelError: The model fails to load at another precision.
    """
    if isinstance(image, Image.Image):
      img, kind = _from_pil(image)
    else:
      img, kind = _from_numpy(image)
    if outscale is not None and not outscale > 0:
      raise ValueError(f"outscale must be positive, got {outscale}")
    engine = self._engine(precision) if precision else self._default
    spec = self.tiles if tile is None else tile

    def color_fn(x):
      return tiling.upscale_array(x, engine, spec)

    result = batch.upscale_loaded(img, color_fn, engine.scale, alpha=alpha or self.alpha)
    if outscale and outscale != engine.scale:
      height, width = img.color.shape[:2]
      result = batch.resize_output(result, (int(width * outscale), int(height * outscale)))
    return _to_caller(result, kind)

  def upscale_file(self, src: str, dst: str, *, overwrite: bool = False,
                   outscale: Optional[float] = None) -> str:
    """Reads, upscales and atomically writes one image file, exactly as esrgan-upscale.

    Returns:
      The path written.

    Raises:
      ImageError: Unreadable input or unwritable output (the message names the file).
    """
    options = batch.Options(tiles=self.tiles, alpha=self.alpha, overwrite=overwrite,
                            outscale=outscale,
                            max_pixels=batch.output_bounded_max_pixels(self.scale))
    return batch.upscale_file(src, dst, self._default, options)


def load(model=None, *, tiles: tiling.TileSpec = tiling.TileSpec(), alpha: str = "bicubic",
         **spec_fields) -> Upscaler:
  """Loads any model `--model` takes (or a TF Serving endpoint) as an `Upscaler`.

  Args:
    model: A published name ("RealESRGAN_x4plus"), .pth/.pt/.safetensors/ncnn .param, .keras,
      training workdir, SavedModel, .tflite; or a `resolver.ModelSpec`.
    tiles: Default tiling of `Upscaler.upscale` (esrgan-upscale's by default).
    alpha: Default alpha mode.
    **spec_fields: `resolver.ModelSpec` fields: precision ("auto"), server, model_name,
      blend_with, blend_weight, num_threads.

  Returns:
    An `Upscaler`.

  Raises:
    ModelError: The model cannot be found, fetched, loaded or reached.
    ValueError: Inconsistent arguments.
  """
  if isinstance(model, resolver.ModelSpec):
    if spec_fields:
      model = dataclasses.replace(model, **spec_fields)
    spec = model
  else:
    spec = resolver.ModelSpec(model=model, **spec_fields)
  return Upscaler(spec, tiles=tiles, alpha=alpha)
