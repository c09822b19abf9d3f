"""The video section of `scripts/benchmark.py` (parent side; the jobs are in `video`).

Rows: frames/s end to end, model only and ncnn for each clip of the plan (with the ratios the
goals are about: end to end ≥ 0.9× model only, model only ≥ ncnn), and peak RSS for a clip and a
10× longer one.
"""

from __future__ import annotations

from esrgan_tf.benchmarking import jobs
from esrgan_tf.benchmarking import measure as measure_lib
from esrgan_tf.benchmarking import video as video_bench

_row = measure_lib.row


def _try_job(rows: list, metric: str, job: dict):
  try:
    return jobs.run_job(job)
  except jobs.JobError as e:
    rows.append(_row(metric, "failed", "", "", e.summary))
    return None


def section_video(quick: bool) -> list[dict]:
  """Video frames/s: end to end vs model only vs ncnn on the same frames; peak RSS vs length."""
  rows = []
  for name, (width, height), outscale, frames, ncnn in (
      video_bench.QUICK_PLAN if quick else video_bench.FULL_PLAN):
    job = {"kind": "video", "model": name, "width": width, "height": height, "frames": frames,
           "outscale": outscale, "ncnn": ncnn}
    r = _try_job(rows, f"video {name} {height}p", job)
    if r is None:
      continue
    out_w, out_h = r["output"]
    where = (f"{r['weights']}, {width}x{height} → {out_w}x{out_h}, {frames} frames (a short "
             "clip: 2 shared cores), tile 96, libx264 medium")
    e2e, model_only = frames / r["e2e_s"], frames / r["model_only_s"]
    rows.append(_row(f"video e2e {name} {height}p", e2e, "frames/s",
                     "≥ 0.9× model only",
                     f"{where}; decode+model+encode, 3 threads; {e2e / model_only:.2f}× model "
                     f"only; model calls {r['e2e_model_s']:.1f} s of {r['e2e_s']:.1f} s; peak "
                     f"RSS {r['max_rss_mb']:.0f} MB"))
    tiling_s = r["model_only_s"] - r["engine_s"]
    rows.append(_row(f"video model only {name} {height}p", model_only, "frames/s", "",
                     f"{where}; FrameUpscaler on decoded frames (tiling {tiling_s:.1f} s of "
                     f"{r['model_only_s']:.1f} s)"))
    if "ncnn_s" in r:
      ncnn = frames / r["ncnn_s"]
      rows.append(_row(f"video ncnn {name} {height}p", ncnn, "frames/s", "model only ≥ ncnn",
                       f"{where}; the same frames and tiles through ncnn fp32 (2 threads); "
                       f"model only / ncnn = {model_only / ncnn:.2f}×"))
  lengths = (60, 600) if quick else (200, 2000)
  rss = {}
  for frames in lengths:
    r = _try_job(rows, f"video peak RSS {frames} frames",
                 {"kind": "video_rss", "width": 160, "height": 90, "frames": frames})
    if r is not None:
      rss[frames] = r["max_rss_mb"]
      rows.append(_row(f"video peak RSS, {frames} frames", r["max_rss_mb"], "MB",
                       "flat in the length",
                       f"realesr-animevideov3 x4, 160x90 → 640x360, libx264 veryfast, "
                       f"{r['segments']} segments, {r['wall_s']:.0f} s"))
  if len(rss) == 2:
    short, long = lengths
    rows.append(_row("video peak RSS growth, 10× longer clip", rss[long] - rss[short], "MB",
                     "≈ 0", f"{long} vs {short} frames"))
  return rows
