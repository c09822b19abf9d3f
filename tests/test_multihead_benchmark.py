"""The multihead benchmark section's arithmetic (hand-derived FLOPs) and its child job."""

import pytest

from esrgan_tf.benchmarking import jobs, measure
from esrgan_tf.benchmarking import multihead as mh

NEAREST = {"upsampler": "nearest"}


def test_trunk_and_shared_flops_by_hand():
  # nf 64, nb 23, gc 32 (tests/test_benchmarking.py derives the pieces): conv_first 3,456,
  # body 33,067,008, conv_body 73,728.
  trunk = 3_456 + 33_067_008 + 73_728
  assert mh.trunk_flops_per_pixel(NEAREST) == trunk == 33_144_192
  # Heads per input pixel (nearest; a conv nf→nf is 73,728 per output pixel, conv_last 3,456):
  #   x2: up1 at 4×, hr at 4×, last at 4×            = 294,912 + 294,912 + 13,824 = 603,648
  #   x4: up1 4×, up2 16×, hr 16×, last 16×          = 2,709,504
  #   x8: up1 4×, up2 16×, up3 64×, hr 64×, last 64× = 11,132,928
  heads = 603_648 + 2_709_504 + 11_132_928
  assert mh.flops_per_pixel(NEAREST, (2, 4, 8), shared=True) == trunk + heads == 47_590_272
  assert mh.flops_per_pixel(NEAREST, (2, 4, 8), shared=False) == 3 * trunk + heads
  # One scale: shared or not, the single network.
  assert mh.flops_per_pixel(NEAREST, (4,), shared=True) == measure.rrdbnet_flops_per_pixel(
      {**NEAREST, "scale": 4}) == 35_853_696


TINY = dict(num_features=8, num_blocks=1, growth_channels=4, upsampler="nearest")


def test_timing_job_compares_the_same_images():
  result = jobs.run_job({"kind": "multihead", "mode": "timing", "arch": TINY,
                         "scales": [2, 4, 8], "size": 16, "repeats": 1, "warmup": 0})
  assert set(result["rows"]) == {"shared_all", "separate_all", "shared_one", "single_one"}
  assert result["one_scale"] == "x4"
  # The separate models are the shared model's heads as RRDBNets: equal images.
  assert result["max_abs_diff"] < 1e-5
  assert result["params_separate"] > result["params_shared"]


@pytest.mark.parametrize("mode", ["memory_shared", "memory_separate"])
def test_memory_jobs_report_peak_rss(mode):
  result = jobs.run_job({"kind": "multihead", "mode": mode, "arch": TINY, "scales": [2, 4],
                         "size": 16, "repeats": 1, "warmup": 0})
  assert result["max_rss_mb"] >= result["rss_before_mb"] > 0
  assert result["runs"] == 1 and result["params"] > 0
