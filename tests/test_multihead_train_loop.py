"""Multi-head runs through train.loop: the configs' :smoke variants train, resume, log per head
to TensorBoard, evaluate each head at its own scale, and leave a workdir every loader takes."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf.data import datasets
from esrgan_tf.evaluation import metrics
from esrgan_tf.inference import engine, resolver
from esrgan_tf.models import MultiHeadRRDBNet
from esrgan_tf.models import workdir as workdir_lib
from esrgan_tf.train import configs
from esrgan_tf.train import loop as train_loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smoke(name, variant="smoke", **train):
  c = configs.load_config_module(os.path.join(REPO, "configs", f"{name}.py")).get_config(variant)
  c.train.update(progress=False, **train)
  return c


def _scalars(workdir):
  found = {}
  for path in glob.glob(os.path.join(workdir, "tensorboard", "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars":
          found[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
  return found


def test_x2x4x8_smoke_trains_evaluates_each_head_and_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  c = _smoke("multihead_x2x4x8")
  out = train_loop.train_and_evaluate(c, workdir)
  assert out["run_name"] == "psnr_x2x4x8_nf8nb1gc4_gt64_b4x1_4"
  assert out["history"]["step"] == [2, 4]
  for head in ("x2", "x4", "x8"):
    assert all(v > 0 for v in out["history"][f"{head}/l_pix"])
  np.testing.assert_allclose(
      out["history"]["g_loss"],
      np.sum([out["history"][f"{h}/g_loss"] for h in ("x2", "x4", "x8")], axis=0), rtol=1e-5)

  # Each head evaluated as a single model of its scale: its own trunk + head as an RRDBNet,
  # on LR = bicubic ×1/s of the validation photos, Y channel, crop = s.
  ema = out["models"].ema_generator
  (ev,) = out["eval"]
  for head, scale in (("x2", 2), ("x4", 4), ("x8", 8)):
    pairs = datasets.load_validation_set(c.data, scale)
    want = metrics.evaluate(engine.keras_engine(ema.to_rrdbnet(head)), pairs,
                            crop_border=scale, y_channel=True)
    assert ev[f"{head}/psnr"] == pytest.approx(want["mean"]["psnr"], abs=1e-6)
  assert (ev["psnr"], ev["ssim"]) == (ev["x4/psnr"], ev["x4/ssim"])  # The default head's.
  assert out["best_psnr"] == pytest.approx(ev["x4/psnr"])

  scalars = _scalars(workdir)
  for head in ("x2", "x4", "x8"):
    assert scalars[(f"train/{head}/l_pix", 4)] == pytest.approx(
        out["history"][f"{head}/l_pix"][-1], rel=1e-6)
    assert scalars[(f"eval/{head}/psnr", 4)] == pytest.approx(ev[f"{head}/psnr"], rel=1e-6)

  # The workdir loads as the multi-head EMA generator.
  loaded = workdir_lib.load_generator_from_workdir(workdir)
  assert isinstance(loaded, MultiHeadRRDBNet) and loaded.head_names == ("x2", "x4", "x8")
  for a, b in zip(loaded.get_weights(), ema.get_weights()):
    np.testing.assert_array_equal(a, b)
  x2 = resolver.load_generator(resolver.ModelSpec(model=workdir, head="x2"))
  x = tf.random.stateless_uniform([1, 6, 5, 3], (3, 4))
  np.testing.assert_array_equal(x2(x).numpy(), ema.head_fn("x2")(x).numpy())

  # Re-running with more steps resumes from step 4 (EMA, optimizer and step restored).
  c.train.steps = 6
  again = train_loop.train_and_evaluate(c, workdir)
  assert again["history"]["step"] == [6] and again["final_step"] == 6
  assert again["eval"][0]["step"] == 6


def test_psnr_gan_smoke_has_one_discriminator_for_the_gan_head_and_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  c = _smoke("multihead_psnr_gan_x4")
  out = train_loop.train_and_evaluate(c, workdir)
  models = out["models"]
  assert set(models.discriminators) == {"gan"} and models.discriminator is None
  hist = out["history"]
  assert "psnr/l_pix" in hist and "gan/l_g_gan" in hist and "gan/d_loss" in hist
  assert not any(k.startswith("psnr/") and k != "psnr/l_pix" and k != "psnr/g_loss"
                 for k in hist)
  np.testing.assert_allclose(hist["d_loss"], hist["gan/d_loss"], rtol=1e-7)
  saved = {name.split("/")[0] for name, _ in tf.train.list_variables(
      tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")))}
  assert {"discriminator_gan", "d_optimizer", "generator", "ema_generator"} <= saved
  assert not any(name.startswith("discriminator_psnr") for name in saved)

  c.train.steps = 6
  again = train_loop.train_and_evaluate(c, workdir)
  assert again["history"]["step"] == [6]
  assert [sorted(e) for e in again["eval"]] == [sorted(out["eval"][0])]


def test_resume_restores_the_per_head_discriminators(tmp_path):
  workdir = str(tmp_path / "run")
  c = _smoke("multihead_x2x4x8", "gan_smoke", steps=2, eval_every=0)
  first = train_loop.train_and_evaluate(c, workdir)
  weights = {h: [w.copy() for w in d.get_weights()]
             for h, d in first["models"].discriminators.items()}
  assert set(weights) == {"x2", "x4", "x8"}
  c.train.steps = 2  # Nothing left to train: the restored state is what the run holds.
  second = train_loop.train_and_evaluate(c, workdir)
  assert second["final_step"] == 2 and second["history"]["step"] == []
  for head, d in second["models"].discriminators.items():
    for a, b in zip(weights[head], d.get_weights()):
      np.testing.assert_array_equal(a, b)


def test_cli_trains_the_psnr_gan_smoke_config_alone(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(
      [sys.executable, "-m", "esrgan_tf.cli.train",
       "--config=configs/multihead_psnr_gan_x4.py:smoke", f"--workdir={tmp_path / 'w'}",
       "--config.train.progress=False", "--config.head_losses.gan.trunk_gradient=0"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "gan_x4x4_nf8nb1gc4_gt32_b4x1_4 done at step 4; eval PSNR" in proc.stdout
  assert "; heads psnr " in proc.stdout and ", gan " in proc.stdout
  saved = workdir_lib.read_config(str(tmp_path / "w"))
  assert saved["head_losses"]["gan"]["trunk_gradient"] == 0
