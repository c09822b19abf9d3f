"""Tiled, streaming super-resolution of images of any size with bounded memory.

`upscale_array` cuts equal-size tiles from the host array, runs them in batches through any
`engine.Engine` (Keras, SavedModel, TFLite, TF Serving), and writes the results
into a preallocated host output. Compared with Real-ESRGAN's `tile_process` (which pastes tiles
without blending, its issues #211/#197, and first moves the whole image to the device, #184):

  * Overlapping tiles are cross-faded with raised-cosine weights that form a partition of unity,
    so there are no seams and no weight-sum buffer.
  * The image stays on the host; only a batch of tiles goes to the model.
  * Output rows are accumulated in float32 in one band of tile rows and finalised (written to the
    output, converted to its dtype) as soon as no later tile touches them: peak memory is about
    the output array plus one band.

Layout along each axis (rows and columns independently; 2-D weights are the outer product, and a
product of two partitions of unity is one): tiles of exactly `tile` pixels (or the whole axis if
it is shorter), spread evenly from 0 to `length - tile` so that neighbours overlap by at least
`overlap`. At each seam the cross-fade has width `blend * overlap`, centred in the overlap; the
rest of the overlap on both sides is context that is computed but discarded, because a tile's
prediction is worst next to its cut edge (the convolutions' zero padding).

`pre_pad` does for the image's own edges what the overlap does for the cuts: the image is
reflect-padded before tiling and the padding's output is cropped off while finalising
(Real-ESRGAN's `RealESRGANer.pre_pad`, realesrgan/utils.py, which pads only the bottom and right;
`PRE_PAD_SIDES`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import numpy as np

from esrgan_tf.images import pixels

# The defaults below are measured in docs/experiments/tiling.md.
# Fraction of the overlap used for the cross-fade; the rest, (1 - blend)·overlap/2 on each side,
# is context that is discarded (0.5: best or within 0.07 dB of best on a trained net).
DEFAULT_BLEND = 0.5
# Tile size in input pixels: the throughput knee on AVX2 (94.5 % of the best on AVX-512).
DEFAULT_TILE = 96
# Minimum overlap of neighbouring tiles (input pixels); Real-ESRGAN's inference script uses 10.
DEFAULT_OVERLAP = 16
# esrgan-upscale's reflect `pre_pad` (input pixels): removes the zero-padding edge error on flat
# skies (−0.8 → +0.04 dB); Real-ESRGAN's RealESRGANer uses 10, its inference script 0.
DEFAULT_PRE_PAD = 8
# Which edges `pre_pad` pads: "all" four, or "bottom_right" as Real-ESRGAN's
# `RealESRGANer.pre_process` (F.pad(img, (0, pre_pad, 0, pre_pad), 'reflect')).
PRE_PAD_SIDES = ("all", "bottom_right")
DEFAULT_PRE_PAD_SIDES = "all"


def pre_pad_widths(pad: int, sides: str = DEFAULT_PRE_PAD_SIDES
                   ) -> tuple[tuple[int, int], tuple[int, int]]:
  """((top, bottom), (left, right)) input pixels that `pre_pad` adds.

  Raises:
    ValueError: A negative `pad` or unknown `sides`.
  """
  if pad < 0:
    raise ValueError(f"pre_pad must be ≥ 0, got {pad}")
  if sides not in PRE_PAD_SIDES:
    raise ValueError(f"pre_pad sides must be one of {PRE_PAD_SIDES}, got {sides!r}")
  before = pad if sides == "all" else 0
  return (before, pad), (before, pad)


@dataclasses.dataclass(frozen=True)
class TileSpec:
  """How an image is cut into model inputs: one small object for the knobs that travel together.

  The defaults are `esrgan-upscale`'s.

  Attributes:
    tile: Tile size in input pixels; 0 runs the whole image in one call.
    overlap: Minimum overlap of neighbouring tiles in input pixels (< tile).
    blend: Fraction of the overlap that is cross-faded (see `axis_tiles`).
    batch: Up to this many tiles per model call (capped by the engine's `max_batch`).
    pre_pad: Reflect-pad the image by this many input pixels before tiling and crop the padding
      off the output (`reflect_pad`): the image's edges are then not next to the convolutions'
      zero padding; the output size is unchanged. 0 gives exactly the model's own output.
    pre_pad_sides: "all" four edges, or "bottom_right" as Real-ESRGAN.

  Raises:
    ValueError: Out-of-range values (at construction).
  """

  tile: int = DEFAULT_TILE
  overlap: int = DEFAULT_OVERLAP
  blend: float = DEFAULT_BLEND
  batch: int = 1
  pre_pad: int = DEFAULT_PRE_PAD
  pre_pad_sides: str = DEFAULT_PRE_PAD_SIDES

  def __post_init__(self):
    if self.tile < 0 or self.overlap < 0:
      raise ValueError(f"tile and overlap must be ≥ 0, got tile={self.tile}, "
                       f"overlap={self.overlap}")
    if self.tile and self.overlap >= self.tile:
      raise ValueError(f"tile overlap ({self.overlap}) must be smaller than the tile "
                       f"({self.tile})")
    if self.batch < 1:
      raise ValueError(f"batch must be ≥ 1, got {self.batch}")
    if not 0.0 <= self.blend <= 1.0:
      raise ValueError(f"blend must be in [0, 1], got {self.blend}")
    pre_pad_widths(self.pre_pad, self.pre_pad_sides)  # validates both

  @property
  def whole(self) -> bool:
    """One model call per image, nothing padded: the model's own output."""
    return self.tile == 0 and self.pre_pad == 0


@dataclasses.dataclass(frozen=True)
class AxisTile:
  """One tile along one axis.

  Attributes:
    start: First input pixel of the cut (inclusive).
    stop: Last input pixel of the cut (exclusive).
    lo: First output pixel where this tile's weight is non-zero (absolute output coordinate).
    hi: End of that support (exclusive).
    weight: float32 [hi - lo], the tile's blending weight over its support.
  """

  start: int
  stop: int
  lo: int
  hi: int
  weight: np.ndarray


def _ramp(width: int) -> np.ndarray:
  """Raised cosine rising from ~0 to ~1 over `width` samples (pixel centres), float64."""
  t = (np.arange(width, dtype=np.float64) + 0.5) / width
  return 0.5 - 0.5 * np.cos(np.pi * t)


def axis_tiles(length: int, tile: int, overlap: int, scale: int,
               blend: float = DEFAULT_BLEND) -> list[AxisTile]:
  """Lays tiles out along one axis and builds their blending weights.

  The weights of all tiles, placed at their output positions, sum to 1 at every output pixel
  (a partition of unity), and each tile's weight is zero outside its own output span.

  Args:
    length: Axis length of the input image (pixels, ≥ 1).
    tile: Tile length (input pixels, ≥ 1); the whole axis is one tile if `length <= tile`.
    overlap: Minimum overlap of neighbouring tiles (input pixels, 0 ≤ overlap < tile).
    scale: Upscaling factor of the model.
    blend: Fraction of the overlap over which neighbours are cross-faded, in [0, 1]; 0 is a hard
      cut in the middle of the overlap.

  Returns:
    The tiles in order.

  Raises:
    ValueError: On out-of-range arguments.
  """
  if length < 1 or tile < 1 or scale < 1:
    raise ValueError(f"length, tile and scale must be ≥ 1, got {length}, {tile}, {scale}")
  if not 0 <= overlap < tile:
    raise ValueError(f"tile overlap must be in [0, tile) = [0, {tile}), got {overlap}")
  if not 0.0 <= blend <= 1.0:
    raise ValueError(f"blend must be in [0, 1], got {blend}")
  if length <= tile:
    return [AxisTile(0, length, 0, length * scale, np.ones(length * scale, np.float32))]

  count = math.ceil((length - overlap) / (tile - overlap))  # ≥ 2 since length > tile.
  starts = [round(i * (length - tile) / (count - 1)) for i in range(count)]
  min_step = min(b - a for a, b in zip(starts, starts[1:]))
  # Cross-fade width in output pixels; at most one step so neighbouring seams never overlap.
  width = min(round(blend * overlap), min_step) * scale
  # Seam k (between tiles k-1 and k): ramp over [edges[k], edges[k] + width), centred in the
  # overlap [start_k, stop_{k-1}).
  edges = []
  for k in range(1, count):
    overlap_lo, overlap_hi = starts[k] * scale, (starts[k - 1] + tile) * scale
    edges.append(overlap_lo + (overlap_hi - overlap_lo - width) // 2)
  up = _ramp(width)
  tiles = []
  for i, start in enumerate(starts):
    lo = edges[i - 1] if i > 0 else 0
    hi = edges[i] + width if i < count - 1 else length * scale
    weight = np.ones(hi - lo, np.float64)
    if i > 0:
      weight[:width] = up
    if i < count - 1:
      weight[hi - lo - width:] = 1.0 - up
    assert start * scale <= lo and hi <= (start + tile) * scale, "weight outside the tile"
    assert i == 0 or lo + width <= hi - (width if i < count - 1 else 0), "seams overlap"
    tiles.append(AxisTile(start, start + tile, lo, hi, weight.astype(np.float32)))
  return tiles


def count_tiles(height: int, width: int, engine, spec: TileSpec = TileSpec()) -> int:
  """Number of tiles (model inputs) `upscale_array` uses for an image of this size."""
  (top, bottom), (left, right) = pre_pad_widths(spec.pre_pad, spec.pre_pad_sides)
  height, width = height + top + bottom, width + left + right
  tile_h, tile_w = _tile_size(height, width, engine, spec.tile)
  overlap = spec.overlap
  rows = 1 if height <= tile_h else math.ceil((height - overlap) / (tile_h - overlap))
  cols = 1 if width <= tile_w else math.ceil((width - overlap) / (tile_w - overlap))
  return rows * cols


def _tile_size(height: int, width: int, engine, tile: int) -> tuple[int, int]:
  """The model input size per axis: the static size, the tile, or the whole image."""
  if getattr(engine, "input_size", None):
    return tuple(int(v) for v in engine.input_size)
  if tile == 0:
    return height, width
  return tile, tile


def reflect_pad(images: np.ndarray, pad: int, sides: str = DEFAULT_PRE_PAD_SIDES) -> np.ndarray:
  """Reflect-pads the two spatial axes of [..., H, W, C] `images` for `pre_pad`.

  numpy's "reflect" mirrors about the edge pixel without repeating it, as torch's
  F.pad(mode='reflect') that Real-ESRGAN uses; unlike torch it also takes pads ≥ the axis length
  (reflecting again), so tiny images work.
  """
  (top, bottom), (left, right) = pre_pad_widths(pad, sides)
  if not pad:
    return images
  widths = [(0, 0)] * (images.ndim - 3) + [(top, bottom), (left, right), (0, 0)]
  return np.pad(images, widths, mode="reflect")


def _finalise(values: np.ndarray, out: np.ndarray) -> None:
  """Writes finished float rows into `out`, clipping/rounding for an integer dtype.

  `values` (band rows that are discarded afterwards) is modified in place, so that no
  band-sized temporaries are allocated.
  """
  if np.issubdtype(out.dtype, np.integer):
    pixels.quantize_inplace(values, 8 if out.dtype.itemsize == 1 else 16)
  out[...] = values


def upscale_array(image: np.ndarray, engine, spec: TileSpec = TileSpec(), *,
                  progress: Optional[Callable[[int, int], None]] = None,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
  """Upscales an image through a model, tile by tile, with blended overlaps.

  Args:
    image: float32 [H, W, C] host array in [0, 1] (C as the model takes: 1, 3 or 4).
    engine: An `esrgan_tf.inference.engine.Engine` (or anything with `fn`/`__call__`, `scale`,
      `input_size`, `max_batch`). With a static `input_size` every tile has exactly that size
      (`spec.tile` is ignored; axes shorter than it are mirror-padded and the output cropped).
    spec: Tiling and padding (`TileSpec`). pre_pad costs one padded copy of the input.
    progress: Called as `progress(tiles_done, tiles_total)` after every model call.
    out: Optional preallocated [s·H, s·W, C] output. An integer dtype (uint8, uint16) receives
      clipped, rounded values scaled to the dtype's maximum; a float dtype receives the model
      output as is.

  Returns:
    The upscaled image: `out` if given, else a new float32 [s·H, s·W, C] array, unclipped like
    the model output.

  Raises:
    ValueError: Bad arguments, or a model output of the wrong shape.
  """
  image = np.asarray(image)
  if image.ndim != 3 or min(image.shape) < 1:
    raise ValueError(f"image must be a non-empty [H, W, C] array, got shape {image.shape}")
  tile, overlap, batch = spec.tile, spec.overlap, spec.batch
  pre_pad, pre_pad_sides = spec.pre_pad, spec.pre_pad_sides
  (top, bottom), (left, right) = pre_pad_widths(pre_pad, pre_pad_sides)
  height, width, channels = image.shape
  scale = int(engine.scale)
  name = getattr(engine, "name", "model")
  # The model sees the pre-padded image; `full` is the size of its output, of which rows
  # [y0, y0 + s·H) and columns [x0, x0 + s·W) are `out`.
  padded_h, padded_w = height + top + bottom, width + left + right
  full = (padded_h * scale, padded_w * scale)
  y0, x0 = top * scale, left * scale
  tile_h, tile_w = _tile_size(padded_h, padded_w, engine, tile)
  static = bool(getattr(engine, "input_size", None))
  if static and overlap >= min(tile_h, tile_w):
    raise ValueError(f"tile overlap ({overlap}) must be smaller than the model's fixed input "
                     f"size {tile_h}x{tile_w}")
  out_shape = (height * scale, width * scale, channels)
  if out is None:
    out = np.empty(out_shape, np.float32)
  elif tuple(out.shape) != out_shape:
    raise ValueError(f"out has shape {out.shape}, expected {out_shape}")
  image = reflect_pad(image, pre_pad, pre_pad_sides)
  if static and (padded_h < tile_h or padded_w < tile_w):
    # A fixed-size model needs full tiles: mirror-pad the short axes (only they are copied) and
    # crop the output afterwards.
    image = np.pad(image, ((0, max(0, tile_h - padded_h)), (0, max(0, tile_w - padded_w)),
                           (0, 0)), mode="symmetric")
  # (With tile=0 the overlap is irrelevant: one tile per axis.)
  rows = axis_tiles(image.shape[0], tile_h, min(overlap, tile_h - 1), scale, spec.blend)
  cols = axis_tiles(image.shape[1], tile_w, min(overlap, tile_w - 1), scale, spec.blend)
  per_call = batch if not getattr(engine, "max_batch", None) else min(batch, engine.max_batch)

  jobs = [(r, c) for r in range(len(rows)) for c in range(len(cols))]
  total = len(jobs)
  # The band: float32 accumulator for output rows [band_lo, band_lo + used), reused across tile
  # rows (only the cross-fade rows are carried over), grown only if a batch spans more rows.
  band_lo, used = 0, 0
  band = np.zeros((0, full[1], channels), np.float32)
  rows_done = 0  # Tile rows whose tiles have all been added.
  for first in range(0, total, per_call):
    chunk = jobs[first:first + per_call]
    tiles = np.stack([image[rows[r].start:rows[r].stop, cols[c].start:cols[c].stop]
                      for r, c in chunk]).astype(np.float32, copy=False)
    result = np.asarray(engine(tiles))
    expected = (len(chunk), tiles.shape[1] * scale, tiles.shape[2] * scale, channels)
    if result.shape != expected:
      raise ValueError(f"{name}: returned shape {result.shape} for input {tiles.shape}, "
                       f"expected {expected} (scale {scale})")
    need = min(rows[chunk[-1][0]].hi, full[0]) - band_lo
    if need > band.shape[0]:
      grown = np.zeros((need,) + band.shape[1:], np.float32)
      grown[:used] = band[:used]
      band = grown
    used = max(used, need)
    for (r, c), pred in zip(chunk, result):
      ry, cx = rows[r], cols[c]
      hi_y, hi_x = min(ry.hi, full[0]), min(cx.hi, full[1])  # Crop the static-size padding.
      if ry.lo >= hi_y or cx.lo >= hi_x:
        continue
      wy = ry.weight[:hi_y - ry.lo, None, None]
      wx = cx.weight[None, :hi_x - cx.lo, None]
      part = pred[ry.lo - ry.start * scale:hi_y - ry.start * scale,
                  cx.lo - cx.start * scale:hi_x - cx.start * scale]
      band[ry.lo - band_lo:hi_y - band_lo, cx.lo:hi_x] += part * wy * wx
    done = first + len(chunk)
    if progress is not None:
      progress(done, total)
    # Finalise output rows no later tile touches: those above the next unfinished tile row.
    finished_rows = done // len(cols)
    if finished_rows > rows_done:
      rows_done = finished_rows
      final = (rows[rows_done].lo if rows_done < len(rows) else full[0]) - band_lo
      final = min(final, used)
      if final > 0:
        lo, hi = max(band_lo, y0), min(band_lo + final, y0 + out_shape[0])  # Crop pre_pad.
        if lo < hi:
          _finalise(band[lo - band_lo:hi - band_lo, x0:x0 + out_shape[1]], out[lo - y0:hi - y0])
        rest = used - final
        band[:rest] = band[final:used].copy()
        band[rest:used] = 0.0
        band_lo, used = band_lo + final, rest
  return out
