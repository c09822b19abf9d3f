"""Multi-head training (train.head_config, head_steps): targets, loss mixes and gradients against
references derived here (numpy, the test_imresize loop reference, the single-head trainer)."""

import copy
import os

import numpy as np
import pytest
import tensorflow as tf
from test_imresize import _ref_resize  # Independent loop implementation of MATLAB imresize.
import vgg_reference

from esrgan_tf.images import imresize
from esrgan_tf.models import MultiHeadRRDBNet, RRDBNet
from esrgan_tf.models.vgg import VGGFeatureExtractor
from esrgan_tf.train import configs, head_config, head_steps
from esrgan_tf.train import loop as train_loop
from esrgan_tf.train import state as train_state
from esrgan_tf.train import steps as train_steps

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "configs")
BATCH = 2


def _config(phase="psnr", heads=({"name": "x2", "scale": 2}, {"name": "x4", "scale": 4}),
            head_losses=None, gt_size=16):
  base = "esrgan_x4" if phase == "gan" else "psnr_x4"
  c = configs.load_config_module(os.path.join(CONFIGS, f"{base}.py")).get_config("smoke")
  model = dict(c.model)
  model.pop("scale")
  c.model = dict(model, arch="multihead_rrdbnet", heads=[dict(h) for h in heads],
                 num_features=8, num_blocks=1, growth_channels=4)
  c.head_losses = head_losses or {}
  c.data.update(gt_size=gt_size, batch_size=BATCH)
  c.discriminator.update(type="vgg", num_features=4, spectral_norm=False)
  c.perceptual.update(weight=0.0, weights="")
  c.train.update(steps=1, steps_per_loop=1, log_every=1, eval_every=0, checkpoint_every=1,
                 progress=False, strategy="default", ema_decay=0.9,
                 checkpoint_data_iterator=False)
  return c


