r"""One command for the performance figures: JSON + a markdown table.

  python scripts/benchmark.py [--sections=inference,...] [--quick] [--out=benchmark.json]
  BASICSR_PYTHON=/path/to/venv/bin/python python scripts/benchmark.py --sections=train

Writes --out (JSON: machine, settings, rows per section) and a markdown table beside it
(benchmark.md), and prints the table. Not a test: nothing here asserts; goals are shown next to
the numbers. Run it with the package importable (installed, or PYTHONPATH=<checkout>).

The sections live in `esrgan_tf.benchmarking.sections.SECTIONS` (name → function(quick) → rows);
every timed job runs in a fresh Python process (`esrgan_tf.benchmarking.jobs.run_job`). This
script keeps the flags, the machine header and the markdown writer.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import time

from absl import app, flags

from esrgan_tf.benchmarking import plot, sections
from esrgan_tf.core import cpu, fileio

_SECTIONS = flags.DEFINE_list("sections", None, "Sections to run (default: all).")
_QUICK = flags.DEFINE_bool("quick", False, "Smaller inputs: a few minutes in total.")
_OUT = flags.DEFINE_string("out", "benchmark.json", "JSON output; the .md goes beside it.")
_NOTE = flags.DEFINE_string("note", "", "A line for the report header (e.g. machine load).")
_BASICSR_PYTHON = flags.DEFINE_string(
    "basicsr_python", None,
    "train section: an interpreter with torch + basicsr 1.4.2 (the `benchmark` extra) that times "
    "BasicSR's own steps side by side. Default: $BASICSR_PYTHON in full runs (empty: skipped); "
    "given with --quick, also compares the one-block nets.")
_TRAIN_ROUNDS = flags.DEFINE_integer(
    "train_rounds", None, "train section: ours/BasicSR alternations per side-by-side setting "
    "(default 2, --quick 1).")


def machine_info() -> dict:
  """CPU model, core count, SIMD flags relevant to TF/oneDNN, library versions, load."""
  info_cpu = cpu.read_cpuinfo()
  info = {"cpu": info_cpu.model, "cores": os.cpu_count(), "cpu_flags": info_cpu.simd_flags,
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


def markdown(results: dict) -> str:
  """The markdown report: machine line and one table of all rows."""
  m = results["machine"]
  lines = [f"Machine: {m.get('cpu')}, {m.get('cores')} cores, flags "
           f"{' '.join(m.get('cpu_flags', []))}; TensorFlow {m.get('tensorflow', '?')}; "
           f"{'quick' if results['quick'] else 'full'} run, {results['date']}, load average "
           f"{m.get('load_average_at_start', ['?'])[0]} at start (timings scale with it).", ""]
  if results.get("note"):
    lines += [results["note"], ""]
  lines += ["| section | metric | value | goal | notes |", "|---|---|---|---|---|"]
  for section, rows in results["sections"].items():
    for row in rows:
      value = row["value"]
      text = f"{value:.4g}" if isinstance(value, float) else str(value)
      lines.append(f"| {section} | {row['metric']} | {text} {row.get('unit', '')} | "
                   f"{row.get('goal', '')} | {row.get('note', '')} |")
  return "\n".join(lines) + "\n"


def latency_rows(results: dict) -> list[dict]:
  """The inference section's latency rows as {"engine", "size", "ms"} for the SVG plot."""
  rows = []
  for row in results["sections"].get("inference", []):
    match = re.fullmatch(r"latency (\S+) (\S+) (\d+)²", row["metric"])
    if match and row.get("unit") == "ms" and row["value"] > 0:
      engine, variant, size = match.groups()
      rows.append({"engine": f"{engine} ({variant})", "size": int(size), "ms": row["value"]})
  return rows


def _write(results: dict) -> str:
  """Writes --out (JSON), the markdown and the latency plot (.svg) beside it, atomically."""
  stem = os.path.splitext(_OUT.value)[0]
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  fileio.write_bytes(_OUT.value, json.dumps(results, indent=2), overwrite=True)
  table = markdown(results)
  fileio.write_bytes(stem + ".md", table, overwrite=True)
  rows = latency_rows(results)
  if rows:
    cpu_name = results["machine"].get("cpu")
    svg = plot.latency_plot_svg(
        rows, title=f"Latency vs input size ({cpu_name}, {results['date'][:10]})")
    fileio.write_bytes(stem + ".svg", svg, overwrite=True)
  return table


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  names = _SECTIONS.value or list(sections.SECTIONS)
  unknown = [n for n in names if n not in sections.SECTIONS]
  if unknown:
    raise app.UsageError(f"unknown sections {unknown}; known: {sorted(sections.SECTIONS)}")
  results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "quick": _QUICK.value, "note": _NOTE.value, "machine": machine_info(),
             "sections": {}, "seconds": {}}
  for name in names:
    start = time.perf_counter()
    options = ({"basicsr_python": _BASICSR_PYTHON.value, "rounds": _TRAIN_ROUNDS.value}
               if name == "train" else {})
    results["sections"][name] = sections.SECTIONS[name](_QUICK.value, **options)
    results["seconds"][name] = round(time.perf_counter() - start, 1)
    _write(results)  # After every section: an interrupted long run keeps what it measured.
  results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
  print(_write(results))


if __name__ == "__main__":
  app.run(main)
