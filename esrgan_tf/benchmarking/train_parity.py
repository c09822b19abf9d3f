r"""Our side of scripts/check_basicsr_parity.py's step comparison: a few training steps of a
shipped config, from given initial weights, on a fixed batch; losses per step and weights after.

Run by the TF interpreter (the torch side of the script runs BasicSR and starts this):

  python -m esrgan_tf.benchmarking.train_parity JOB.json

JOB.json: {"config": "configs/esrgan_x4.py" (path), "model": {RRDBNet kwargs to override},
"discriminator_features": int or null, "gt_size": int, "g": BasicSR-layout generator .pth,
"d": netD .pth or null, "vgg": torchvision VGG19 .pth or null, "batch": .npz with "lq", "gt"
(and "gt_usm") float32 NHWC, "steps": [1, 5] (after which steps to save the weights), "out":
.npz to write, optional "overrides": {"section.key": value} set in the config}.

The written .npz holds "loss/<name>" [steps] (the step's reported values: l_pix, l_percep,
l_g_gan, d_loss, d_real, d_fake) and "<k>/g/<name>", "<k>/ema/<name>", "<k>/d/<name>" after step
k, all in BasicSR's names and torch layouts (`weights.layouts.model_state`,
`weights.discriminator.discriminator_state`). Everything else of the step (loss weights, GAN
form, Adam's ε form, EMA decay, learning rates) is the config's: this checks the configs too.
"""

from __future__ import annotations

import json
import sys

import numpy as np

_MODULE = "esrgan_tf.benchmarking.train_parity"


def make_config(job: dict):
  """The shipped config of `job`, shrunk to the job's networks and batch, on one device."""
  from esrgan_tf.train import configs  # pylint: disable=g-import-not-at-top
  c = configs.load_config_module(job["config"]).get_config()
  c.model.update(**job.get("model", {}))
  lq = np.load(job["batch"])["lq"]
  c.data.update(gt_size=int(job["gt_size"]), batch_size=int(lq.shape[0]))
  if job.get("discriminator_features"):
    c.discriminator.num_features = int(job["discriminator_features"])
  if c.phase == "gan":
    c.perceptual.weights = job["vgg"]
  c.train.update(strategy="default", steps=max(job["steps"]), steps_per_loop=1, eval_every=0,
                 progress=False, init_from=job["g"],
                 init_discriminator_from=job.get("d") or "")
  for key, value in job.get("overrides", {}).items():  # "loss.ragan_form": "paper"
    section, name = key.split(".", 1)
    c[section][name] = value
  if "degradation" in c.data:  # Real-ESRGAN: the degradation pipeline is bypassed (fixed batch).
    c.data.degradation.gt_size = int(job["gt_size"])
  return c


def _weights(state) -> dict:
  from esrgan_tf.weights import discriminator, layouts  # pylint: disable=g-import-not-at-top
  out = {f"g/{k}": v for k, v in layouts.model_state(state.models.generator).items()}
  out.update({f"ema/{k}": v for k, v in layouts.model_state(state.models.ema_generator).items()})
  if state.models.discriminator is not None:
    out.update({f"d/{k}": v for k, v in
                discriminator.discriminator_state(state.models.discriminator).items()})
  return out


def run(job: dict) -> dict:
  """Runs the job's steps; returns the arrays `main` writes (see the module docstring)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from esrgan_tf.train import loop as train_loop  # pylint: disable=g-import-not-at-top
  from esrgan_tf.train import state as train_state  # pylint: disable=g-import-not-at-top
  from esrgan_tf.train import steps as train_steps  # pylint: disable=g-import-not-at-top
  config = make_config(job)
  train_loop.validate_config(config)
  strategy = tf.distribute.get_strategy()
  with strategy.scope():
    state = train_state.create_train_state(config)
  batch = np.load(job["batch"])
  element = {k: tf.constant(batch[k]) for k in ("lq", "gt", "gt_usm") if k in batch}
  if "gt_usm" in element:
    element = {"lr": element["lq"], "hr": element["gt"], "gt_usm": element["gt_usm"]}
  else:
    element = (element["lq"], element["gt"])
  iterator = iter(tf.data.Dataset.from_tensors(element).repeat())
  train_loop.restore_or_initialize(config, "", state, _NoCheckpoints())
  step_fn = train_steps.make_train_step(config, strategy, state, int(config.data.batch_size))
  out, losses = {}, {}
  for step in range(1, max(job["steps"]) + 1):
    metrics = step_fn(iterator, tf.constant(1, tf.int32))
    for name, value in metrics.items():
      if name != "first_bad":
        losses.setdefault(name, []).append(float(value.numpy()))
    if step in job["steps"]:
      out.update({f"{step}/{k}": v for k, v in _weights(state).items()})
  out.update({f"loss/{k}": np.asarray(v) for k, v in losses.items()})
  return out


class _NoCheckpoints:
  """What `train.restore_or_initialize` needs of `train.Checkpoints` for a fresh start."""

  class manager:  # pylint: disable=invalid-name
    latest_checkpoint = None


def main(argv: list) -> None:
  if len(argv) != 2:
    raise SystemExit(f"usage: python -m {_MODULE} JOB.json")
  with open(argv[1], encoding="utf-8") as f:
    job = json.load(f)
  np.savez(job["out"], **run(job))


if __name__ == "__main__":
  main(sys.argv)
