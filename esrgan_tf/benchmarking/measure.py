r"""What the benchmark harness measures with: FLOP counts, timing, peak RSS, CPU flags, tiling math.

Timing: `measure` calls a function `warmup` times untimed (tracing, oneDNN primitive creation,
allocator growth), then `repeats` times, and reports the median and the minimum.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

from esrgan_tf.core import cpu


def row(metric: str, value, unit: str, goal: str = "", note: str = "") -> dict:
  """One report row of `scripts/benchmark.py`: {"metric", "value", "unit", "goal", "note"}."""
  if isinstance(value, float) and not math.isfinite(value):
    value = str(value)  # "inf" (identical outputs): JSON has no infinity.
  return {"metric": metric, "value": value, "unit": unit, "goal": goal, "note": note}


# --- FLOP counts -------------------------------------------------------------------------------

ARCH_DEFAULTS = dict(in_channels=3, out_channels=3, num_features=64, num_blocks=23,
                      growth_channels=32, scale=4, upsampler="depth_to_space")


def conv3x3_flops(cin: int, cout: int) -> int:
  """Direct-convolution FLOPs of one 3×3 conv per OUTPUT pixel: 2·k²·Cin·Cout (multiply + add)."""
  return 2 * 9 * cin * cout


def rrdbnet_flops_per_pixel(config: Mapping[str, Any]) -> float:
  """FLOPs of one RRDBNet forward pass per INPUT pixel, counting the 3×3 convolutions only.

  Each conv contributes 2·k²·Cin·Cout per output pixel times its resolution relative to the input
  (1 in the body, 4 after one ×2 stage, 16 after two, …). Biases, LeakyReLU, residual adds,
  concatenation and resizing are left out (< 0.1 %). For the x4 nearest default the total is
  35,853,696 ≈ 35.85 MFLOP (derivation in tests/test_benchmarking.py).

  Args:
    config: RRDBNet constructor arguments (e.g. `model.arch_config()`); missing keys take the
      RRDBNet defaults.

  Returns:
    FLOPs per input pixel (float).

  Raises:
    ValueError: A scale that is not a power of two, or an unknown upsampler.
  """
  c = {**ARCH_DEFAULTS, **dict(config)}
  nf, gc, scale = int(c["num_features"]), int(c["growth_channels"]), int(c["scale"])
  if scale < 1 or scale & (scale - 1):
    raise ValueError(f"scale must be a power of two, got {scale}")
  if c["upsampler"] not in ("nearest", "depth_to_space"):
    raise ValueError(f"unknown upsampler {c['upsampler']!r}")
  # Residual dense block: conv j (1..4) maps nf + (j-1)·gc channels to gc, conv5 nf + 4·gc → nf.
  rdb = sum(conv3x3_flops(nf + j * gc, gc) for j in range(4)) + conv3x3_flops(nf + 4 * gc, nf)
  total = conv3x3_flops(c["in_channels"], nf) + int(c["num_blocks"]) * 3 * rdb
  total += conv3x3_flops(nf, nf)  # conv_body
  area = 1  # Output pixels of the current stage per input pixel.
  for _ in range(scale.bit_length() - 1):
    if c["upsampler"] == "nearest":  # resize ×2, then conv nf → nf at the new resolution.
      area *= 4
      total += area * conv3x3_flops(nf, nf)
    else:  # conv nf → 4·nf at the old resolution, then depth_to_space.
      total += area * conv3x3_flops(nf, 4 * nf)
      area *= 4
  total += area * (conv3x3_flops(nf, nf) + conv3x3_flops(nf, c["out_channels"]))  # hr, last
  return float(total)


# --- timing ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Timing:
  """Wall times of the timed calls (seconds)."""

  times: list

  @property
  def median(self) -> float:
    return statistics.median(self.times)

  @property
  def min(self) -> float:
    return min(self.times)

  def as_dict(self) -> dict:
    return {"median_s": self.median, "min_s": self.min, "runs": len(self.times)}


def measure(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 3) -> Timing:
  """Times `fn()` after `warmup` untimed calls.

  Args:
    fn: A callable that blocks until its result is ready (e.g. returns numpy).
    warmup: Untimed calls first.
    repeats: Timed calls (≥ 1).

  Returns:
    A `Timing`.

  Raises:
    ValueError: repeats < 1 or warmup < 0.
  """
  if repeats < 1 or warmup < 0:
    raise ValueError(f"need repeats ≥ 1 and warmup ≥ 0, got {repeats}, {warmup}")
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return Timing(times)


def measure_interleaved(fns: Mapping[str, Callable[[], Any]], *, warmup: int = 1,
                        repeats: int = 3) -> dict:
  """Times several functions round-robin, so that drifting machine load hits all of them alike.

  Args:
    fns: name → callable (blocking).
    warmup: Untimed calls of each first.
    repeats: Timed rounds (≥ 1).

  Returns:
    name → (`Timing`, the result of its last call).

  Raises:
    ValueError: repeats < 1 or warmup < 0.
  """
  if repeats < 1 or warmup < 0:
    raise ValueError(f"need repeats ≥ 1 and warmup ≥ 0, got {repeats}, {warmup}")
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times = {name: [] for name in fns}
  results = {}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      results[name] = fn()
      times[name].append(time.perf_counter() - start)
  return {name: (Timing(times[name]), results[name]) for name in fns}


def useful_fraction(tile: int, overlap: int) -> float:
  """Share of a tile's input pixels that are new when tiles overlap by `overlap` in each axis.

  A grid of tiles of size t with overlap o advances by t − o, so each tile contributes
  (t − o)² new pixels of its t² (edge effects ignored).
  """
  if not 0 <= overlap < tile:
    raise ValueError(f"need 0 ≤ overlap < tile, got overlap {overlap}, tile {tile}")
  return ((tile - overlap) / tile) ** 2


# Image side lengths over which `tiled_fraction` averages: photos from 480 px to 2048 px a side.
TYPICAL_SIDES = tuple(range(480, 2049, 16))


def tiled_fraction(tile: int, overlap: int, sides: Sequence[int] = TYPICAL_SIDES) -> float:
  """Share of the computed input pixels that are image pixels, under `tiling`'s layout.

  The tiler cuts equal tiles spread evenly over each axis (overlaps ≥ `overlap`), so besides the
  overlap the last step is rounded up to a whole tile: for a 1024-px side, tile 256 and overlap 16
  it computes 5 × 256 = 1280 px. Averaged over square images of the given sides.

  Args:
    tile: Tile size (input pixels).
    overlap: Minimum overlap.
    sides: Image side lengths to average over.

  Returns:
    Mean of (side / computed pixels along the side)² (1.0 when an image fits in one tile).
  """
  from esrgan_tf.inference import tiling  # pylint: disable=g-import-not-at-top
  fractions = []
  for side in sides:
    computed = sum(t.stop - t.start for t in tiling.axis_tiles(side, tile, overlap, 1))
    fractions.append((side / computed) ** 2)
  return sum(fractions) / len(fractions)


def cpu_flags(cpuinfo_path: str = cpu.CPUINFO) -> list[str]:
  """The SIMD/matrix flags relevant to oneDNN and XNNPACK (avx*, amx*, fma, f16c, vnni), sorted."""
  return cpu.read_cpuinfo(cpuinfo_path).simd_flags


def peak_rss_mb(status_path: str = "/proc/self/status") -> float:
  """This process's peak resident set size (MB), from the kernel's VmHWM ("high water mark").

  Args:
    status_path: /proc/self/status (a fake one in tests).

  Returns:
    MiB; falls back to `getrusage(RUSAGE_SELF).ru_maxrss` (KiB on Linux) without /proc.
  """
  try:
    with open(status_path, encoding="ascii", errors="replace") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024  # "VmHWM:   123456 kB"
  except (OSError, ValueError, IndexError):
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def knee(points: Sequence[tuple[float, float]], fraction: float = 0.95) -> float:
  """The smallest x whose y reaches `fraction` of the best y (the knee of a throughput curve).

  Args:
    points: (x, y) pairs, e.g. (tile size, useful pixels per second).
    fraction: How close to the best counts as "there".

  Returns:
    That x.

  Raises:
    ValueError: No points.
  """
  if not points:
    raise ValueError("no points")
  best = max(y for _, y in points)
  return min(x for x, y in points if y >= fraction * best)
