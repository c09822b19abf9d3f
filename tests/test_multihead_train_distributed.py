"""Multi-head training under tf.distribute and across a restart, in fresh subprocesses (the
pattern of test_train_distributed: logical CPU devices and op determinism are per process)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r'''
import json, os, sys
mode, out, repo = sys.argv[1], sys.argv[2], sys.argv[3]
import tensorflow as tf
if mode == "mirrored":
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.config.experimental.enable_op_determinism()
import numpy as np
from esrgan_tf.train import configs
from esrgan_tf.train import loop as train_loop

GLOBAL_BATCH = 4


def config(phase, steps):
  # Heads x2 (weight 0.5, its trunk gradient halved) and x4 on 4² LR / 16² HR crops.
  name = "esrgan_x4" if phase == "gan" else "psnr_x4"
  c = configs.load_config_module(os.path.join(repo, "configs", name + ".py")).get_config("smoke")
  model = dict(c.model)
  model.pop("scale")
  c.model = dict(model, arch="multihead_rrdbnet", num_features=8, num_blocks=1,
                 growth_channels=4, heads=[{"name": "x2", "scale": 2}, {"name": "x4", "scale": 4}])
  c.head_losses = {"x2": dict(weight=0.5, trunk_gradient=0.5)}
  c.data.update(gt_size=16, batch_size=GLOBAL_BATCH)
  c.discriminator.update(num_features=4)
  c.perceptual.update(weight=0.0, weights="")
  c.train.update(steps=steps, steps_per_loop=1, log_every=1, eval_every=0, checkpoint_every=1,
                 progress=False, strategy="default")
  return c


def dataset_fn(ctx):
  rng = np.random.default_rng(0)
  hr = rng.uniform(size=(64, 16, 16, 3)).astype(np.float32)
  lr = hr.reshape(64, 4, 4, 4, 4, 3).mean(axis=(2, 4))
  ds = tf.data.Dataset.from_tensor_slices((lr, hr)).shuffle(64, seed=1).repeat()
  ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
  return ds.batch(ctx.get_per_replica_batch_size(GLOBAL_BATCH), drop_remainder=True)


def weights(result):
  models = result["models"]
  return [w.tolist() for w in models.generator.get_weights() + models.ema_generator.get_weights()]


result = {}
if mode == "resume":
  for phase in ("psnr", "gan"):
    full = train_loop.train_and_evaluate(config(phase, 4), os.path.join(out, phase + "_full"),
                                         dataset_fn=dataset_fn)
    part_dir = os.path.join(out, phase + "_part")
    train_loop.train_and_evaluate(config(phase, 2), part_dir, dataset_fn=dataset_fn)
    resumed = train_loop.train_and_evaluate(config(phase, 4), part_dir, dataset_fn=dataset_fn)
    result[phase] = {"full": full["history"], "resumed": resumed["history"],
                     "full_w": weights(full), "resumed_w": weights(resumed)}
else:
  mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  for phase in ("psnr", "gan"):
    c = config(phase, 3)
    two = train_loop.train_and_evaluate(c, os.path.join(out, phase + "_two"),
                                        dataset_fn=dataset_fn, strategy=mirrored)
    result[phase] = {"two": weights(two), "two_hist": two["history"],
                     "two_name": two["run_name"]}
    if phase == "psnr":
      one = train_loop.train_and_evaluate(c, os.path.join(out, phase + "_one"),
                                          dataset_fn=dataset_fn)
      result[phase].update(one=weights(one), one_hist=one["history"])
with open(os.path.join(out, "result.json"), "w") as f:
  json.dump(result, f)
'''


def _run(tmp_path, mode):
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  env.pop("TF_CONFIG", None)
  proc = subprocess.run([sys.executable, str(script), mode, str(tmp_path), REPO], env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads((tmp_path / "result.json").read_text())


@pytest.mark.slow
def test_two_replicas_equal_one_replica_with_the_same_global_batch(tmp_path):
  result = _run(tmp_path, "mirrored")
  psnr = result["psnr"]
  assert psnr["two_name"] == "psnr_x2x4_nf8nb1gc4_gt16_b2x2_3"
  for key in ("g_loss", "x2/l_pix", "x4/l_pix"):
    np.testing.assert_allclose(psnr["two_hist"][key], psnr["one_hist"][key], rtol=1e-5,
                               err_msg=key)
  for a, b in zip(psnr["two"], psnr["one"]):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
  # The gan phase (a discriminator per head) trains on two replicas; as for one head it is not
  # expected to match one replica exactly (per-replica RaGAN means and batch norm).
  gan = result["gan"]
  for key in ("d_loss", "x2/d_loss", "x4/d_loss", "g_loss"):
    assert all(np.isfinite(gan["two_hist"][key])), key
  np.testing.assert_allclose(gan["two_hist"]["x4/l_pix"][0],
                             1e-2 * psnr["one_hist"]["x4/l_pix"][0], rtol=1e-5)


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(tmp_path):
  result = _run(tmp_path, "resume")
  for phase in ("psnr", "gan"):
    full, resumed = result[phase]["full"], result[phase]["resumed"]
    assert full["step"] == [1, 2, 3, 4] and resumed["step"] == [3, 4]
    assert "x2/g_loss" in full and (phase == "psnr" or "x2/d_loss" in full)
    for key in full:
      if key != "step":
        np.testing.assert_allclose(resumed[key], full[key][2:], rtol=1e-6, atol=0,
                                   err_msg=f"{phase} {key}")
    assert full["g_loss"][2] != full["g_loss"][0]
    for a, b in zip(result[phase]["resumed_w"], result[phase]["full_w"]):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
