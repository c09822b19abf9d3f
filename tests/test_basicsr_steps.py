"""Tests for the BasicSR side-by-side plumbing of the train benchmark: the torch-free parts of
esrgan_tf.benchmarking.basicsr_steps (job validation, BasicSR's option dict, statistics, its JSON
protocol's error path), `jobs.run_basicsr_job`'s errors, and the row/ratio/"not installed" logic
of `sections`. Timing BasicSR itself needs torch + basicsr (scripts/benchmark.py does that)."""

import os
import subprocess
import sys

import pytest

from esrgan_tf.benchmarking import basicsr_steps, jobs, sections
from esrgan_tf.benchmarking import side_by_side as sbs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = {"phase": "gan", "batch_size": 4, "gt_size": 128, "threads": 2, "steps": 3, "warmup": 1}


def test_module_imports_neither_tensorflow_nor_torch():
  # The BasicSR interpreter has no TensorFlow: importing the module must not pull it (nor torch,
  # which is imported only when a job runs).
  code = ("import sys, esrgan_tf.benchmarking.basicsr_steps; "
          "print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONPATH": ROOT}).stdout
  assert out.strip() == "[]"


def test_parse_job_fills_defaults_and_converts():
  job = basicsr_steps.parse_job({**JOB, "batch_size": "16", "threads": 2.0})
  assert job == {**JOB, "batch_size": 16, "threads": 2, "num_block": 23, "ema_decay": 0.999,
                 "seed": 0}


@pytest.mark.parametrize("change, message", [
    ({"phase": "srgan"}, "phase must be 'psnr' or 'gan'"),
    ({"steps": 0}, "steps must be ≥ 1"),
    ({"gt_size": 130}, "not a multiple of the x4"),
    ({"gt_size": 64}, r"VGGStyleDiscriminator takes \(128, 256\)"),
    ({"batch": 4}, r"unknown keys \['batch'\]"),
])
def test_parse_job_rejects_bad_jobs(change, message):
  with pytest.raises(ValueError, match=message):
    basicsr_steps.parse_job({**JOB, **change})


def test_parse_job_names_missing_keys_and_allows_small_psnr_crops():
  with pytest.raises(ValueError, match=r"missing keys \['threads', 'warmup'\]"):
    basicsr_steps.parse_job({k: v for k, v in JOB.items() if k not in ("threads", "warmup")})
  assert basicsr_steps.parse_job({**JOB, "phase": "psnr", "gt_size": 32})["gt_size"] == 32


def test_make_opt_matches_basicsr_ymls():
  # Values of BasicSR's options/train/ESRGAN/train_ESRGAN_x4.yml, on CPU (num_gpu 0).
  gan = basicsr_steps.make_opt(basicsr_steps.parse_job(JOB))
  assert gan["model_type"] == "ESRGANModel" and gan["num_gpu"] == 0 and gan["is_train"]
  assert gan["network_g"] == {"type": "RRDBNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64,
                              "num_block": 23, "num_grow_ch": 32, "scale": 4}
  assert gan["network_d"] == {"type": "VGGStyleDiscriminator", "num_in_ch": 3, "num_feat": 64,
                              "input_size": 128}
  train = gan["train"]
  assert train["pixel_opt"]["loss_weight"] == 1e-2
  assert train["perceptual_opt"]["layer_weights"] == {"conv5_4": 1}
  assert train["perceptual_opt"]["use_input_norm"] is True
  assert (train["gan_opt"]["gan_type"], train["gan_opt"]["loss_weight"]) == ("vanilla", 5e-3)
  assert train["optim_g"]["lr"] == train["optim_d"]["lr"] == 1e-4
  assert train["optim_g"]["betas"] == [0.9, 0.99] and train["ema_decay"] == 0.999
  # train_RRDBNet_PSNR_x4.yml: SRModel, L1 weight 1, lr 2e-4, no discriminator or VGG.
  psnr = basicsr_steps.make_opt(basicsr_steps.parse_job({**JOB, "phase": "psnr",
                                                         "num_block": 1}))
  assert psnr["model_type"] == "SRModel" and "network_d" not in psnr
  assert psnr["network_g"]["num_block"] == 1
  assert psnr["train"]["pixel_opt"]["loss_weight"] == 1.0 and psnr["train"]["optim_g"]["lr"] == 2e-4
  assert "perceptual_opt" not in psnr["train"] and "gan_opt" not in psnr["train"]


def test_summarize_takes_the_median_of_separate_steps():
  out = basicsr_steps.summarize([3.0, 1.0, 2.5, 2.0], startup_s=20.0, build_s=5.0)
  assert out["step_time_s"] == 2.25 and out["min_step_s"] == 1.0
  assert out["step_times_s"] == [3.0, 1.0, 2.5, 2.0] and out["startup_s"] == 20.0
  with pytest.raises(ValueError, match="no timed step"):
    basicsr_steps.summarize([], 1.0, 1.0)


