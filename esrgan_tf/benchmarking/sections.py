"""The report sections of `scripts/benchmark.py`: each runs jobs in children and returns rows.

A row is {"metric", "value", "unit", "goal" (text or ""), "note" (text or "")}. Full runs use the
full x4 nets (nf 64, nb 23, gc 32); --quick keeps the widths but uses one block and small
inputs. Every timed job runs in a fresh process (`jobs.run_job`).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any, Mapping, Optional

from esrgan_tf.benchmarking import jobs, multihead_rows, onnx_section, profile, video_section
from esrgan_tf.benchmarking import measure as measure_lib
from esrgan_tf.benchmarking import side_by_side as sbs
from esrgan_tf.benchmarking.measure import (
  ARCH_DEFAULTS,
  knee,
  rrdbnet_flops_per_pixel,
  tiled_fraction,
  useful_fraction,
)
from esrgan_tf.core import cpu

FULL_ARCH = dict(num_features=64, num_blocks=23, growth_channels=32, scale=4)
QUICK_ARCH = dict(num_features=64, num_blocks=1, growth_channels=32, scale=4)


_row = measure_lib.row


def _try_job(rows: list, metric: str, job: Mapping[str, Any], **kwargs) -> Optional[dict]:
  """`jobs.run_job`, or None after appending a "failed" row (one failed job never ends the run)."""
  try:
    return jobs.run_job(job, **kwargs)
  except jobs.JobError as e:
    rows.append(_row(metric, "failed", "", "", e.summary))
    return None


def _arch_text(arch: Mapping[str, Any]) -> str:
  a = {**ARCH_DEFAULTS, **dict(arch)}
  return f"x{a['scale']} nf{a['num_features']} nb{a['num_blocks']} {a['upsampler']}"


def _gflops(arch: Mapping[str, Any], pixels: float, seconds: float) -> float:
  return rrdbnet_flops_per_pixel(arch) * pixels / seconds / 1e9


# Engine plan of the inference section: (upsampler, engine) → sizes. The full run is the
# comparison: ncnn (Real-ESRGAN's own engine, fp32) against our
# SavedModel fp32/bf16 and TFLite fp32/int8 on the real x4plus weights, in one child process.
_FULL_PLAN = {
    "nearest": {"ncnn_fp32": (64, 128), "ncnn_fp32_direct": (64, 128),
                "keras_engine": (64, 128),
                "saved_model_fp32": (64, 128), "saved_model_bf16": (64, 128),
                # int8 at 64² only: calibrating at 128² took 12 min for the same verdict.
                "tflite_fp32": (64,), "tflite_dynamic": (64,), "tflite_int8": (64,)},
    "depth_to_space": {"keras_engine": (64,), "saved_model_fp32": (64,)},
}
_QUICK_PLAN = {
    "nearest": {"keras_eager": (32,), "keras_engine": (32, 64), "saved_model_fp32": (32, 64),
                "saved_model_bf16": (32,), "tflite_fp32": (32,), "tflite_fp16": (32,)},
    "depth_to_space": {"keras_engine": (32,), "saved_model_fp32": (32,)},
}
# PSNR goals vs our float32 output : bf16 ≥ 45 dB, calibrated int8 ≥ 40 dB.
_PSNR_GOALS = {"saved_model_bf16": "≥ 45", "tflite_int8": "≥ 40"}
# Speed goals as a ratio to ncnn's fp32 time at the same size.
_NCNN_GOALS = {"saved_model_fp32": "≤ 1.0× ncnn", "saved_model_bf16": "≤ 0.7× ncnn",
               "tflite_int8": "≤ 0.4× ncnn (64²)"}


def section_inference(quick: bool) -> list[dict]:
  """Latency per engine, size and upsampler, each as a ratio to ncnn where ncnn ran; GFLOP/s;
  SavedModel vs plain TF; bf16 speed-up; output PSNR vs our float32 at every size."""
  plan, arch = (_QUICK_PLAN, QUICK_ARCH) if quick else (_FULL_PLAN, FULL_ARCH)
  repeats = {"32": 3, "64": 5, "128": 3, "256": 1} if not quick else 2
  # After the first size an engine is traced and warm: 128² skips the warm-up call.
  warmup = {"128": 0, "256": 0} if not quick else 1
  native_bf16 = cpu.read_cpuinfo().bf16_flags
  rows = []
  for upsampler, engines in plan.items():
    a = {**arch, "upsampler": upsampler}
    try:
      result = jobs.run_job({"kind": "inference", "arch": a, "weights": "auto",
                             "repeats": repeats, "warmup": warmup,
                             "engine_sizes": {k: list(v) for k, v in engines.items()}})
    except jobs.JobError as e:
      rows.append(_row(f"inference {upsampler}", "failed", "", "", e.summary))
      continue
    times = {(r["engine"], r["size"]): r for r in result["rows"]}
    weights = os.path.basename(result["weights"])
    for r in result["rows"]:
      size, ms = r["size"], 1e3 * r["median_s"]
      warm = f"{r['warmup']} warm-up call" if r["warmup"] else "warm from a smaller size"
      note = (f"{_arch_text(a)}, {weights}; chelsea {size}², batch 1; median of {r['runs']} "
              f"({warm}; min {1e3 * r['min_s']:.0f} ms); "
              f"{_gflops(a, size * size, r['median_s']):.0f} GFLOP/s")
      if "export_s" in r:
        note += f"; export took {r['export_s']:.0f} s"
      if "convert_s" in r:
        note += f"; convert {r['convert_s']:.0f} s, {r['file_mb']:.1f} MiB, XNNPACK 2 threads"
      goal = ""
      ncnn = times.get(("ncnn_fp32", size))
      if ncnn and r["engine"] != "ncnn_fp32":
        note += f"; **{r['median_s'] / ncnn['median_s']:.2f}× ncnn**"
        goal = _NCNN_GOALS.get(r["engine"], "")
      direct = times.get(("ncnn_fp32_direct", size))
      if direct and r["engine"] not in ("ncnn_fp32", "ncnn_fp32_direct"):
        note += f"; {r['median_s'] / direct['median_s']:.2f}× ncnn without Winograd"
      base = times.get(("keras_engine", size))
      if base and r["engine"] == "saved_model_fp32":
        note += f"; {r['median_s'] / base['median_s']:.3f}× plain TF (keras_engine)"
      fp32 = times.get(("saved_model_fp32", size))
      if fp32 and r["engine"] == "saved_model_bf16":
        note += (f"; speed-up vs SavedModel fp32: {fp32['median_s'] / r['median_s']:.2f}× "
                 f"(native bf16: {', '.join(native_bf16) or 'none, oneDNN emulates'})")
      rows.append(_row(f"latency {r['engine']} {upsampler} {size}²", ms, "ms", goal, note))
    for r in result["rows"]:
      if "psnr_db" in r:
        rows.append(_row(f"output PSNR {r['engine']} vs our fp32 ({upsampler}, {r['size']}²)",
                         r["psnr_db"], "dB", _PSNR_GOALS.get(r["engine"], ""),
                         f"chelsea {r['size']}² → x4 vs keras_engine float32, uint8-rounded; "
                         f"{weights}" + ("; int8 calibrated on samples/train (not chelsea)"
                                         if r["engine"] == "tflite_int8" else "")))
  return rows


def section_fp32_path(quick: bool) -> list[dict]:
  """jit_compile, threads, oneDNN on/off, batch of tiles, and the tile-size knee (nearest net)."""
  arch = {**(QUICK_ARCH if quick else FULL_ARCH), "upsampler": "nearest"}
  size, repeats = (32, 2) if quick else (64, 3)
  base = {"kind": "latency", "arch": arch, "size": size, "repeats": repeats, "warmup": 1}
  where = f"{_arch_text(arch)}, random init, chelsea {size}², tf.function"
  rows = []

  def latency(label, extra=None, env=None, goal=""):
    try:
      result = jobs.run_job({**base, **(extra or {})}, env=env)
    except jobs.JobError as e:
      rows.append(_row(f"fp32 path: {label}", "failed", "", goal, e.summary))
      return None
    r = result["rows"][0]
    rows.append(_row(f"fp32 path: {label}", 1e3 * r["median_s"], "ms", goal,
                     f"{where}; min {1e3 * r['min_s']:.0f} ms of {r['runs']}; "
                     f"{_gflops(arch, size * size, r['median_s']):.0f} GFLOP/s; peak RSS "
                     f"{result['max_rss_mb']:.0f} MB"))
    return result

  plain = latency("default threads, no XLA")
  xla = latency("jit_compile=True", {"jit_compile": True, "check_dynamic": True})
  if plain and xla:
    rows[-1]["note"] += (f"; a new input size costs {xla['other_size_first_call_s']:.1f} s "
                         f"(XLA recompiles per shape; traced {xla['tracing_count']}×)")
    rows.append(_row("fp32 path: XLA speed-up", plain["rows"][0]["median_s"]
                     / xla["rows"][0]["median_s"], "×", "", "no-XLA median / XLA median"))
  for intra, inter in ((1, 1), (2, 1)):  # TF's default (0, 0) = one thread per core: (2, 2).
    latency(f"intra_op {intra}, inter_op {inter}", {"intra_op": intra, "inter_op": inter})
  latency("TF_ENABLE_ONEDNN_OPTS=0", env={"TF_ENABLE_ONEDNN_OPTS": "0"})

  # Batch of tiles: throughput in input pixels per second.
  result = _try_job(rows, "fp32 path: batch of tiles", {**base, "batches": [1, 2, 4],
                                                         "repeats": 2})
  for r in (result or {}).get("rows", []):
    rows.append(_row(f"fp32 path: batch of {r['batch']} {size}² tiles",
                     r["batch"] * size * size / r["median_s"] / 1e3, "k input px/s", "",
                     f"{where}; median {r['median_s']:.2f} s per call of {r['runs']}"))

  # Tile size vs throughput. Useful = raw × the share of computed pixels that are image pixels
  # under the tiler's layout, averaged over 480–2048 px images (`tiled_fraction`).
  tiles, overlap = ((32, 48, 64, 96) if quick else (64, 96, 128, 192, 256)), 16
  result = _try_job(rows, "tile sweep", {
      "kind": "tile_sweep", "arch": arch, "tiles": list(tiles), "warmup": {str(tiles[0]): 1},
      "repeats": {"64": 3, "96": 3, "128": 3, "192": 1, "256": 1} if not quick else 2})
  if result is None:
    return rows
  points = []
  for r in result["rows"]:
    t = r["tile"]
    raw = t * t / r["median_s"]
    fraction = tiled_fraction(t, overlap)
    points.append((t, raw * fraction))
    rows.append(_row(f"tile {t}: useful throughput", raw * fraction / 1e3, "k input px/s", "",
                     f"raw {raw / 1e3:.2f} k px/s × {fraction:.3f} (image share of computed "
                     f"pixels, overlap {overlap}, mean over 480–2048 px images; asymptotic "
                     f"((t−{overlap})/t)² = {useful_fraction(t, overlap):.3f}); "
                     f"{1e3 * r['median_s']:.0f} ms per tile (median of {r['runs']}); "
                     f"{_arch_text(arch)}, batch 1, keras_engine"))
  rows.append(_row("tile-size knee (≥ 95% of best useful throughput)", knee(points), "px",
                   "the esrgan-upscale --tile default", f"tiles {list(tiles)}, overlap {overlap}"))
  return rows


def _config_path(name: str) -> str:
  """configs/<name> of the source tree (the package's parent directory)."""
  package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.join(os.path.dirname(package), "configs", name)


# Train-section time budget of a full run (seconds), for the rows after the side-by-side ones
# (which always run): the paper's batch 16, then the precision/XLA/upsampler comparisons at
# batch 4 and 64² HR crops (same networks), made in the order below until the budget is spent.
TRAIN_BUDGET_S = 240.0
# Threads of the side-by-side rows (both sides): the 2-core machines we measure on.
TRAIN_THREADS = 2


def _train_plan(quick: bool, compare_quick: bool = False) -> list[tuple]:
  """(phase, precision, jit_compile, upsampler, batch, gt_size, compare) in order of priority.

  compare: time BasicSR's step on the same nets and size too (fp32, no XLA, nearest). Full runs:
  batch 4 / 128² HR (side by side, with mixed_bfloat16 next to it) and the paper's batch 16.
  Quick runs only with `compare_quick` (batch 2, 128²: BasicSR's discriminator takes 128² or
  256² only).
  """
  if quick:
    b, gt = 2, 32
    head = ([("psnr", "float32", False, "nearest", 2, 128, True),
             ("gan", "float32", False, "nearest", 2, 128, True)] if compare_quick else [])
  else:
    b, gt = 4, 64
    head = [("psnr", "float32", False, "nearest", 4, 128, True),
            ("gan", "float32", False, "nearest", 4, 128, True),
            ("psnr", "mixed_bfloat16", False, "nearest", 4, 128, False),
            ("gan", "mixed_bfloat16", False, "nearest", 4, 128, False),
            ("psnr", "float32", False, "nearest", 16, 128, True),
            ("gan", "float32", False, "nearest", 16, 128, True)]
  small = [("psnr", "float32", False, "nearest", b, gt),
           ("psnr", "mixed_bfloat16", False, "nearest", b, gt),
           ("psnr", "float32", False, "depth_to_space", b, gt),
           ("psnr", "float32", True, "depth_to_space", b, gt),
           ("psnr", "float32", True, "nearest", b, gt),
           ("gan", "float32", False, "nearest", b, gt)]
  if not quick:
    small += [("gan", "mixed_bfloat16", False, "nearest", b, gt),
              ("gan", "float32", True, "depth_to_space", b, gt),
              ("gan", "float32", False, "depth_to_space", b, gt)]
  return head + [entry + (False,) for entry in small]


def section_train(quick: bool, basicsr_python: Optional[str] = None,
                  rounds: Optional[int] = None) -> list[dict]:
  """Train step time: phase × precision × XLA (`training.step_time`), and BasicSR side by side.

  Args:
    quick: One-block nets and small inputs; no BasicSR rows unless `basicsr_python` is given.
    basicsr_python: Interpreter with torch + basicsr 1.4.2; None = $BASICSR_PYTHON (full runs
      only); "" = none (a row says how to install it).
    rounds: Side-by-side settings run ours, BasicSR, ours, BasicSR, ... `rounds` times each, so
      that other load on the machine hits both sides; default 2 (full) or 1 (quick).
  """
  explicit = basicsr_python is not None
  basicsr_python, rows = sbs.resolve_basicsr_python(quick, basicsr_python)
  rounds = rounds or (1 if quick else 2)
  arch = {"num_blocks": 1} if quick else {}
  budget = math.inf if quick else TRAIN_BUDGET_S
  times, start = {}, None
  plan = _train_plan(quick, compare_quick=quick and explicit)
  for phase, precision, jit, upsampler, batch, gt, compare in plan:
    key = (phase, precision, jit, upsampler, batch, gt)
    what = f"{phase} {precision}, batch {batch}, {gt}² HR"
    metric = (f"train step {phase} {precision} {'XLA' if jit else 'no XLA'} {upsampler}, "
              f"batch {batch}, {gt}² HR")
    priority = compare or (not quick and batch == 4 and gt == 128)
    if not priority:
      start = time.perf_counter() if start is None else start
      if time.perf_counter() - start > budget:
        rows.append(_row(metric, "skipped", "", "", f"section time budget {budget:.0f} s spent"))
        continue
    config = "psnr_x4.py" if phase == "psnr" else "esrgan_x4.py"
    steps, warmup = (3, 1) if priority else (1, 1)
    job = {"kind": "train_step", "config": _config_path(config), "precision": precision,
           "jit_compile": jit, "batch_size": batch, "gt_size": gt, "intra_op": TRAIN_THREADS,
           "arch": {**arch, "upsampler": upsampler}, "steps": steps, "warmup": warmup}
    their_job = {"phase": phase, "batch_size": batch, "gt_size": gt, "threads": TRAIN_THREADS,
                 "steps": steps, "warmup": warmup, "num_block": 1 if quick else 23}
    a = {**FULL_ARCH, **job["arch"]}
    ours, theirs, failed = [], [], None
    for _ in range(rounds if compare and basicsr_python else 1):
      try:
        load = sbs.load_text()
        ours.append({**jobs.run_job(job, timeout=None), "load": f"{load} → {sbs.load_text()}"})
        if compare and basicsr_python:
          load = sbs.load_text()
          theirs.append({**jobs.run_basicsr_job(basicsr_python, their_job),
                         "load": f"{load} → {sbs.load_text()}"})
      except jobs.JobError as e:
        failed = e
        break
    if not ours:
      rows.append(_row(metric, "failed", "", "", f"{_arch_text(a)}: {failed.summary}"))
      continue
    r = {**ours[0], "step_time_s": statistics.median(o["step_time_s"] for o in ours)}
    times[key] = r["step_time_s"]
    # Generator forward + backward ≈ 3× the forward FLOPs (input and weight gradients).
    g_flops = 3 * rrdbnet_flops_per_pixel(a) * batch * (gt // 4) ** 2
    rate = (f"generator fwd+bwd ≈ {g_flops / r['step_time_s'] / 1e9:.0f} GFLOP/s"
            if phase == "psnr" else "G + D + VGG19")
    rows.append(_row(metric, r["step_time_s"], "s/step",
                     "" if batch != 16 else "paper setting",
                     f"{_arch_text(a)}; {batch / r['step_time_s']:.2f} images/s; {rate}; median "
                     f"of {steps} separately timed step(s) after {warmup} warm-up (tracing"
                     f"{', XLA compile' if jit else ''}); per round "
                     f"{sbs.spread([o['step_time_s'] for o in ours])}; "
                     f"start-up {r['startup_s']:.0f} s; peak RSS {r['max_rss_mb']:.0f} MB; child "
                     f"wall {r['process_s']:.0f} s; load {'; '.join(o['load'] for o in ours)}"))
    if compare and basicsr_python:
      if failed is not None or len(theirs) < len(ours):
        rows.append(_row(f"BasicSR step {what}", "failed", "", "",
                         failed.summary if failed else "no BasicSR run"))
      if theirs:
        rows += sbs.basicsr_rows(what, ours[:len(theirs)], theirs)
  bf16 = cpu.read_cpuinfo().bf16_flags
  for (phase, precision, jit, upsampler, batch, gt), seconds in times.items():
    base = times.get((phase, "float32", False, upsampler, batch, gt))
    if base and (precision != "float32" or jit):
      what = "mixed_bfloat16" if precision != "float32" else "XLA"
      goal = sbs.BF16_TRAIN_GOAL if what == "mixed_bfloat16" and bf16 else ""
      rows.append(_row(f"train speed-up of {what} ({phase}, {upsampler}, batch {batch}, {gt}²)",
                       base / seconds, "×", goal,
                       f"float32 no-XLA step time / this step time; native bf16: "
                       f"{', '.join(bf16) or 'none, oneDNN emulates'}"))
  return rows


def section_serving(quick: bool) -> list[dict]:
  """gRPC round trip vs in-process SavedModel call, and 8-client throughput (`serving`)."""
  arch = {**(QUICK_ARCH if quick else FULL_ARCH), "upsampler": "nearest"}
  sizes = [32, 64] if quick else [64, 256]
  # The small size gets more repeats and the throughput run; one full-net 256² call is ~20 s.
  runs = [dict(sizes=[sizes[0]], clients=8, repeats=5, throughput_size=sizes[0],
               throughput_seconds=5.0 if quick else 15.0),
          dict(sizes=[sizes[1]], clients=0, repeats=1 if not quick else 2)]
  rows = []
  r = _try_job(rows, "serving", {"kind": "serving", "arch": arch, "weights": "auto",
                                 "runs": runs})
  if r is None:
    return rows
  where = f"{_arch_text(arch)}, {os.path.basename(r['weights'])}, upscale_float, batch 1"
  for size in sizes:
    lat = r["latency"][str(size)]
    rows.append(_row(f"gRPC overhead {size}²", lat["overhead_pct"], "%",
                     "≤ 10 (64²)" if size == 64 else "",
                     f"gRPC {lat['grpc_ms']:.0f} ms vs in-process {lat['in_process_ms']:.0f} ms "
                     f"(medians; minima {lat['grpc_min_ms']:.0f} / "
                     f"{lat['in_process_min_ms']:.0f} ms); {where}; server in the same process"))
  t = r["throughput"]
  if t:
    rows.append(_row(f"gRPC throughput, {t['clients']} clients, {t['size']}²",
                     t["requests_per_s"], "requests/s", "",
                     f"in-process single caller {t['in_process_requests_per_s']:.2f}/s; "
                     f"{t['failed_requests']} failed; {where}"))
  return rows




def section_tiling(quick: bool) -> list[dict]:
  """Tiled vs untiled PSNR, tiling overhead over model time, peak RSS of a large upscale."""
  rows = []
  result = _try_job(rows, "tiling PSNR", {"kind": "tiling_psnr", "quick": quick})
  if result is not None:
    size, tile = result["size"], result["tile"]
    for r in result["random"]:
      where = f"chelsea {size}², tile {tile}, overlap 16, x4 nb23 {r['upsampler']}, random init"
      rows.append(_row(f"PSNR tiled vs untiled ({r['upsampler']})", r["psnr"], "dB", "≥ 45",
                       where))
      rows.append(_row(f"tiling overhead ({r['upsampler']}, {r['calls']} tiles)",
                       100 * (r["wall_s"] / r["model_s"] - 1), "%", "≤ 15",
                       f"tiled wall {r['wall_s']:.1f} s / model time {r['model_s']:.1f} s − 1; "
                       + where))
    for r in result["trained"]:
      rows.append(_row(f"PSNR tiled vs untiled, trained weights, blend {r['blend']}", r["psnr"],
                       "dB", "≥ 45" if r["default"] else "",
                       f"{r['name']} ({r['num_blocks']} blocks) via esrgan_tf.weights; chelsea "
                       f"{size}², tile {tile}, overlap 16"))
  # A large image through the tiler in a fresh process: peak RSS, wall, overhead.
  big = 512 if quick else 2048
  job = dict(kind="tiled_large", size=big, num_blocks=1, upsampler="nearest", tile=256,
             overlap=16, batch=1)
  result = _try_job(rows, f"tiled {big}² x4", job)
  if result is None:
    return rows
  flops = (rrdbnet_flops_per_pixel({"num_blocks": 1, "upsampler": "nearest"})
           * (4 * big) ** 2 / 16)
  note = (f"{big}² → {4 * big}² uint8, x4 nb1 nearest (num_blocks only changes LR-size "
          f"activations; the HR stages dominate memory), tile 256, overlap 16, batch 1")
  rows.append(_row(f"peak RSS, tiled {big}² x4", result["max_rss_mb"], "MB", "≤ 2560 (2048²)",
                   note))
  rows.append(_row(f"wall time, tiled {big}² x4 nb1", result["wall_s"], "s", "",
                   f"{result['calls']} tiles; untiled-equivalent {flops / 1e12:.1f} TFLOP → "
                   f"{flops / result['wall_s'] / 1e9:.0f} GFLOP/s"))
  rows.append(_row(f"tiling overhead, {big}² x4 nb1",
                   100 * (result["wall_s"] / result["model_s"] - 1), "%", "≤ 15",
                   "wall / sum of model-call time − 1 (blending, cutting, band, uint8 "
                   "conversion)"))
  result = _try_job(rows, f"pipeline {big}² x4", dict(job, kind="cli"))
  if result is not None:
    rows.append(_row(f"peak RSS, pipeline (read+tile+write PNG) {big}² x4", result["max_rss_mb"],
                     "MB", "≤ 2560 (2048²)",
                     f"esrgan_tf.inference.batch.upscale_file, nb1, wall {result['wall_s']:.1f} s; "
                     "8-bit RGB: the tiler quantizes rows into the uint8 output (no float32 "
                     "full-size copy)"))
  return rows


def section_data(quick: bool) -> list[dict]:
  """Training input pipeline throughput (datasets.make_train_dataset), cache on and off."""
  rows = []
  result = _try_job(rows, "train input pipeline",
                    {"kind": "data_pipeline", "num_batches": 10 if quick else 50})
  for r in (result or {}).get("rows", []):
    rows.append(_row(
        f"train input pipeline, cache={r['cache']}", r["images_per_s"], "images/s",
        "≥ 5× the train step's images/s",
        f"samples/train (4 PNGs, 256²), x{r['scale']}, gt {r['gt_size']}, batch "
        f"{r['batch_size']}: decode, random crop, MATLAB-bicubic LR, dihedral augmentation"))
  # Real-ESRGAN's second-order degradations at the yml's batch 12 / gt 256 (goal: ≥ 5× the
  # Real-ESRNet train step's images/s at that batch; the step itself is timed by
  # scripts/measure_train_step.py, too slow and too large for this report).
  job = ({"kind": "degradation_pipeline", "num_batches": 2, "batch_size": 4, "gt_size": 64}
         if quick else {"kind": "degradation_pipeline", "num_batches": 10})
  result = _try_job(rows, "Real-ESRGAN degradation pipeline", job)
  for r in (result or {}).get("rows", []):
    rows.append(_row(
        f"Real-ESRGAN degradation pipeline, batch {r['batch_size']}, gt {r['gt_size']}",
        r["images_per_s"], "images/s", "≥ 5× the Real-ESRNet step's images/s",
        f"samples/train, x{r['scale']}, crop/pad {r['crop_pad_size']}², default "
        "realesrgan_degradation config (two blur/resize/noise/JPEG stages, final sinc, gt_usm, "
        "pair pool), cached decode; 2 warm-up batches"))
  return rows


def section_profile(quick: bool) -> list[dict]:
  """Where the fp32 time goes: TF op types and oneDNN primitives of one forward pass."""
  arch = {**(QUICK_ARCH if quick else FULL_ARCH), "upsampler": "nearest"}
  size = 32 if quick else 64
  rows = []
  result = _try_job(rows, "profile fp32", {"kind": "profile", "arch": arch, "weights": "auto",
                                           "size": size, "repeats": 3},
                    env={"ONEDNN_VERBOSE": "1"})
  if result is None:
    return rows
  where = (f"{_arch_text(arch)}, {os.path.basename(result['weights'])}, chelsea {size}², "
           "tf.function (keras_engine's graph)")
  rows += profile.profile_rows(result, where, rrdbnet_flops_per_pixel(arch) * size * size)
  return rows + _roofline_rows(rows, size, quick)


def _roofline_rows(rows: list, size: int, quick: bool) -> list[dict]:
  """The fp32 limit: matmul rate, one direct conv's share of it, Winograd from TF ops."""
  job = {"kind": "roofline", "size": size, "matmul": 1024 if quick else 2048,
         "repeats": 5 if quick else 20}
  r = _try_job(rows, "roofline", job)
  if r is None:
    return []
  conv = f"one {r['cin']}→{r['cout']} 3×3 conv + bias + LeakyReLU at {r['size']}², batch 1"
  return [
      _row("roofline: fp32 matmul rate", r["matmul_gflops"], "GFLOP/s", "",
           f"{r['matmul_side']}² × {r['matmul_side']}² tf.matmul, median; the reachable fp32 "
           "rate of this CPU with TF's threads"),
      _row("roofline: direct conv (our graph's oneDNN conv)", r["direct_gflops"], "GFLOP/s", "",
           f"{conv}: {r['direct_ms']:.2f} ms, {r['conv_mflop']:.0f} MFLOP; "
           f"{r['direct_gflops'] / r['matmul_gflops']:.0%} of the matmul rate"),
      _row("roofline: Winograd F(4,3) from TF ops / direct", r["winograd_ms"] / r["direct_ms"],
           "×", "", f"{conv}: {r['winograd_ms']:.2f} ms vs {r['direct_ms']:.2f} ms direct "
           f"(max |error| {r['winograd_max_abs_error']:.1e}); 4× fewer multiplies, but the "
           "transforms and transposes as separate TF ops cost more than they save"),
  ]


SECTIONS = {
    "tiling": section_tiling,
    "data": section_data,
    "inference": section_inference,
    "onnx": onnx_section.section_onnx,
    "fp32_path": section_fp32_path,
    "profile": section_profile,
    "serving": section_serving,
    "train": section_train,
    "multihead": multihead_rows.section_multihead,
    "video": video_section.section_video,
}
