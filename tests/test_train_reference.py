"""The training step against values derived by hand in numpy (not by our loss functions).

Sources of the formulas:
* ESRGAN (Wang et al. 2018, arXiv:1809.00219) §3.2–3.4 and BasicSR `ESRGANModel.optimize_parameters`
  (basicsr/models/esrgan_model.py): L_G = w_pix·L1 + w_perc·Σ_l w_l·L1(φ_l) + w_gan·L_G^Ra, with
    L_G^Ra = ½·BCE(C(x_r) − E[C(x_f)], 0) + ½·BCE(C(x_f) − E[C(x_r)], 1),
    L_D^Ra = ½·BCE(C(x_r) − E[C(x_f)], 1) + ½·BCE(C(x_f) − E[C(x_r)], 0),
  E[·] and every loss a mean over the batch; φ_l the VGG19 conv output BEFORE its ReLU (§3.3).
* Adam: Kingma & Ba 2015, Algorithm 1 in the form of §2's last paragraph, which Keras implements:
    α_t = lr·√(1 − β2^t)/(1 − β1^t), θ_t = θ_{t−1} − α_t·m_t/(√v_t + ε).
* Step-wise LR: BasicSR `MultiStepRestartLR` with `update_learning_rate` called before each
  iteration: iterations 1..m use the rate before milestone m, iteration m + 1 the decayed one.
* EMA (BasicSR `model_ema`): ema ← decay·ema + (1 − decay)·G after each G update.

The generator and discriminator forward passes come from the models themselves (their
architectures are checked against numpy in test_rrdbnet / test_discriminator); the VGG features,
every loss, the optimizer and the EMA are recomputed here in float64 numpy.

All calls into esrgan_tf's training code go through `_Run` (one adapter), so that a refactor of
the trainer changes one place of this file.
"""

import importlib.util
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf.train import loop as train_loop
from esrgan_tf.train import state as train_state
from esrgan_tf.train import steps as train_steps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, GT, SCALE = 3, 16, 4


# --- the adapter: the only place that calls esrgan_tf.train.loop ------------------------------

class _Run:
  """One training run built from `config`, stepped on a fixed batch."""

  def __init__(self, config, lr, hr, vgg_layers=None):
    self.config = config
    strategy = tf.distribute.get_strategy()
    self.state = train_state.create_train_state(config)
    if vgg_layers:  # A random-init VGG19 (weights=None): no download; weights are set below.
      from esrgan_tf.models.vgg import VGGFeatureExtractor  # pylint: disable=g-import-not-at-top
      with train_state.precision_policy(config.train.precision):
        self.state.models.vgg = VGGFeatureExtractor(vgg_layers, weights=None)
    self.models = self.state.models
    self.g_opt, self.d_opt = self.state.g_optimizer, self.state.d_optimizer
    self._steps = train_steps.make_train_step(config, strategy, self.state, BATCH)
    dataset = tf.data.Dataset.from_tensors((lr, hr)).repeat()
    self._iterator = iter(strategy.experimental_distribute_dataset(dataset))

  @property
  def generator(self):
    return self.models.generator

  @property
  def ema(self):
    return self.models.ema_generator

  @property
  def discriminator(self):
    return self.models.discriminator

  @property
  def vgg(self):
    return self.models.vgg

  def step(self) -> dict:
    """One training step; the losses it reports (computed before its updates)."""
    out = self._steps(self._iterator, tf.constant(1, tf.int32))
    assert int(out["first_bad"]) == -1
    return {k: float(v) for k, v in out.items() if k != "first_bad"}

  @staticmethod
  def learning_rate_of_step(optimizer, step: int) -> float:
    """The learning rate the `step`-th (1-based) update of `optimizer` uses."""
    optimizer.iterations.assign(step - 1)
    return train_state.learning_rate(optimizer)

  @staticmethod
  def train_and_evaluate(config, workdir, lr, hr):
    def dataset_fn(ctx):
      del ctx
      return tf.data.Dataset.from_tensors((lr, hr)).repeat()
    return train_loop.train_and_evaluate(config, workdir, dataset_fn=dataset_fn)


# --- config, fixed weights, fixed batch -----------------------------------------------------------