def test_run_basicsr_job_errors():
  with pytest.raises(jobs.JobError, match="cannot run"):
    jobs.run_basicsr_job("/nonexistent/python", JOB)
  # The real module in a child: a bad job fails before torch is imported, with the reason.
  with pytest.raises(jobs.JobError, match="phase must be") as info:
    jobs.run_basicsr_job(sys.executable, {**JOB, "phase": "x"}, timeout=60)
  assert info.value.summary.startswith("ValueError: basicsr_steps job: phase")


def _ours(step, rss, startup):
  return {"step_time_s": step, "max_rss_mb": rss, "startup_s": startup, "build_s": 5.0,
          "load": "2.0/2.0/2.0 → 2.1/2.0/2.0"}


def _theirs(step, rss, startup):
  return {**_ours(step, rss, startup), "import_s": 3.0, "phase": "psnr", "threads": 2,
          "steps": 3, "warmup": 1, "torch": "2.13.0+cpu", "basicsr": "1.4.2"}


def test_basicsr_rows_ratio_rss_and_startup():
  rows = sbs.basicsr_rows("psnr float32, batch 4, 128² HR",
                               [_ours(2.0, 3000.0, 70.0), _ours(2.4, 3100.0, 80.0)],
                               [_theirs(2.5, 2200.0, 20.0), _theirs(2.7, 2100.0, 24.0)])
  by = {r["metric"].split(" psnr")[0]: r for r in rows}
  assert by["BasicSR step"]["value"] == pytest.approx(2.6)
  # Median of the round medians on each side: 2.2 / 2.6.
  ratio = by["train step ours/BasicSR"]
  assert ratio["value"] == pytest.approx(2.2 / 2.6) and ratio["goal"] == "≤ 0.8× BasicSR"
  assert by["train peak RSS ours"]["value"] == 3100.0
  assert by["train peak RSS ours"]["goal"] == "≤ BasicSR"
  assert "BasicSR 2200 MB (1.41×)" in by["train peak RSS ours"]["note"]
  assert by["train peak RSS BasicSR"]["value"] == 2200.0
  startup = by["train start-up ours"]
  assert startup["value"] == 75.0 and startup["goal"] == "≤ 30 s"
  assert by["train start-up BasicSR"]["value"] == 22.0
  note = by["BasicSR step"]["note"]
  assert "SRModel" in note and "torch 2.13.0+cpu" in note
  assert "CPU time" not in ratio["note"]  # Only when every run measured it.
  cpu = sbs.basicsr_rows("x", [{**_ours(2.0, 1.0, 1.0), "step_cpu_s": 3.0}],
                         [{**_theirs(2.0, 1.0, 1.0), "step_cpu_s": 4.0}])[1]
  assert "CPU time per step ours 3.00 s vs BasicSR 4.00 s (0.75×)" in cpu["note"]
  with pytest.raises(ValueError, match="at least one run of each side"):
    sbs.basicsr_rows("x", [_ours(1.0, 1.0, 1.0)], [])


def test_resolve_basicsr_python_and_the_not_installed_row():
  assert sbs.resolve_basicsr_python(False, None, {"BASICSR_PYTHON": "/v/bin/python"}) == (
      "/v/bin/python", [])
  python, rows = sbs.resolve_basicsr_python(False, None, {})
  assert python == "" and rows[0]["value"] == "skipped"
  assert rows[0]["note"] == "BasicSR not installed (pip install -e .[benchmark])"
  # --quick ignores the environment; an explicit flag wins everywhere ("" = none).
  python, rows = sbs.resolve_basicsr_python(True, None, {"BASICSR_PYTHON": "/v/bin/python"})
  assert python == "" and "give --basicsr_python" in rows[0]["note"]
  assert sbs.resolve_basicsr_python(True, "/w/python", {}) == ("/w/python", [])
  assert sbs.resolve_basicsr_python(False, "", {"BASICSR_PYTHON": "/v"})[0] == ""


def test_train_plan_compares_full_nets_at_basicsr_sizes():
  full = sections._train_plan(quick=False)
  compared = [(p, prec, b, gt) for p, prec, _, _, b, gt, compare in full if compare]
  assert compared == [("psnr", "float32", 4, 128), ("gan", "float32", 4, 128),
                      ("psnr", "float32", 16, 128), ("gan", "float32", 16, 128)]
  # mixed_bfloat16 at the compared size, for the bf16 speed-up goal.
  assert ("gan", "mixed_bfloat16", False, "nearest", 4, 128, False) in full
  assert not any(entry[-1] for entry in sections._train_plan(quick=True))
  quick = [e for e in sections._train_plan(quick=True, compare_quick=True) if e[-1]]
  assert {e[5] for e in quick} <= set(basicsr_steps.DISCRIMINATOR_SIZES)
