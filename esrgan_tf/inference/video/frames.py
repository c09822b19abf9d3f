"""One decoded frame through the model, exactly as `esrgan-upscale` does an image of it.

An 8-bit frame is an 8-bit RGB image and a deeper one a 16-bit RGB image: they go through
`tiling.upscale_array` with the same tiles, overlap, tile batch and pre-pad as the image path,
and are quantized by the same rule (`esrgan_tf.images.pixels`), so every output frame equals what
`esrgan-upscale` writes for that frame saved as PNG. A resize (--outscale, --width/--height) is
the image path's Lanczos (`pipeline.resize_output`); the crop of `geometry` takes the last
column/row off for the chroma grid.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from esrgan_tf.images import image_io, pixels
from esrgan_tf.inference import batch as image_pipeline
from esrgan_tf.inference import tiling
from esrgan_tf.inference.video.geometry import Geometry


@dataclasses.dataclass(frozen=True)
class FrameUpscaler:
  """A callable: RGB frame (uint8 or uint16 [H, W, 3]) → upscaled RGB frame, same dtype.

  Attributes:
    engine: The model (`esrgan_tf.inference.engine.Engine`).
    options: The image path's options (tiles, overlap, tile batch, pre-pad).
    geometry: Sizes (model output, encoded output, resize or crop).
  """

  engine: Any
  options: image_pipeline.Options
  geometry: Geometry

  def _tiled(self, image: np.ndarray, out=None) -> np.ndarray:
    # The one call into the tiler; `esrgan-upscale` makes the same (batch.upscale_file).
    return tiling.upscale_array(image, self.engine, self.options.tiles, out=out)

  def __call__(self, rgb: np.ndarray) -> np.ndarray:
    bits = 8 if rgb.dtype == np.uint8 else 16
    width, height = self.geometry.output
    image = pixels.to_float(rgb)
    if not self.geometry.resize:
      model_w, model_h = self.geometry.model
      out = np.empty((model_h, model_w, 3), pixels.integer_dtype(bits))
      self._tiled(image, out=out)
      if (model_w, model_h) != (width, height):
        out = np.ascontiguousarray(out[:height, :width])
      return out
    loaded = image_io.LoadedImage(path="frame", format="PNG", mode="RGB", color=image,
                                 alpha=None, bit_depth=bits)
    result = image_pipeline.upscale_loaded(loaded, self._tiled, int(self.engine.scale))
    result = image_pipeline.resize_output(result, (width, height))
    return pixels.from_float(result.color, bits)
