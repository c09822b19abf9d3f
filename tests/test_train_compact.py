"""configs/compact_x4.py:smoke trains end to end; its workdir loads as a Compact generator."""

import os

import numpy as np

from esrgan_tf.inference import resolver
from esrgan_tf.models import SRVGGNetCompact
from esrgan_tf.train import configs
from esrgan_tf.train import loop as train_loop

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "configs")


def test_compact_smoke_trains_and_workdir_loads(tmp_path):
  config = configs.load_config_module(os.path.join(CONFIGS, "compact_x4.py")).get_config(
      "smoke")
  # Shorter than the smoke run itself: 2 steps, one eval, one checkpoint.
  config.data.update(gt_size=16, batch_size=2)
  config.train.update(steps=2, steps_per_loop=2, log_every=2, eval_every=2, checkpoint_every=2,
                      progress=False, strategy="default")
  workdir = str(tmp_path / "compact")
  result = train_loop.train_and_evaluate(config, workdir)
  assert result["final_step"] == 2
  assert result["run_name"] == "psnr_x4_srvgg_nf8nc2_prelu_gt16_b2x1_2"
  assert isinstance(result["models"].generator, SRVGGNetCompact)
  assert np.isfinite(result["history"]["l_pix"][0]) and result["history"]["l_pix"][0] > 0
  assert len(result["eval"]) == 1 and np.isfinite(result["eval"][0]["psnr"])

  # --model=WORKDIR goes through resolver.load_generator: the EMA Compact net, same outputs.
  loaded = resolver.load_generator(workdir)
  ema = result["models"].ema_generator
  assert isinstance(loaded, SRVGGNetCompact) and loaded.arch_config() == ema.arch_config()
  x = np.random.default_rng(0).uniform(size=(1, 12, 10, 3)).astype(np.float32)
  np.testing.assert_allclose(loaded(x).numpy(), ema(x).numpy(), rtol=0, atol=1e-6)
  # The EMA (decay 0.9, 2 updates) moved away from the raw G: we did load the EMA copy.
  assert not np.allclose(loaded(x).numpy(), result["models"].generator(x).numpy(), atol=1e-7)

  # Resuming the finished run with the same config is accepted and trains nothing more.
  again = train_loop.train_and_evaluate(config, workdir)
  assert again["final_step"] == 2 and again["history"]["step"] == []