def _config(phase, **overrides):
  name = "esrgan_x4" if phase == "gan" else "psnr_x4"
  spec = importlib.util.spec_from_file_location(f"ref_{name}",
                                                os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config("smoke")
  c.model.update(num_features=8, num_blocks=1, growth_channels=4, scale=SCALE)
  c.data.update(gt_size=GT, batch_size=BATCH)
  c.discriminator.update(type="vgg", num_features=4, spectral_norm=False)
  c.perceptual.update(weight=0.0, weights="")
  c.train.update(steps=1, steps_per_loop=1, log_every=1, eval_every=0, checkpoint_every=1,
                 progress=False, strategy="default", ema_decay=0.9,
                 checkpoint_data_iterator=False)
  for key, value in overrides.items():
    section, field = key.split("__")
    c[section][field] = value
  return c


def _batch():
  rng = np.random.default_rng(42)
  lr = rng.uniform(size=(BATCH, GT // SCALE, GT // SCALE, 3)).astype(np.float32)
  hr = rng.uniform(size=(BATCH, GT, GT, 3)).astype(np.float32)
  return lr, hr


def _fix(model, seed, scale=1.0):
  """Deterministic weights independent of TF's RNG: kernels N(0, scale²/fan_in), bias N(0, .05²)."""
  rng = np.random.default_rng(seed)
  for v in model.weights:
    shape = tuple(v.shape)
    if v.path.endswith("kernel"):
      std = scale / np.sqrt(np.prod(shape[:-1]))
      v.assign(rng.normal(0, std, shape).astype(np.float32))
    elif v.path.endswith("bias"):
      v.assign(rng.normal(0, 0.05, shape).astype(np.float32))


def _fix_all(run):
  _fix(run.generator, 1)
  _fix(run.ema, 2)  # EMA₀ ≠ G₀, so a swapped EMA formula cannot coincide.
  if run.discriminator is not None:
    _fix(run.discriminator, 3)
  if run.vgg is not None:
    # Caffe-preprocessed inputs are ~±128: scaled so features are O(1) and a float16 step with
    # the initial loss scale 2^15 does not overflow (it would be skipped, by design).
    _fix(run.vgg, 4, scale=0.01)


def _weights(model):
  return [np.array(w, np.float64) for w in model.get_weights()]


def _trainable(model):
  return [np.array(w, np.float64) for w in model.trainable_weights]


# --- numpy references -----------------------------------------------------------------------------

def _softplus(x):
  return np.logaddexp(0.0, x)


def _bce(logits, label):
  """Sigmoid cross-entropy with logits: −[y·log σ(x) + (1 − y)·log(1 − σ(x))]."""
  return label * _softplus(-logits) + (1 - label) * _softplus(logits)


def ragan_g(real, fake):
  real, fake = np.ravel(real).astype(np.float64), np.ravel(fake).astype(np.float64)
  return np.mean(0.5 * _bce(real - fake.mean(), 0) + 0.5 * _bce(fake - real.mean(), 1))


def ragan_d(real, fake):
  real, fake = np.ravel(real).astype(np.float64), np.ravel(fake).astype(np.float64)
  return np.mean(0.5 * _bce(real - fake.mean(), 1) + 0.5 * _bce(fake - real.mean(), 0))


def _conv3x3(x, kernel, bias):
  """'same' 3×3 stride-1 convolution (cross-correlation, as Keras/TF), NHWC, float64."""
  n, h, w, _ = x.shape
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.broadcast_to(bias, (n, h, w, kernel.shape[-1])).astype(np.float64)
  for dy in range(3):
    for dx in range(3):
      out = out + padded[:, dy:dy + h, dx:dx + w, :] @ kernel[dy, dx]
  return out


def vgg_features_numpy(vgg, images, layers):
  """Pre-activation VGG19 block1 features: caffe preprocessing, conv1_1, ReLU, conv1_2."""
  convs = {layer.name: [np.array(w, np.float64) for w in layer.get_weights()]
           for layer in vgg.trunk if isinstance(layer, keras.layers.Conv2D)}
  # Keras VGG19 caffe preprocessing: RGB→BGR, ×255, minus the ImageNet BGR mean.
  x = np.asarray(images, np.float64)[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
  feats = {"block1_conv1": _conv3x3(x, *convs["block1_conv1"])}
  feats["block1_conv2"] = _conv3x3(np.maximum(feats["block1_conv1"], 0), *convs["block1_conv2"])
  return {name: feats[name] for name in layers}


def adam_reference(theta0, grads, lrs, beta1, beta2, eps, epsilon_form="keras"):
  """θ after len(grads) Adam updates (Kingma & Ba §2), float64: ε added to √v before the bias
  correction (Keras) or after it (torch.optim.Adam: epsilon_form "torch")."""
  theta, m, v = np.array(theta0, np.float64), 0.0, 0.0
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    if epsilon_form == "torch":
      theta = theta - lr / (1 - beta1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - beta2 ** t) + eps)
    else:
      alpha = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
      theta = theta - alpha * m / (np.sqrt(v) + eps)
  return theta


def _grads_of_l1(generator, lr, hr, weight):
  """∂(w·mean|G(lr) − hr|)/∂θ by autodiff of this test's own formula."""
  with tf.GradientTape() as tape:
    loss = weight * tf.reduce_mean(tf.abs(tf.cast(generator(lr), tf.float32) - hr))
  return [np.array(g, np.float64) for g in tape.gradient(loss, generator.trainable_weights)]


def _logits(discriminator, images):
  return np.array(discriminator(tf.constant(images), training=True), np.float64)


def _sr(generator, lr):
  return np.array(generator(tf.constant(lr)), np.float64)


# --- tests ---------------------------------------------------------------------------------

def test_psnr_step_loss_adam_closed_form_lr_milestone_and_ema():
  lr, hr = _batch()
  pix_w, decay, base_lr = 0.7, 0.9, 1e-3
  c = _config("psnr", loss__pixel_weight=pix_w, train__ema_decay=decay, optim__g_lr=base_lr,
              optim__milestones=(1,), optim__gamma=0.5)
  run = _Run(c, lr, hr)
  _fix_all(run)
  g0, ema0 = _weights(run.generator), _weights(run.ema)
  sr0 = _sr(run.generator, lr)
  grads1 = _grads_of_l1(run.generator, lr, hr, pix_w)

  out = run.step()
  expected = pix_w * np.mean(np.abs(sr0 - hr))
  np.testing.assert_allclose(out["l_pix"], expected, rtol=1e-6)
  np.testing.assert_allclose(out["g_loss"], expected, rtol=1e-6)
  g1 = _weights(run.generator)
  o = c.optim
  for w0, w1, g in zip(g0, g1, grads1):
    want = adam_reference(w0, [g], [base_lr], o.beta1, o.beta2, 1e-8, o.epsilon_form)
    # Where |g| is near torch's ε·√(1 − β2) = 1e-9, the first update lr·g/(|g| + 1e-9) moves
    # with g's float32 rounding (our step's and this test's gradients are separate float32
    # computations): those weights are held to Adam's bound |Δ| ≤ lr only.
    near_eps = np.abs(g) < 1e-8
    assert near_eps.mean() < 0.05  # A few weights only: the check stays a check.
    np.testing.assert_allclose(w1[~near_eps], want[~near_eps], rtol=0, atol=2e-7)
    assert np.all(np.abs(w1 - w0)[near_eps] <= base_lr * (1 + 1e-5))
    assert np.max(np.abs(w1 - w0)) > 0.5 * base_lr  # The step moved the weights by ~lr.
  # EMA after one step: decay·ema₀ + (1 − decay)·G₁, in float32 as the trainer computes it.
  for e0, w1, e1 in zip(ema0, g1, _weights(run.ema)):
    np.testing.assert_array_equal(
        e1, np.float32(decay) * e0.astype(np.float32) + np.float32(1 - decay) * w1.astype(
            np.float32))

  # Step 2 is after the milestone 1: lr halves (BasicSR: iteration m + 1 uses the decayed rate).
  grads2 = _grads_of_l1(run.generator, lr, hr, pix_w)
  run.step()
  for w0, w2, ga, gb in zip(g0, _weights(run.generator), grads1, grads2):
    want = adam_reference(w0, [ga, gb], [base_lr, base_lr * 0.5], o.beta1, o.beta2, 1e-8,
                          o.epsilon_form)
    near_eps = (np.abs(ga) < 1e-8) | (np.abs(gb) < 1e-8)
    np.testing.assert_allclose(w2[~near_eps], want[~near_eps], rtol=0, atol=3e-7)
    assert np.all(np.abs(w2 - w0)[near_eps] <= 1.5 * base_lr * (1 + 1e-5))


def test_learning_rate_just_before_and_after_each_milestone():
  lr, hr = _batch()
  c = _config("gan", optim__g_lr=4e-4, optim__d_lr=2e-4, optim__milestones=(3, 7, 8),
              optim__gamma=0.5)
  run = _Run(c, lr, hr)
  for opt, base in ((run.g_opt, 4e-4), (run.d_opt, 2e-4)):
    assert _Run.learning_rate_of_step(opt, 1) == pytest.approx(base, rel=1e-7)
    for i, milestone in enumerate((3, 7, 8)):
      assert _Run.learning_rate_of_step(opt, milestone) == pytest.approx(
          base * 0.5 ** i, rel=1e-7), (milestone, "before")
      assert _Run.learning_rate_of_step(opt, milestone + 1) == pytest.approx(
          base * 0.5 ** (i + 1), rel=1e-7), (milestone, "after")


PERCEPTUAL_LAYERS = {"block1_conv1": 0.25, "block1_conv2": 1.0}


def _gan_run(precision="float32", **overrides):
  lr, hr = _batch()
  settings = {"loss__pixel_weight": 1e-2, "loss__gan_weight": 5e-3, "perceptual__weight": 0.8,
              "optim__g_lr": 1e-4, "optim__d_lr": 1e-4, "train__precision": precision}
  settings.update(overrides)
  c = _config("gan", **settings)
  c.perceptual.layers = PERCEPTUAL_LAYERS
  run = _Run(c, lr, hr, vgg_layers=PERCEPTUAL_LAYERS if c.perceptual.weight else None)
  _fix_all(run)
  return run, c, lr, hr


@pytest.fixture(scope="module")
def gan_float32():
  """One float32 gan step from fixed weights: what the step saw before it, what it reported."""
  run, c, lr, hr = _gan_run()
  sr0 = _sr(run.generator, lr)
  seen = {"sr0": sr0, "hr": hr, "real": _logits(run.discriminator, hr),
          "fake": _logits(run.discriminator, sr0.astype(np.float32)),
          "sr_feat": vgg_features_numpy(run.vgg, sr0, PERCEPTUAL_LAYERS),
          "hr_feat": vgg_features_numpy(run.vgg, hr, PERCEPTUAL_LAYERS),
          "vgg_hr": run.vgg(tf.constant(hr))}
  out = run.step()
  return dict(seen, out=out, g1=_weights(run.generator), config=c)


def test_gan_step_loss_terms_match_the_paper_formulas(gan_float32):
  s = gan_float32
  # Our VGG's pre-activation taps equal the numpy conv of the same weights.
  for name, value in s["vgg_hr"].items():
    np.testing.assert_allclose(np.array(value), s["hr_feat"][name], rtol=1e-4, atol=1e-3)
  out = s["out"]
  l_pix = 1e-2 * np.mean(np.abs(s["sr0"] - s["hr"]))
  l_perc = 0.8 * sum(w * np.mean(np.abs(s["sr_feat"][k] - s["hr_feat"][k]))
                     for k, w in PERCEPTUAL_LAYERS.items())
  real, fake = s["real"], s["fake"]
  l_gan = 5e-3 * ragan_g(real, fake)
  np.testing.assert_allclose(out["l_pix"], l_pix, rtol=1e-5)
  np.testing.assert_allclose(out["l_percep"], l_perc, rtol=1e-4)
  np.testing.assert_allclose(out["l_g_gan"], l_gan, rtol=1e-5)
  np.testing.assert_allclose(out["g_loss"], l_pix + l_perc + l_gan, rtol=1e-4)
  np.testing.assert_allclose(out["d_loss"], ragan_d(real, fake), rtol=1e-5)
  np.testing.assert_allclose(out["d_real"], real.mean(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["d_fake"], fake.mean(), rtol=1e-5, atol=1e-6)
  # The relativistic terms are not symmetric here: a swapped real/fake would show.
  assert abs(ragan_d(real, fake) - ragan_d(fake, real)) > 1e-3
  assert abs(ragan_g(real, fake) - ragan_d(real, fake)) > 1e-3


def _with_weights(model, weights, fn):
  """fn() evaluated with `model` temporarily holding `weights` (get_weights order)."""
  current = model.get_weights()
  model.set_weights(weights)
  try:
    return fn()
  finally:
    model.set_weights(current)


def test_each_update_lowers_its_own_loss_with_the_other_net_frozen():
  # Only the GAN term drives G here (pixel and perceptual weights 0), so G's step must lower
  # the generator's RaGAN loss against the D it was taken with (D₀, held fixed), and D's step
  # (on the same SR batch, G₀'s output) must lower D's RaGAN loss.
  run, _, lr, hr = _gan_run(loss__pixel_weight=0.0, perceptual__weight=0.0)
  G, D = run.generator, run.discriminator  # pylint: disable=invalid-name
  sr0 = _sr(G, lr).astype(np.float32)
  d0 = D.get_weights()
  d_before = ragan_d(_logits(D, hr), _logits(D, sr0))
  g_before = ragan_g(_logits(D, hr), _logits(D, sr0))
  out = run.step()
  np.testing.assert_allclose(out["d_loss"], d_before, rtol=1e-5)
  np.testing.assert_allclose(out["l_g_gan"], 5e-3 * g_before, rtol=1e-5)
  d_after = ragan_d(_logits(D, hr), _logits(D, sr0))
  assert d_after < d_before - 1e-4, (d_before, d_after)
  sr1 = _sr(G, lr).astype(np.float32)
  g_after = _with_weights(D, d0, lambda: ragan_g(_logits(D, hr), _logits(D, sr1)))
  assert g_after < g_before - 1e-5, (g_before, g_after)


def test_ema_continues_from_the_restored_ema_after_resume(tmp_path):
  lr, hr = _batch()
  decay = 0.9
  c = _config("psnr", train__ema_decay=decay, optim__g_lr=1e-3)
  workdir = str(tmp_path / "w")
  first = _Run.train_and_evaluate(c, workdir, lr, hr)
  ema1 = _weights(first["models"].ema_generator)
  g1 = _weights(first["models"].generator)
  assert not all(np.array_equal(a, b) for a, b in zip(ema1, g1))
  c.train.steps = 2
  second = _Run.train_and_evaluate(c, workdir, lr, hr)
  assert second["history"]["step"] == [2]
  g2 = _weights(second["models"].generator)
  for e1, w2, e2 in zip(ema1, g2, _weights(second["models"].ema_generator)):
    np.testing.assert_array_equal(
        e2, np.float32(decay) * e1.astype(np.float32) + np.float32(1 - decay) * w2.astype(
            np.float32))


# Mixed precision against float32 from the same weights and batch. Stated tolerances, 2–4× the
# measured errors: relative error of each reported loss ≤ 2^-6 for bf16 (8-bit significand;
# measured ≤ 2.0e-3 (l_g_gan) where the CPU has native bf16 and TF runs oneDNN, 8.1e-3 (d_loss)
# on an AVX2-only CPU, where TF's Eigen kernels round bf16 differently) and ≤ 2^-9 for float16
# (11-bit significand; measured ≤ 6.7e-4, d_loss); d_real/d_fake are batch-mean logits near 0,
# bounded absolutely: 2^-5 for bf16 (measured ≤ 8.0e-3) and 2^-9 for float16 (measured
# ≤ 7.6e-4). The first Adam update is ≈ lr·sign(g), so the weights after the step may differ
# by ≤ 2·lr where a gradient's sign flips, and most must not (measured: 94 % within lr/2 for
# bf16, 97 % for float16).
@pytest.mark.parametrize("precision,rtol,logit_atol", [("mixed_bfloat16", 2 ** -6, 2 ** -5),
                                                       ("mixed_float16", 2 ** -9, 2 ** -9)])
def test_mixed_precision_step_agrees_with_float32(precision, rtol, logit_atol, gan_float32):
  ref, ref_g, c = gan_float32["out"], gan_float32["g1"], gan_float32["config"]
  run, _, _, _ = _gan_run(precision)
  assert run.generator.compute_dtype == precision.split("_")[1]
  out = run.step()
  for key, value in ref.items():
    if key in ("d_real", "d_fake"):
      np.testing.assert_allclose(out[key], value, rtol=0, atol=logit_atol, err_msg=key)
    else:
      np.testing.assert_allclose(out[key], value, rtol=rtol, atol=0, err_msg=key)
  lr_g = c.optim.g_lr
  same, total = 0, 0
  for a, b in zip(ref_g, _weights(run.generator)):
    np.testing.assert_allclose(a, b, rtol=0, atol=2 * lr_g + 1e-6)
    same += np.sum(np.abs(a - b) < 0.5 * lr_g)
    total += a.size
  assert same / total > 0.9, same / total