def _batch(gt_size=16, largest=4, seed=42):
  rng = np.random.default_rng(seed)
  # HR on 8-bit levels, as decoded photos are.
  hr = np.round(rng.uniform(size=(BATCH, gt_size, gt_size, 3)) * 255).astype(np.float32) / 255
  lr = rng.uniform(size=(BATCH, gt_size // largest, gt_size // largest, 3)).astype(np.float32)
  return lr, hr


class _Run:
  """A multi-head train state stepped on one fixed batch (default strategy)."""

  def __init__(self, config, lr, hr, vgg_layers=None):
    self.state = train_state.create_train_state(config)
    if vgg_layers:  # A random-init VGG19: no download.
      with train_state.precision_policy(config.train.precision):
        self.state.models.vgg = VGGFeatureExtractor(vgg_layers, weights=None)
    strategy = tf.distribute.get_strategy()
    self.steps = train_loop.heads_lib.make_train_step(config, strategy, self.state, BATCH)
    dataset = tf.data.Dataset.from_tensors((lr, hr)).repeat()
    self.iterator = iter(strategy.experimental_distribute_dataset(dataset))

  def step(self) -> dict:
    out = self.steps(self.iterator, tf.constant(1, tf.int32))
    assert int(out["first_bad"]) == -1
    return {k: float(v) for k, v in out.items() if k != "first_bad"}


def _quantized_ref(image, scale):
  """MATLAB imresize by the loop reference, then uint8 conversion (round half away, clip)."""
  return np.clip(np.floor(_ref_resize(image, scale) * 255 + 0.5), 0, 255) / 255


# --- targets ---------------------------------------------------------------------------------


def test_targets_are_the_matlab_bicubic_of_the_largest_scale_hr():
  _, hr = _batch(gt_size=16, largest=8)
  targets = head_config.head_targets(tf.constant(hr), [2, 4, 8, 4], 8)
  assert sorted(targets) == [2, 4, 8]
  np.testing.assert_array_equal(targets[8].numpy(), hr)
  for scale, factor in ((4, 0.5), (2, 0.25)):
    got = targets[scale].numpy()
    assert got.shape == (BATCH, 16 * scale // 8, 16 * scale // 8, 3)
    np.testing.assert_allclose(got * 255, np.round(got * 255), rtol=0, atol=1e-4)  # 8-bit levels
    for i in range(BATCH):
      want = _quantized_ref(hr[i], factor)
      # float32 vs float64 may round an exact .5 differently: at most one level, rarely.
      diff = np.abs(got[i] - want) * 255
      assert diff.max() <= 1 + 1e-4 and np.mean(diff > 0.5) < 0.01, (scale, diff.max())
    # And exactly what the data pipeline's LR function makes from the same HR.
    np.testing.assert_array_equal(
        got, imresize.quantize(imresize.imresize(hr, factor)).numpy())


# --- the config -------------------------------------------------------------------------------


def test_head_losses_default_to_the_single_head_mix_and_take_overrides():
  psnr = head_config.head_losses(_config("psnr", head_losses={"x2": {"weight": 0.5}}))
  assert [(h.name, h.scale, h.weight, h.pixel_weight, h.perceptual_weight, h.gan_weight)
          for h in psnr] == [("x2", 2, 0.5, 1.0, 0.0, 0.0), ("x4", 4, 1.0, 1.0, 0.0, 0.0)]
  c = _config("gan", head_losses={"x2": dict(gan_weight=0, trunk_gradient=0.25)})
  c.perceptual.weight = 0.8
  x2, x4 = head_config.head_losses(c)
  assert (x2.pixel_weight, x2.perceptual_weight, x2.gan_weight, x2.trunk_gradient) == (
      1e-2, 0.8, 0.0, 0.25)
  assert (x4.pixel_weight, x4.perceptual_weight, x4.gan_weight) == (1e-2, 0.8, 5e-3)
  assert not x2.adversarial and x4.adversarial
  assert head_config.scale_tag(c) == "x2x4" and head_config.max_scale(c) == 4


@pytest.mark.parametrize("phase, head_losses, gt_size, message", [
    ("psnr", {"x3": {}}, 16, r"names \['x3'\], which are not heads"),
    ("psnr", {"x2": {"pixel": 1.0}}, 16, r"unknown fields \['pixel'\]"),
    ("psnr", {"x2": {"weight": -1.0}}, 16, r"x2.weight must be a finite number >= 0"),
    ("psnr", {"x2": {"trunk_gradient": 1.5}}, 16, r"trunk_gradient must be in \[0, 1\]"),
    ("psnr", {"x2": {"gan_weight": 1.0}}, 16, r"gan_weight need phase 'gan'"),
    ("psnr", {"x2": {"weight": 0.0}, "x4": {"weight": 0.0}}, 16, "every head has weight 0"),
    ("psnr", {"x2": {"pixel_weight": 0.0}}, 16, "every loss term is 0"),
    ("psnr", {}, 18, "not a multiple of the largest head scale 4"),
    ("gan", {}, 24, r"head 'x2': the vgg discriminator needs its target size .* = 12\)"),
])
def test_bad_recipes_are_refused_before_anything_is_built(phase, head_losses, gt_size, message):
  c = _config(phase, head_losses=head_losses, gt_size=gt_size)
  with pytest.raises(ValueError, match=message):
    train_loop.validate_config(c)


def test_shared_discriminator_needs_a_size_free_type_and_is_one_model():
  c = _config("gan")
  c.discriminator.shared = True
  with pytest.raises(ValueError, match="discriminator.shared needs"):
    train_loop.validate_config(c)
  c.discriminator.type = "patch"
  train_loop.validate_config(c)
  state = train_state.create_train_state(c)
  ds = state.models.discriminators
  assert set(ds) == {"x2", "x4"} and ds["x2"] is ds["x4"]
  assert "discriminator" in state.checkpoint_items()
  c.discriminator.shared = False
  state = train_state.create_train_state(c)
  ds = state.models.discriminators
  assert ds["x2"] is not ds["x4"]
  assert {"discriminator_x2", "discriminator_x4", "d_optimizer"} <= set(state.checkpoint_items())


# --- the step against hand-derived losses -------------------------------------------------------

PERCEPTUAL_LAYERS = {"block1_conv1": 0.25, "block1_conv2": 1.0}


def _softplus(x):
  return np.logaddexp(0.0, x)


def _bce(logits, label):
  return label * _softplus(-logits) + (1 - label) * _softplus(logits)


def _ragan(real, fake, real_label):
  """ESRGAN eq. 1–2: ½·BCE(C(x_r) − E[C(x_f)], y) + ½·BCE(C(x_f) − E[C(x_r)], 1 − y), means."""
  real, fake = np.ravel(real).astype(np.float64), np.ravel(fake).astype(np.float64)
  return np.mean(0.5 * _bce(real - fake.mean(), real_label)
                 + 0.5 * _bce(fake - real.mean(), 1 - real_label))


def test_gan_step_reports_each_heads_own_mix_and_their_weighted_sum():
  # "a" (×2): 0.7·L1 against the bicubic ×1/2 of the HR, head weight 0.5, no discriminator.
  # "b" (×4): ESRGAN's 1e-2·L1 + 0.8·perceptual + 5e-3·RaGAN against the HR, weight 2.
  heads = ({"name": "a", "scale": 2}, {"name": "b", "scale": 4})
  c = _config("gan", heads=heads, head_losses={
      "a": dict(weight=0.5, pixel_weight=0.7, perceptual_weight=0.0, gan_weight=0.0),
      "b": dict(weight=2.0, pixel_weight=1e-2, perceptual_weight=0.8, gan_weight=5e-3)})
  c.perceptual.weight = 0.8
  c.perceptual.layers = PERCEPTUAL_LAYERS
  lr, hr = _batch()
  run = _Run(c, lr, hr, vgg_layers=PERCEPTUAL_LAYERS)
  models = run.state.models
  assert set(models.discriminators) == {"b"}
  D = models.discriminators["b"]  # pylint: disable=invalid-name
  sr = {k: np.array(v, np.float64) for k, v in models.generator(tf.constant(lr)).items()}
  real = np.array(D(tf.constant(hr), training=True), np.float64)
  fake = np.array(D(tf.constant(sr["b"], tf.float32), training=True), np.float64)
  convs = {layer.name: layer.get_weights() for layer in models.vgg.trunk
           if hasattr(layer, "kernel")}
  sr_feat = vgg_reference.pre_activations(convs, sr["b"], depth=2)
  hr_feat = vgg_reference.pre_activations(convs, hr, depth=2)

  out = run.step()
  target_a = np.stack([_quantized_ref(im, 0.5) for im in hr])
  a_pix = 0.7 * np.mean(np.abs(sr["a"] - target_a))
  b_pix = 1e-2 * np.mean(np.abs(sr["b"] - hr))
  b_perc = 0.8 * sum(w * np.mean(np.abs(sr_feat[k] - hr_feat[k]))
                     for k, w in PERCEPTUAL_LAYERS.items())
  b_gan = 5e-3 * _ragan(real, fake, 0)
  np.testing.assert_allclose(out["a/l_pix"], a_pix, rtol=2e-5)
  np.testing.assert_allclose(out["a/g_loss"], a_pix, rtol=2e-5)
  np.testing.assert_allclose(out["b/l_pix"], b_pix, rtol=1e-5)
  np.testing.assert_allclose(out["b/l_percep"], b_perc, rtol=1e-4)
  np.testing.assert_allclose(out["b/l_g_gan"], b_gan, rtol=1e-5)
  np.testing.assert_allclose(out["b/g_loss"], b_pix + b_perc + b_gan, rtol=1e-4)
  np.testing.assert_allclose(out["g_loss"], 0.5 * a_pix + 2.0 * (b_pix + b_perc + b_gan),
                             rtol=1e-4)
  np.testing.assert_allclose(out["b/d_loss"], _ragan(real, fake, 1), rtol=1e-5)
  np.testing.assert_allclose(out["d_loss"], out["b/d_loss"], rtol=1e-7)
  np.testing.assert_allclose(out["b/d_real"], real.mean(), rtol=1e-5, atol=1e-6)
  assert not any(k.startswith("a/d_") or k == "a/l_g_gan" for k in out)
  assert sorted(out) == sorted(head_steps.metric_names(c, models))


# --- which variables move ---------------------------------------------------------------------


def _trunk_and_heads(model):
  trunk = {v.path: v.numpy() for v in model.weights
           if v.path.split("/")[1] not in model.head_names}
  heads = {h: {v.path: v.numpy() for v in model.weights if v.path.split("/")[1] == h}
           for h in model.head_names}
  return trunk, heads


def _changed(before, after):
  return {k for k in before if not np.array_equal(before[k], after[k])}


def test_a_head_of_weight_zero_gets_no_gradient_and_no_update():
  c = _config(head_losses={"x2": {"weight": 0.0}})
  lr, hr = _batch()
  run = _Run(c, lr, hr)
  G = run.state.models.generator  # pylint: disable=invalid-name
  trunk0, heads0 = _trunk_and_heads(G)
  out = run.step()
  run.step()
  trunk1, heads1 = _trunk_and_heads(G)
  assert not _changed(heads0["x2"], heads1["x2"])  # bit for bit: no Adam update at all
  assert _changed(heads0["x4"], heads1["x4"]) == set(heads0["x4"])
  assert _changed(trunk0, trunk1) == set(trunk0)
  assert not any(k.startswith("x2/") for k in out)
  np.testing.assert_allclose(out["g_loss"], out["x4/g_loss"], rtol=1e-7)


def test_trunk_gradient_scales_what_a_head_sends_into_the_trunk():
  lr, hr = _batch()
  grads = {}
  for t in (1.0, 0.5, 0.0):
    c = _config(head_losses={"x2": {"trunk_gradient": t}, "x4": {"weight": 0.0}})
    keras_seed = 7
    tf.keras.utils.set_random_seed(keras_seed)
    model = MultiHeadRRDBNet(**{k: v for k, v in dict(c.model).items() if k != "arch"})
    model.build()
    heads = head_config.trained_heads(c)
    with tf.GradientTape() as tape:
      out = head_steps.head_outputs(model, tf.constant(lr), heads)
      loss = tf.reduce_mean(tf.abs(out["x2"] - imresize.imresize(hr, 0.5)))
    grads[t] = {v.path: g for v, g in zip(model.trainable_variables,
                                          tape.gradient(loss, model.trainable_variables))}
  trunk = [p for p in grads[1.0] if p.split("/")[1] not in ("x2", "x4")]
  head = [p for p in grads[1.0] if p.split("/")[1] == "x2"]
  assert trunk and head
  for p in trunk:
    np.testing.assert_allclose(grads[0.5][p], 0.5 * grads[1.0][p], rtol=1e-5, atol=1e-9)
    assert grads[0.0][p] is None
  for p in head:  # The head's own gradient does not depend on t.
    np.testing.assert_allclose(grads[0.5][p], grads[1.0][p], rtol=1e-6)
    np.testing.assert_allclose(grads[0.0][p], grads[1.0][p], rtol=1e-6)
  for p in grads[1.0]:
    if p.split("/")[1] == "x4":
      assert grads[1.0][p] is None  # An untrained head is not even run.


# --- a one-head model trains exactly as the single-head trainer ----------------------------------


def test_one_head_model_steps_exactly_as_the_single_head_trainer():
  lr, hr = _batch()
  single = _config("gan")
  single.model = {k: v for k, v in dict(_config("gan").model).items()
                  if k not in ("arch", "heads")}
  single.model["scale"] = 4
  del single["head_losses"]
  multi = _config("gan", heads=({"name": "x4", "scale": 4},))
  single_state = train_state.create_train_state(single)
  strategy = tf.distribute.get_strategy()
  multi_run = _Run(multi, lr, hr)
  m = multi_run.state.models
  assert isinstance(single_state.models.generator, RRDBNet)
  for model, source in ((single_state.models.generator, m.generator),
                        (single_state.models.ema_generator, m.ema_generator),
                        (single_state.models.discriminator, m.discriminators["x4"])):
    model.set_weights(source.get_weights())
  step = train_steps.make_train_step(single, strategy, single_state, BATCH)
  iterator = iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors((lr, hr)).repeat()))
  for _ in range(2):
    want = step(iterator, tf.constant(1, tf.int32))
    got = multi_run.step()
    for key in ("g_loss", "l_pix", "l_g_gan", "d_loss", "d_real", "d_fake"):
      multi_key = key if key in ("g_loss", "d_loss") else f"x4/{key}"
      np.testing.assert_allclose(got[multi_key], float(want[key]), rtol=1e-5, atol=1e-7,
                                 err_msg=key)
  for a, b in ((single_state.models.generator, m.generator),
               (single_state.models.ema_generator, m.ema_generator),
               (single_state.models.discriminator, m.discriminators["x4"])):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
      np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-6)


