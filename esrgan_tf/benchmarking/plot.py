"""`latency_plot_svg(rows)`: latency against input size per engine, as a hand-written SVG (no
plotting library), for `scripts/benchmark.py`'s report."""

from __future__ import annotations

import html
import math

_COLOURS = ("#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037",
            "#ad1457")


def _log_ticks(lo: float, hi: float) -> list[float]:
  """1-2-5 ticks per decade covering [lo, hi] (ends included if they are ticks)."""
  ticks = []
  for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
    for mantissa in (1, 2, 5):
      value = mantissa * 10.0 ** exponent
      if lo * (1 - 1e-9) <= value <= hi * (1 + 1e-9):
        ticks.append(value)
  return ticks


def _fmt(value: float) -> str:
  return f"{value:g}" if value < 1e5 else f"{value:.0e}"


def latency_plot_svg(rows, *, title: str = "Latency vs input size",
                     width: int = 640, height: int = 400) -> str:
  """Latency against input size, one line per engine, log-log axes, as an SVG document.

  Log-log because latency spans orders of magnitude over the sizes and a convolutional network's
  cost grows with the pixel count: a slope of 2 per decade of side length is the expected shape.

  Args:
    rows: Iterable of dicts with "engine" (str), "size" (input side in pixels, > 0) and
      "ms" (latency, > 0), e.g. this project's and the ncnn/PyTorch reference numbers.
    title: Plot title.
    width, height: Size in pixels.

  Returns:
    The SVG text.

  Raises:
    ValueError: No rows, or a size/latency that is not positive.
  """
  series: dict[str, list[tuple[float, float]]] = {}
  for row in rows:
    size, ms = float(row["size"]), float(row["ms"])
    if not (size > 0 and ms > 0 and math.isfinite(size) and math.isfinite(ms)):
      raise ValueError(f"latency_plot_svg: size and ms must be positive, got {row}")
    series.setdefault(str(row["engine"]), []).append((size, ms))
  if not series:
    raise ValueError("latency_plot_svg: no rows")
  sizes = [s for points in series.values() for s, _ in points]
  times = [t for points in series.values() for _, t in points]
  # Axis ranges padded to the enclosing 1-2-5 ticks.
  x_lo, x_hi = _pad_range(min(sizes), max(sizes))
  y_lo, y_hi = _pad_range(min(times), max(times))
  left, right, top, bottom = 64, 150, 36, 48
  plot_w, plot_h = width - left - right, height - top - bottom

  def px(size):
    return left + plot_w * (math.log(size / x_lo) / math.log(x_hi / x_lo))

  def py(ms):
    return top + plot_h * (1 - math.log(ms / y_lo) / math.log(y_hi / y_lo))

  esc = html.escape
  out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
          f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'),
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{left}" y="22" font-size="15">{esc(title)}</text>']
  for tick in _log_ticks(x_lo, x_hi):
    x = px(tick)
    out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" '
               'stroke="#e3e3e3"/>')
    out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
               f"{_fmt(tick)}</text>")
  for tick in _log_ticks(y_lo, y_hi):
    y = py(tick)
    out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
               'stroke="#e3e3e3"/>')
    out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>')
  out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
             'stroke="#555"/>')
  out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle">'
             "input side (pixels)</text>")
  out.append(f'<text transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" '
             'text-anchor="middle">latency (ms)</text>')
  for index, (engine, points) in enumerate(series.items()):
    colour = _COLOURS[index % len(_COLOURS)]
    points = sorted(points)
    coords = " ".join(f"{px(s):.1f},{py(t):.1f}" for s, t in points)
    out.append(f'<g class="series" data-engine="{esc(engine, quote=True)}">')
    out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for s, t in points:
      out.append(f'<circle cx="{px(s):.1f}" cy="{py(t):.1f}" r="3" fill="{colour}">'
                 f"<title>{esc(engine)}: {_fmt(s)} px, {t:.3g} ms</title></circle>")
    y = top + 8 + 18 * index
    out.append(f'<line x1="{left + plot_w + 12}" y1="{y}" x2="{left + plot_w + 32}" y2="{y}" '
               f'stroke="{colour}" stroke-width="2"/>')
    out.append(f'<text x="{left + plot_w + 38}" y="{y + 4}">{esc(engine)}</text>')
    out.append("</g>")
  out.append("</svg>")
  return "\n".join(out) + "\n"


def _pad_range(lo: float, hi: float) -> tuple[float, float]:
  """[lo, hi] widened to 1-2-5 values (a single value gets a factor 2 on each side)."""
  def down(v):
    e = 10.0 ** math.floor(math.log10(v))
    return max(m * e for m in (1, 2, 5, 10) if m * e <= v * (1 + 1e-9))

  def up(v):
    e = 10.0 ** math.floor(math.log10(v))
    return min(m * e for m in (1, 2, 5, 10) if m * e >= v * (1 - 1e-9))

  lo, hi = down(lo), up(hi)
  if hi <= lo:
    lo, hi = lo / 2, hi * 2
  return lo, hi
