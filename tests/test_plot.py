"""The benchmark report's latency plot (benchmarking.plot)."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from esrgan_tf.benchmarking import plot


def _series(svg):
  root = ET.fromstring(svg)
  ns = {"s": "http://www.w3.org/2000/svg"}
  out = {}
  for group in root.findall("s:g", ns):
    points = group.find("s:polyline", ns).get("points").split()
    out[group.get("data-engine")] = [tuple(map(float, p.split(","))) for p in points]
  return root, out


def test_latency_plot_svg():
  rows = [{"engine": "tf", "size": s, "ms": 0.01 * s * s} for s in (256, 64, 128, 512)]
  rows += [{"engine": "ncnn <ref>", "size": s, "ms": 0.004 * s * s} for s in (64, 512)]
  svg = plot.latency_plot_svg(rows)
  root, series = _series(svg)
  assert root.get("width") == "640"
  assert set(series) == {"tf", "ncnn <ref>"}
  tf_points = series["tf"]
  assert len(tf_points) == 4
  xs = [x for x, _ in tf_points]
  ys = [y for _, y in tf_points]
  assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # SVG y grows downwards.
  # Log-log: latency ∝ size² is a straight line with twice the x slope (pixels per decade
  # differ between the axes, so compare the ratio of successive steps instead).
  dx = np.diff(xs)
  dy = np.diff(ys)
  np.testing.assert_allclose(dy / dx, (dy / dx)[0], rtol=1e-2)
  # The reference (smaller latency) lies below the tf line at equal sizes: larger SVG y.
  ref = dict(series["ncnn <ref>"])
  assert ref[xs[0]] > ys[0]
  assert "ncnn &lt;ref&gt;" in svg
  with pytest.raises(ValueError, match="no rows"):
    plot.latency_plot_svg([])
  with pytest.raises(ValueError, match="must be positive"):
    plot.latency_plot_svg([{"engine": "x", "size": 64, "ms": 0}])
