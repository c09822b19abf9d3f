"""The `onnx` report section of scripts/benchmark.py: ONNX Runtime beside ncnn and our SavedModel.

Rows as in `sections` ({"metric", "value", "unit", "goal", "note"}); each net's engines run in one
child process (`jobs.run_job`), timed round-robin at each size.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from esrgan_tf.benchmarking import engines, jobs
from esrgan_tf.benchmarking.measure import row as _row

# Real-ESRGAN x4plus: x4, nearest, nf 64, nb 23, gc 32 (the ncnn file's architecture).
X4PLUS_ARCH = dict(num_features=64, num_blocks=23, growth_channels=32, scale=4,
                   upsampler="nearest")


def _try_job(rows: list, metric: str, job: Mapping[str, Any]) -> Optional[dict]:
  """`jobs.run_job`, or None after appending a "failed" row."""
  try:
    return jobs.run_job(job)
  except jobs.JobError as e:
    rows.append(_row(metric, "failed", "", "", e.summary))
    return None


# The ONNX section: Real-ESRGAN x4plus (RRDBNet, the ncnn file's weights: `trained_weights_path`)
# and realesr-animevideov3 (SRVGGNetCompact), each on ncnn, our SavedModel and ONNX Runtime.
_COMPACT_ARCH = dict(arch="srvgg", num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16,
                     upscale=4, act_type="prelu")
ONNX_THREADS = 2  # every engine: ncnn, TF intra-op (inter-op 1), ONNX Runtime intra-op


def _onnx_nets(quick: bool) -> list[tuple[str, dict, str, dict]]:
  """(label, arch, weights, {engine: sizes}) of the ONNX section."""
  sizes = [32] if quick else [64, 128]
  compact = engines.realesrgan_ncnn_param("REALESRGAN_ANIMAVIDEOV3_UP4X")
  x4plus = dict(X4PLUS_ARCH, num_blocks=1) if quick else X4PLUS_ARCH
  nets = [("RealESRGAN_x4plus" if not quick else "x4 nb1 nearest (random init)", x4plus,
           "auto", ["ncnn_fp32", "saved_model_fp32", "onnx_fp32"]),
          ("realesr-animevideov3" if compact else "Compact nc16 (random init)", _COMPACT_ARCH,
           compact, ["ncnn_fp32", "saved_model_fp32", "onnx_fp32", "onnx_fp16"])]
  plans = []
  for label, arch, weights, names in nets:
    has_ncnn = (engines.resolve_weights({"arch": arch, "weights": weights}) or "").endswith(
        ".param")
    plans.append((label, arch, weights,
                  {e: sizes for e in names if has_ncnn or not e.startswith("ncnn_")}))
  return plans


def section_onnx(quick: bool) -> list[dict]:
  """ONNX Runtime (CPU, 2 threads) beside ncnn and our SavedModel, on x4plus and Compact.

  The onnx engines are skipped, with a row saying so, when the `onnx` extra is not installed.
  """
  rows = []
  for label, arch, weights, plan in _onnx_nets(quick):
    for engine in list(plan):
      missing = engines.missing_packages(engine)
      if missing:
        del plan[engine]
        rows.append(_row(f"onnx: {label} {engine}", "skipped", "", "",
                         f"{', '.join(missing)} not installed: pip install 'esrgan_tf[onnx]'"))
    job = {"kind": "inference", "arch": arch, "weights": weights, "intra_op": ONNX_THREADS,
           "inter_op": 1, "repeats": 2 if quick else {"64": 5, "128": 3},
           "warmup": 1 if quick else {"128": 0}, "engine_sizes": plan,
           "psnr_reference": "saved_model_fp32"}
    result = _try_job(rows, f"onnx: {label}", job)
    if result is None:
      continue
    times = {(r["engine"], r["size"]): r["median_s"] for r in result["rows"]}
    for r in result["rows"]:
      size, engine = r["size"], r["engine"]
      note = (f"{label} ({os.path.basename(result['weights'])}), chelsea {size}², batch 1, "
              f"{ONNX_THREADS} threads; median of {r['runs']} (min {1e3 * r['min_s']:.0f} ms)")
      for other in ("ncnn_fp32", "saved_model_fp32"):
        if engine != other and (other, size) in times:
          note += f"; {r['median_s'] / times[other, size]:.2f}× {other}"
      if "convert_s" in r:
        note += f"; converted in {r['convert_s']:.0f} s, {r['file_mb']:.1f} MiB"
      if "export_s" in r:
        note += f"; exported in {r['export_s']:.0f} s"
      if "psnr_db" in r:
        note += f"; output PSNR vs saved_model_fp32 {r['psnr_db']:.1f} dB (uint8)"
      rows.append(_row(f"onnx: latency {label} {engine} {size}²", 1e3 * r["median_s"], "ms",
                       "", note))
  return rows
