"""Side-by-side rows of the train section: our step vs BasicSR 1.4.2's on the same CPU.

The BasicSR side runs in another interpreter (`jobs.run_basicsr_job` → `basicsr_steps`); this
module turns both sides' results into report rows with the performance goals, and picks
the interpreter (--basicsr_python, $BASICSR_PYTHON, or none with a row that says so).
"""

from __future__ import annotations

import os
import statistics
from typing import Mapping, Optional

from esrgan_tf.benchmarking.measure import row

# Performance goals (training side): vs BasicSR 1.4.2 on the same CPU, in one run.
BASICSR_STEP_GOAL = "≤ 0.8× BasicSR"
BASICSR_RSS_GOAL = "≤ BasicSR"
STARTUP_GOAL = "≤ 30 s"
BF16_TRAIN_GOAL = "≥ 1.5× (native bf16)"
BASICSR_MISSING = "BasicSR not installed (pip install -e .[benchmark])"


def load_text() -> str:
  """The 1/5/15-minute load averages as "a/b/c"."""
  return "/".join(f"{v:.1f}" for v in os.getloadavg())


def spread(values: list) -> str:
  """Values as "1.00 / 2.00"."""
  return " / ".join(f"{v:.2f}" for v in values)


def basicsr_rows(what: str, ours: list[dict], theirs: list[dict]) -> list[dict]:
  """Side-by-side rows of one setting from alternating runs (ours, BasicSR, ours, BasicSR, ...).

  Args:
    what: The setting, e.g. "psnr float32, batch 4, 128² HR".
    ours: `training.step_time` results (+ "max_rss_mb", "load"), one per round.
    theirs: `basicsr_steps.run` results (+ "load"), one per round.

  Returns:
    Rows: BasicSR's step time, the ratio ours/BasicSR (median over rounds of each side's median
    step), peak RSS of both sides (the largest over rounds) and start-up of both sides (median
    over rounds), each with its performance goal.

  Raises:
    ValueError: Either side has no run.
  """
  if not ours or not theirs:
    raise ValueError(f"{what}: need at least one run of each side, got {len(ours)} and "
                     f"{len(theirs)}")
  ours_step = statistics.median(r["step_time_s"] for r in ours)
  their_step = statistics.median(r["step_time_s"] for r in theirs)
  ours_rss, their_rss = max(r["max_rss_mb"] for r in ours), max(r["max_rss_mb"] for r in theirs)
  ours_up = statistics.median(r["startup_s"] for r in ours)
  their_up = statistics.median(r["startup_s"] for r in theirs)
  first = theirs[0]
  model = "SRModel" if first["phase"] == "psnr" else "ESRGANModel"
  where = (f"BasicSR {first.get('basicsr', '?')} {model}.optimize_parameters, torch "
           f"{first.get('torch', '?')}, {first['threads']} threads")
  rounds = f"{len(ours)} round(s) ours/BasicSR alternating"
  if all("step_cpu_s" in r for r in ours + theirs):
    # Process CPU time per step (all threads): other load on the machine inflates wall time far
    # more than CPU time (though OpenMP spin-waits count as CPU time).
    ours_cpu = statistics.median(r["step_cpu_s"] for r in ours)
    their_cpu = statistics.median(r["step_cpu_s"] for r in theirs)
    rounds += (f"; CPU time per step ours {ours_cpu:.2f} s vs BasicSR {their_cpu:.2f} s "
               f"({ours_cpu / their_cpu:.2f}×)")
  return [
      row(f"BasicSR step {what}", their_step, "s/step", "",
           f"{where}; medians per round {spread([r['step_time_s'] for r in theirs])} (each of "
           f"{first['steps']} separately timed steps after {first['warmup']} warm-up); load "
           f"{'; '.join(r.get('load', '?') for r in theirs)}"),
      row(f"train step ours/BasicSR {what}", ours_step / their_step, "×", BASICSR_STEP_GOAL,
           f"ours {ours_step:.2f} s vs BasicSR {their_step:.2f} s (medians; {rounds}); ours per "
           f"round {spread([r['step_time_s'] for r in ours])}"),
      row(f"train peak RSS ours {what}", ours_rss, "MB", BASICSR_RSS_GOAL,
           f"BasicSR {their_rss:.0f} MB ({ours_rss / their_rss:.2f}×); VmHWM / ru_maxrss of each "
           "child, largest over rounds"),
      row(f"train peak RSS BasicSR {what}", their_rss, "MB", "", where),
      row(f"train start-up ours {what}", ours_up, "s", STARTUP_GOAL,
           f"model build + first step (tracing), median over rounds; build alone "
           f"{statistics.median(r['build_s'] for r in ours):.1f} s; BasicSR {their_up:.1f} s"),
      row(f"train start-up BasicSR {what}", their_up, "s", STARTUP_GOAL,
           f"model build (incl. loading its VGG19 file in the GAN phase) + first step; build "
           f"alone {statistics.median(r['build_s'] for r in theirs):.1f} s; torch/basicsr import "
           f"{statistics.median(r['import_s'] for r in theirs):.1f} s not included"),
  ]


def resolve_basicsr_python(quick: bool, basicsr_python: Optional[str],
                           environ: Optional[Mapping[str, str]] = None) -> tuple[str, list]:
  """The BasicSR interpreter to use ("" = none) and the rows saying why there is none.

  Args:
    quick: A --quick run reads no environment variable (BasicSR only when given explicitly).
    basicsr_python: The --basicsr_python flag (None: not given).
    environ: The environment (default os.environ); BASICSR_PYTHON is read from it.
  """
  if basicsr_python is None:
    basicsr_python = "" if quick else (os.environ if environ is None else environ).get(
        "BASICSR_PYTHON", "")
  if basicsr_python:
    return basicsr_python, []
  note = ("skipped in --quick (give --basicsr_python to compare the one-block nets)" if quick
          else BASICSR_MISSING)
  return "", [row("BasicSR side by side", "skipped", "", BASICSR_STEP_GOAL, note)]
