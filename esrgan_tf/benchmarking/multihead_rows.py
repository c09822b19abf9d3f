"""The multihead section of `scripts/benchmark.py`: rows of all heads from one trunk pass vs
separate single-scale models (the jobs: `benchmarking.multihead`)."""

from __future__ import annotations

from esrgan_tf.benchmarking import jobs
from esrgan_tf.benchmarking import multihead as mh
from esrgan_tf.benchmarking.measure import row as _row


def _try_job(rows: list, metric: str, job) -> dict | None:
  """`jobs.run_job`, or None after appending a "failed" row."""
  try:
    return jobs.run_job(job)
  except jobs.JobError as e:
    rows.append(_row(metric, "failed", "", "", e.summary))
    return None


# Trunk sizes of the multihead section: the ESRGAN/Real-ESRGAN trunk and a small one.
_MULTIHEAD_ARCHS = {
    "nf64 nb23": dict(num_features=64, num_blocks=23, growth_channels=32),
    "nf32 nb6": dict(num_features=32, num_blocks=6, growth_channels=16),
}
_MULTIHEAD_QUICK_ARCHS = {"nf64 nb1": dict(num_features=64, num_blocks=1, growth_channels=32)}
MULTIHEAD_SCALES = (2, 4, 8)


# Thread settings of the timing job: TF's defaults, and inter_op 1 (one op at a time: the heads
# are then not run concurrently, each competing for the intra-op threads of the 2 cores).
_TIMING_THREADS = {"default threads": {}, "inter_op 1": {"inter_op": 1}}


def _timing_rows(rows: list, label: str, base: dict, where: str, flops: dict) -> None:
  heads = "/".join(f"x{s}" for s in base["scales"])
  for threads, extra in _TIMING_THREADS.items():
    timing = _try_job(rows, f"multihead {label}: time ({threads})",
                      {**base, **extra, "mode": "timing"})
    if timing is None:
      continue
    t = timing["rows"]
    shared, separate = t["shared_all"]["median_s"], t["separate_all"]["median_s"]
    rows.append(_row(f"multihead {label}: {heads} from one trunk pass ({threads})", 1e3 * shared,
                     "ms", "", f"{where}; median of {t['shared_all']['runs']}, min "
                     f"{1e3 * t['shared_all']['min_s']:.0f} ms; {flops[True] / 1e9:.1f} GFLOP; "
                     f"{timing['params_shared'] / 1e6:.2f} M params"))
    rows.append(_row(f"multihead {label}: {heads} as 3 separate models ({threads})",
                     1e3 * separate, "ms", "", f"{where}; median of {t['separate_all']['runs']}, "
                     f"min {1e3 * t['separate_all']['min_s']:.0f} ms; {flops[False] / 1e9:.1f} "
                     f"GFLOP; {timing['params_separate'] / 1e6:.2f} M params; outputs equal the "
                     f"shared model's to {timing['max_abs_diff']:.1e}"))
    rows.append(_row(f"multihead {label}: time shared / separate ({threads})", shared / separate,
                     "×", "< 1", f"FLOP ratio {flops[True] / flops[False]:.2f}; timed "
                     "round-robin in one process"))
    one = timing["one_scale"]
    rows.append(_row(f"multihead {label}: one head ({one}) vs its single model ({threads})",
                     t["shared_one"]["median_s"] / t["single_one"]["median_s"], "×", "≈ 1",
                     f"head_fn({one!r}) {1e3 * t['shared_one']['median_s']:.0f} ms vs RRDBNet "
                     f"{1e3 * t['single_one']['median_s']:.0f} ms (the other heads not run)"))


def _memory_rows(rows: list, label: str, base: dict, where: str) -> None:
  memory = {mode: _try_job(rows, f"multihead {label}: {mode}", {**base, "mode": mode})
            for mode in ("memory_shared", "memory_separate")}
  for mode, result in memory.items():
    if result is None:
      continue
    side = "one trunk pass" if mode == "memory_shared" else "3 separate models"
    rows.append(_row(f"multihead {label}: peak RSS, {side}", result["max_rss_mb"], "MB", "",
                     f"{where}; fresh process; {result['rss_before_mb']:.0f} MB before the "
                     f"first call (TF, weights of {4 * result['params'] / 2**20:.0f} MB); "
                     f"median {1e3 * result['median_s']:.0f} ms alone"))
  if all(memory.values()):
    shared, separate = memory["memory_shared"], memory["memory_separate"]
    rows.append(_row(f"multihead {label}: peak RSS shared / separate",
                     shared["max_rss_mb"] / separate["max_rss_mb"], "×", "",
                     f"growth over the pre-call RSS: "
                     f"{shared['max_rss_mb'] - shared['rss_before_mb']:.0f} MB vs "
                     f"{separate['max_rss_mb'] - separate['rss_before_mb']:.0f} MB"))


def section_multihead(quick: bool) -> list[dict]:
  """x2/x4/x8 from one trunk pass (MultiHeadRRDBNet) vs three single-scale RRDBNets of the same
  trunk: time (interleaved in one process), peak RSS (each side in a fresh process), FLOPs."""
  archs = _MULTIHEAD_QUICK_ARCHS if quick else _MULTIHEAD_ARCHS
  size = 32 if quick else 64
  scales = list(MULTIHEAD_SCALES)
  rows = []
  for label, trunk in archs.items():
    arch = {**trunk, "upsampler": "nearest"}
    base = {"kind": "multihead", "arch": arch, "scales": scales, "size": size,
            "repeats": 2 if quick else 5, "warmup": 1}
    where = f"{label} nearest, chelsea {size}², batch 1"
    flops = {shared: mh.flops_per_pixel(arch, scales, shared) * size * size
             for shared in (True, False)}
    _timing_rows(rows, label, base, where, flops)
    _memory_rows(rows, label, {**base, "repeats": 2 if quick else 3}, where)
  return rows
