"""configs/realesrnet_x4plus.py and realesrgan_x4plus.py: values, smoke training, fine-tuning D.

The smoke runs are shortened to 2 steps here (the configs' own 20 steps take ~20 s each).
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf import weights
from esrgan_tf.models import RRDBNet, UNetDiscriminatorSN, VGGFeatureExtractor
from esrgan_tf.train import configs
from esrgan_tf.train import loop as train_loop
from esrgan_tf.train import state as train_state
from esrgan_tf.train import steps as train_steps

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "configs")


def _config(name, variant="smoke"):
  return configs.load_config_module(os.path.join(CONFIGS, f"{name}.py")).get_config(variant)


def _short(c, steps=2):
  c.train.update(steps=steps, steps_per_loop=steps, log_every=steps, eval_every=steps,
                 checkpoint_every=steps, progress=False, strategy="default")
  return c


def test_paper_values_follow_the_ymls():
  # options/train_realesrnet_x4plus.yml and options/train_realesrgan_x4plus.yml.
  net = _config("realesrnet_x4plus", "")
  assert net.phase == "psnr" and net.data.pipeline == "realesrgan"
  assert (net.data.batch_size, net.data.gt_size, net.data.degradation.gt_size) == (12, 256, 256)
  assert net.data.degradation.gt_usm and net.data.degradation.queue_size == 180
  assert net.loss.l1_gt_usm and (net.optim.g_lr, net.train.ema_decay) == (2e-4, 0.999)
  assert (net.model.num_features, net.model.num_blocks, net.model.growth_channels) == (64, 23, 32)
  gan = _config("realesrgan_x4plus", "")
  assert gan.phase == "gan" and gan.discriminator.type == "unet_sn"
  assert gan.discriminator.num_features == 64 and gan.discriminator.skip_connection
  assert gan.perceptual.layers.to_dict() == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0,
                                             "conv4_4": 1.0, "conv5_4": 1.0}
  assert (gan.perceptual.weight, gan.perceptual.criterion) == (1.0, "l1")
  assert (gan.loss.gan_type, gan.loss.gan_weight, gan.loss.pixel_weight) == ("vanilla", 0.1, 1.0)
  assert (gan.loss.l1_gt_usm, gan.loss.percep_gt_usm, gan.loss.gan_gt_usm) == (True, True, False)
  assert (gan.optim.g_lr, gan.optim.d_lr, gan.train.ema_decay) == (1e-4, 1e-4, 0.999)
  assert tuple(gan.optim.milestones) == (400_000,) and gan.train.steps == 400_000
  assert train_loop.run_name(gan, 1) == "gan_x4_nf64nb23gc32_gt256_b12x1_400k"


def test_realesrnet_smoke_trains_on_degraded_pairs(tmp_path):
  config = _short(_config("realesrnet_x4plus"))
  # The dataset really is the degradation pipeline: dicts with the sharpened GT.
  ds = train_loop.make_dataset_fn(config, 4)(tf.distribute.InputContext())
  batch = next(iter(ds))
  assert set(batch) == {"lr", "hr", "gt_usm"}
  assert batch["lr"].shape == (4, 8, 8, 3) and batch["gt_usm"].shape == (4, 32, 32, 3)
  assert not np.allclose(batch["hr"].numpy(), batch["gt_usm"].numpy())
  result = train_loop.train_and_evaluate(config, str(tmp_path / "net"))
  assert result["final_step"] == 2 and result["run_name"] == "psnr_x4_nf8nb1gc4_gt32_b4x1_2"
  assert list(result["history"]) == ["step", "g_loss", "l_pix"]
  assert 0 < result["history"]["l_pix"][0] < 1 and len(result["eval"]) == 1


def test_realesrgan_smoke_trains_with_unet_d_and_vanilla_gan(tmp_path):
  config = _short(_config("realesrgan_x4plus"))
  result = train_loop.train_and_evaluate(config, str(tmp_path / "gan"))
  models = result["models"]
  assert isinstance(models.generator, RRDBNet)
  assert isinstance(models.discriminator, UNetDiscriminatorSN)
  assert models.discriminator.num_feat == 8 and models.discriminator.skip_connection
  h = result["history"]
  assert {"l_pix", "l_g_gan", "d_loss", "d_real", "d_fake"} <= set(h)
  # Vanilla GAN near D's start (logits ≈ 0): G term ≈ log 2, D term ≈ 2 log 2 (BCE at p = ½).
  assert abs(h["l_g_gan"][0] / 0.1 - math.log(2)) < 0.3
  assert abs(h["d_loss"][0] - 2 * math.log(2)) < 0.5
  assert result["final_step"] == 2 and all(np.isfinite(v[0]) for v in h.values())


def test_usm_switches_pick_the_sharpened_target():
  config = _config("realesrgan_x4plus")
  vgg = VGGFeatureExtractor({"conv1_2": 0.1, "conv2_2": 1.0}, weights=None)
  models = train_state.Models(None, None, vgg=vgg)
  config.perceptual.layers = {"conv1_2": 0.1, "conv2_2": 1.0}
  rng = np.random.default_rng(0)
  sr, hr, usm = (tf.constant(rng.uniform(size=(2, 8, 8, 3)), tf.float32) for _ in range(3))
  p = train_steps.Predictions(sr, hr, gt_usm=usm)
  for l1_usm, percep_usm in ((True, True), (False, True), (True, False), (False, False)):
    config.loss.update(l1_gt_usm=l1_usm, percep_gt_usm=percep_usm)
    terms = {t.name: t for t in train_steps.generator_loss_terms(config, models)}
    l1_target = usm if l1_usm else hr
    np.testing.assert_allclose(terms["l_pix"].fn(p).numpy(),
                               np.abs(sr.numpy() - l1_target.numpy()).mean(axis=(1, 2, 3)),
                               rtol=1e-6)
    target = vgg(usm if percep_usm else hr)
    want = sum(w * np.abs(vgg(sr)[k].numpy() - target[k].numpy()).mean(axis=(1, 2, 3))
               for k, w in (("conv1_2", 0.1), ("conv2_2", 1.0)))
    np.testing.assert_allclose(terms["l_percep"].fn(p).numpy(), want, rtol=1e-5)


def test_config_errors():
  config = _config("esrgan_x4")
  config.loss.l1_gt_usm = True
  with pytest.raises(ValueError, match=r"loss.l1_gt_usm need the USM-sharpened GT of "
                     r"data.pipeline='realesrgan'"):
    train_loop.validate_config(config)
  config = _config("realesrnet_x4plus")
  config.data.pipeline = "jpeg"
  with pytest.raises(ValueError, match=r"data.pipeline must be one of \('bicubic', "
                     r"'realesrgan'\), got 'jpeg'"):
    train_loop.validate_config(config)
  config = _config("realesrgan_x4plus")
  config.loss.gan_type = "wgan"
  with pytest.raises(ValueError, match=r"loss.gan_type must be one of \['ragan', 'vanilla'\]"):
    train_steps.gan_type(config)


def _restored_state(config, workdir):
  config.train.checkpoint_data_iterator = False
  state = train_state.create_train_state(config)
  checkpoints = train_loop.create_checkpoints(config, workdir, state, None,
                                         tf.distribute.get_strategy())
  return state, train_loop.restore_or_initialize(config, workdir, state, checkpoints)


def test_init_discriminator_from_a_basicsr_netd(tmp_path):
  # A netD written in BasicSR's layout ({"params": ...}, weight_orig/u/v), as
  # RealESRGAN_x4plus_netD.pth, at the smoke config's width.
  source = UNetDiscriminatorSN(num_feat=8, name="published_netd")
  source.build((None, 32, 32, 3))
  x = tf.constant(np.random.default_rng(1).uniform(size=(1, 32, 32, 3)), tf.float32)
  source(x, training=True)  # one power iteration: u, v differ from their initial values
  path = str(tmp_path / "netD.pth")
  weights.save_discriminator(source, path)

  config = _config("realesrgan_x4plus")
  config.train.init_discriminator_from = path
  state, message = _restored_state(config, str(tmp_path / "run"))
  assert message == f"initialised D from train.init_discriminator_from {path}"
  d = state.models.discriminator
  # conv0, conv9: kernel + bias; conv1 … conv8 (spectral norm, no bias): W, u, v.
  assert len(d.weights) == len(source.weights) == 2 * 2 + 8 * 3
  for got, want in zip(d.weights, source.weights):
    np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)
  np.testing.assert_allclose(d(x).numpy(), source(x).numpy(), rtol=0, atol=1e-6)

  # A netD of another width: refused, naming the file and the mismatch.
  other = UNetDiscriminatorSN(num_feat=4)
  other.build((None, 32, 32, 3))
  other_path = str(tmp_path / "netD_nf4.pth")
  weights.save_discriminator(other, other_path)
  config.train.init_discriminator_from = other_path
  with pytest.raises(ValueError, match=r"netD_nf4.pth.*does not match the config's "
                     r"discriminator \(discriminator.num_features=8\): conv0.bias: file \(4,\), "
                     r"config \(8,\)"):
    _restored_state(config, str(tmp_path / "run2"))

  # The psnr phase has no D to initialise.
  config = _config("realesrnet_x4plus")
  config.train.init_discriminator_from = path
  with pytest.raises(ValueError, match=r"phase 'psnr' has no discriminator"):
    _restored_state(config, str(tmp_path / "run3"))


@pytest.mark.parametrize("gan_gt_usm", [False, True])
def test_gan_gt_usm_feeds_d_the_sharpened_gt(gan_gt_usm):
  # A VGG-style D (no spectral norm: its output does not move between calls): the step's d_real
  # is the mean of D on the real batch before D's update, i.e. on gt_usm iff gan_gt_usm.
  config = _config("esrgan_x4")
  config.model.update(num_features=8, num_blocks=1, growth_channels=4)
  config.data.update(gt_size=16, batch_size=2)
  config.discriminator.update(num_features=4)
  config.perceptual.update(weight=0.0, weights="")
  config.loss.gan_type = "vanilla"
  config.loss.gan_gt_usm = gan_gt_usm
  state = train_state.create_train_state(config)
  rng = np.random.default_rng(2)
  lr = tf.constant(rng.uniform(size=(2, 4, 4, 3)), tf.float32)
  hr = tf.constant(rng.uniform(size=(2, 16, 16, 3)), tf.float32)
  usm = tf.constant(rng.uniform(size=(2, 16, 16, 3)) * 3.0 - 1.0, tf.float32)
  d = state.models.discriminator
  want = {False: d(hr, training=True), True: d(usm, training=True)}
  assert abs(float(tf.reduce_mean(want[True]) - tf.reduce_mean(want[False]))) > 1e-3
  fake = d(state.models.generator(lr), training=True).numpy()  # D sees the pre-update SR
  out = train_steps.make_replica_step(config, state, 2)(lr, hr, usm)
  np.testing.assert_allclose(float(out["d_real"]), float(tf.reduce_mean(want[gan_gt_usm])),
                             rtol=1e-5, atol=1e-6)
  # Vanilla D loss (BasicSR GANLoss "vanilla"): BCE(real, 1) + BCE(fake, 0) = softplus(−r) +
  # softplus(f), each a mean over the example's logits, then the batch mean.
  real = want[gan_gt_usm].numpy().reshape(2, -1)
  softplus = lambda x: np.logaddexp(0.0, x)  # noqa: E731
  expected = np.mean(softplus(-real).mean(axis=1) + softplus(fake.reshape(2, -1)).mean(axis=1))
  np.testing.assert_allclose(float(out["d_loss"]), expected, rtol=1e-5)
