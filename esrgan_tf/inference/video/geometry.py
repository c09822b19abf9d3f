"""Output frame size: the model's scale, --outscale or --width/--height, fitted to the chroma grid.

The rule (documented for users in the CLI help):
  1. The target is the model's output (s·w × s·h) by default; with --outscale F it is
     (int(w·F), int(h·F)) as for images; with --width W and/or --height H it is that size (one of
     them alone keeps the aspect ratio: the other is round(h·W/w) or round(w·H/h)).
  2. Each side is then rounded DOWN to a multiple of the encoder pixel format's chroma block
     (2 × 2 for 4:2:0, 2 × 1 for 4:2:2, 1 × 1 for 4:4:4 and RGB): a 4:2:0 frame cannot have an
     odd side (libx264 refuses it), and rounding down never invents pixels.
  3. If only step 2 changed the model's output size, the extra last column/row is cropped off
     (no resampling of the whole picture); otherwise the model output is resized to the target
     with Lanczos, exactly as `esrgan-upscale --outscale` resizes images.
The sample aspect ratio is copied unchanged: a 1-pixel crop does not change it, and an explicit
--width × --height of another shape stretches the picture as asked.
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class SizeRequest:
  """What the user asked for (all optional; none: the model's own scale).

  Attributes:
    outscale: Final scale F relative to the input.
    width: Output width in pixels.
    height: Output height in pixels.
  """

  outscale: Optional[float] = None
  width: Optional[int] = None
  height: Optional[int] = None

  def __post_init__(self):
    if self.outscale is not None and (self.width or self.height):
      raise ValueError("give --outscale or --width/--height, not both")
    for name in ("width", "height"):
      value = getattr(self, name)
      if value is not None and value < 1:
        raise ValueError(f"--{name} must be ≥ 1, got {value}")
    if self.outscale is not None and not self.outscale > 0:
      raise ValueError(f"--outscale must be positive, got {self.outscale}")


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Sizes of one video's frames through the pipeline (width, height pairs).

  Attributes:
    source: The decoded frame size.
    model: The model's output size (scale × source).
    output: The encoded frame size.
    resize: True if the model output is resized (Lanczos) to `output`; False if `output` is the
      model output, possibly with its last column/row cropped.
  """

  source: tuple[int, int]
  model: tuple[int, int]
  output: tuple[int, int]
  resize: bool


def chroma_block(pix_fmt: str) -> tuple[int, int]:
  """(horizontal, vertical) pixels per chroma sample of a pixel format: (2, 2) for 4:2:0."""
  import av  # pylint: disable=g-import-not-at-top
  fmt = av.VideoFormat(pix_fmt)
  chroma = [c for c in fmt.components if c.is_chroma]
  if not chroma or fmt.is_rgb:
    return 1, 1
  # VideoFormat(name, w, h).chroma_width(w) = ceil(w / 2^log2_chroma_w).
  probe = av.VideoFormat(pix_fmt, 64, 64)
  return 64 // probe.chroma_width(64), 64 // probe.chroma_height(64)


def _round_down(value: int, block: int) -> int:
  return max(block, value - value % block)


def plan(source: tuple[int, int], scale: int, pix_fmt: str,
         request: SizeRequest = SizeRequest()) -> Geometry:
  """Applies the module's rule.

  Args:
    source: (width, height) of the decoded frames.
    scale: The model's scale.
    pix_fmt: The encoder's pixel format.
    request: --outscale / --width / --height.

  Returns:
    The `Geometry`.
  """
  width, height = source
  model = (width * scale, height * scale)
  if request.width and request.height:
    target = (request.width, request.height)
  elif request.width:
    target = (request.width, max(1, round(height * request.width / width)))
  elif request.height:
    target = (max(1, round(width * request.height / height)), request.height)
  elif request.outscale is not None and request.outscale != scale:
    target = (int(width * request.outscale), int(height * request.outscale))
  else:
    target = model
  if min(target) < 1:
    raise ValueError(f"the output size {target[0]}x{target[1]} is empty")
  block_w, block_h = chroma_block(pix_fmt)
  output = (_round_down(target[0], block_w), _round_down(target[1], block_h))
  resize = target != model
  return Geometry(source=source, model=model, output=output, resize=resize)