# --- init_from a single-output RRDBNet --------------------------------------------------------


def test_init_from_an_rrdbnet_fills_the_trunk_and_every_head_of_its_scale():
  heads = ({"name": "psnr", "scale": 4}, {"name": "gan", "scale": 4}, {"name": "x2", "scale": 2})
  c = _config(heads=heads)
  target = train_state.create_train_state(c).models.generator
  x2_before = target.head_fn("x2")(tf.zeros([1, 4, 4, 3])).numpy()
  source = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=4, upsampler="nearest")
  source.build((None, None, None, 3))
  train_state.copy_generator_weights(target, source, "psnr.pth")
  x = tf.random.stateless_uniform([1, 5, 6, 3], (1, 2))
  for head in ("psnr", "gan"):
    np.testing.assert_array_equal(target.head_fn(head)(x).numpy(), source(x).numpy())
  np.testing.assert_array_equal(target.head_fn("x2")(tf.zeros([1, 4, 4, 3])).numpy(), x2_before)
  other = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=8, upsampler="nearest")
  other.build((None, None, None, 3))
  with pytest.raises(ValueError, match=r"train.init_from 'x8.pth': .* matches no head"):
    train_state.copy_generator_weights(target, other, "x8.pth")


# --- mixed precision ----------------------------------------------------------------------------


@pytest.mark.parametrize("precision, rtol", [("mixed_bfloat16", 2 ** -6),
                                             ("mixed_float16", 2 ** -8)])
def test_mixed_precision_step_agrees_with_float32(precision, rtol):
  lr, hr = _batch()
  c = _config("gan")
  ref = _Run(c, lr, hr)
  mixed_config = copy.deepcopy(c)
  mixed_config.train.precision = precision
  mixed = _Run(mixed_config, lr, hr)
  assert mixed.state.models.generator.compute_dtype == precision.split("_")[1]
  for target, source in ((mixed.state.models.generator, ref.state.models.generator),
                         (mixed.state.models.discriminators["x2"],
                          ref.state.models.discriminators["x2"]),
                         (mixed.state.models.discriminators["x4"],
                          ref.state.models.discriminators["x4"])):
    target.set_weights(source.get_weights())
  want, got = ref.step(), mixed.step()
  assert sorted(want) == sorted(got)
  for key, value in want.items():
    if key.endswith(("d_real", "d_fake")):
      np.testing.assert_allclose(got[key], value, rtol=0, atol=2 ** -5, err_msg=key)
    else:
      np.testing.assert_allclose(got[key], value, rtol=rtol, err_msg=key)
