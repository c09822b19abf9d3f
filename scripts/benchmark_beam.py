r"""Throughput of esrgan-beam on local runners vs esrgan-upscale on the same small images.

  python scripts/benchmark_beam.py --model=REALESRGAN_ANIMAVIDEOV3_UP4X.param [--count=200] \
      [--size=64] [--workdir=/tmp/esrgan_beam_bench] [--rows=upscale,fnapi,mp1,mp2,mp2_large]

Makes --count PNG crops (--size², from the package's sample photos) and runs each row as a
command in a subprocess, as a user would:

  upscale    esrgan-upscale
  fnapi      esrgan-beam --runner=FnApiRunner (one process: the launcher does the work)
  mp1, mp2   esrgan-beam --direct_running_mode=multi_processing --direct_num_workers=1 / 2
  mp2_t1     mp2 with --num_threads=1 (one TF thread per process: no oversubscription)
  mp2_large  mp2 with --large_model (one model shared by both processes through Beam's proxy)

Reported per row: wall time and images/s end to end (process start to exit: imports, model
loads, Beam's start-up included); steady images/s from the output files' modification times
((N − 1) / (last − first), start-up excluded); model loads (the workers' "loaded model" log
lines); peak RSS (VmHWM, its last reading) of the launcher and of each Beam SDK worker
process, polled from /proc every 0.1 s. Prints a markdown table and writes it with the raw
numbers to <workdir>/results.json. Nothing is asserted. The machine may be shared: quote its
CPU and load with the numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

from absl import app, flags
import numpy as np
from PIL import Image

import esrgan_tf

_MODEL = flags.DEFINE_string("model", None, "--model for every row.", required=True)
_COUNT = flags.DEFINE_integer("count", 200, "Number of images.")
_SIZE = flags.DEFINE_integer("size", 64, "Square image size.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/esrgan_beam_bench", "Scratch directory.")
_ROWS = flags.DEFINE_list("rows", ["upscale", "fnapi", "mp1", "mp2", "mp2_t1", "mp2_large"],
                          "Rows to run (see the module docstring).")
_EXTRA = flags.DEFINE_list("extra", [], "Extra flags for every row (e.g. --precision=float32).")

_MP = ["--direct_running_mode=multi_processing"]
ROWS = {
    "upscale": ("esrgan_tf.cli.upscale", []),
    "fnapi": ("esrgan_tf.cli.beam", ["--runner=FnApiRunner"]),
    "mp1": ("esrgan_tf.cli.beam", _MP + ["--direct_num_workers=1"]),
    "mp2": ("esrgan_tf.cli.beam", _MP + ["--direct_num_workers=2"]),
    "mp2_t1": ("esrgan_tf.cli.beam", _MP + ["--direct_num_workers=2", "--num_threads=1"]),
    "mp2_large": ("esrgan_tf.cli.beam", _MP + ["--direct_num_workers=2", "--large_model"]),
}


def make_images(directory: str, count: int, size: int) -> None:
  """`count` size² RGB crops of the sample photos, at deterministic random places."""
  os.makedirs(directory, exist_ok=True)
  photos = []
  for sub in ("train", "val", "heldout"):
    folder = os.path.join(esrgan_tf.SAMPLES_DIR, sub)
    photos += [np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"))
               for name in sorted(os.listdir(folder)) if name.endswith(".png")]
  rng = np.random.default_rng(0)
  for i in range(count):
    photo = photos[i % len(photos)]
    top = rng.integers(0, photo.shape[0] - size + 1)
    left = rng.integers(0, photo.shape[1] - size + 1)
    Image.fromarray(photo[top:top + size, left:left + size]).save(
        os.path.join(directory, f"img{i:04d}.png"))


def _descendants(pid: int) -> list:
  children = []
  try:  # Each thread lists the children it started (Beam starts workers from other threads).
    for task in os.listdir(f"/proc/{pid}/task"):
      with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
        children += [int(c) for c in f.read().split()]
  except OSError:
    pass
  return children + [d for c in children for d in _descendants(c)]


def _peak_rss_kib(pid: int):
  try:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1])
  except OSError:
    return None
  return None


def _cmdline(pid: int) -> str:
  try:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
      return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
  except OSError:
    return ""


def run_row(module: str, flags_: list, images: str, output: str) -> dict:
  shutil.rmtree(output, ignore_errors=True)
  cmd = [sys.executable, "-m", module, f"--model={_MODEL.value}", f"--input={images}",
         f"--output={output}", *flags_, *_EXTRA.value]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  start = time.time()
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  peaks, kinds, cmdlines = {}, {}, {}
  stderr_chunks = []
  reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
  reader.start()
  while proc.poll() is None:
    for pid in [proc.pid] + _descendants(proc.pid):
      rss = _peak_rss_kib(pid)
      if rss is not None:
        # VmHWM is the peak of the program the process runs now (a fork's copy of the launcher
        # until it execs a worker): the last reading is the peak of its final program.
        peaks[pid] = rss
        line = cmdlines[pid] = _cmdline(pid) or cmdlines.get(pid, "")
        kinds[pid] = ("launcher" if pid == proc.pid else
                      "shell" if line.startswith(("/bin/sh", "sh ")) else
                      "worker" if "sdk_worker_main" in line else "other")
    time.sleep(0.1)
  wall = time.time() - start
  stdout = proc.stdout.read()
  reader.join()
  stderr = "".join(stderr_chunks)
  names = [n for n in os.listdir(output) if n.endswith(".png")]
  mtimes = sorted(os.path.getmtime(os.path.join(output, n)) for n in names)
  steady = (len(mtimes) - 1) / (mtimes[-1] - mtimes[0]) if len(mtimes) > 1 else None
  return {
      "command": " ".join(cmd), "returncode": proc.returncode, "outputs": len(names),
      "wall_s": round(wall, 1), "images_per_s": round(len(names) / wall, 2),
      "steady_images_per_s": None if steady is None else round(steady, 2),
      "model_loads_logged": sum("loaded model" in line for line in stderr.splitlines()),
      "summary": stdout.strip().splitlines(),
      "peak_rss_mib": {f"{kinds.get(pid, 'other')}:{pid}": round(kib / 1024)
                       for pid, kib in sorted(peaks.items()) if kinds.get(pid) != "shell" and kib},
      "processes": {pid: cmdlines.get(pid, "")[:160] for pid in sorted(peaks)},
  }


def main(argv):
  del argv
  images = os.path.join(_WORKDIR.value, "images")
  if not os.path.isdir(images) or len(os.listdir(images)) != _COUNT.value:
    shutil.rmtree(images, ignore_errors=True)
    make_images(images, _COUNT.value, _SIZE.value)
  with open("/proc/cpuinfo", encoding="ascii") as f:
    cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  results = {"cpu": cpu, "cores": os.cpu_count(), "load_before": os.getloadavg(),
             "model": _MODEL.value, "count": _COUNT.value, "size": _SIZE.value, "rows": {}}
  for row in _ROWS.value:
    module, row_flags = ROWS[row]
    results["rows"][row] = run_row(module, row_flags, images,
                                   os.path.join(_WORKDIR.value, f"out_{row}"))
    print(row, json.dumps(results["rows"][row]), flush=True)
  results["load_after"] = os.getloadavg()
  reference = os.path.join(_WORKDIR.value, "out_upscale")
  if os.path.isdir(reference):  # Every row's files against esrgan-upscale's.
    for row in results["rows"]:
      out = os.path.join(_WORKDIR.value, f"out_{row}")
      results["rows"][row]["identical_to_upscale"] = all(
          open(os.path.join(out, n), "rb").read() == open(os.path.join(reference, n), "rb").read()
          for n in os.listdir(reference))
  with open(os.path.join(_WORKDIR.value, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=1)
  print(f"\n{cpu}, {os.cpu_count()} cores, load {results['load_before']} → "
        f"{results['load_after']}; {_COUNT.value} images {_SIZE.value}², {_MODEL.value}\n")
  print("| row | wall s | images/s | steady images/s | model loads | peak RSS MiB |")
  print("|---|---|---|---|---|---|")
  for row, r in results["rows"].items():
    rss = ", ".join(f"{k.split(':')[0]} {v}" for k, v in r["peak_rss_mib"].items())
    print(f"| {row} | {r['wall_s']} | {r['images_per_s']} | {r['steady_images_per_s']} | "
          f"{r['model_loads_logged']} | {rss} |")


if __name__ == "__main__":
  app.run(main)
