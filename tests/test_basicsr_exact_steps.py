"""BasicSR-exact training pieces against hand-derived values (no torch: the parity script
scripts/check_basicsr_parity.py compares with BasicSR's own code).

* Adam's ε after the bias correction (torch.optim.Adam) vs before it (Keras);
* RaGAN's D loss in BasicSR's detached form vs the paper's;
* torch's unbiased running variance in the discriminator's batch norm, and BasicSR's five D
  passes per step in its order.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf.models.discriminator import TorchBatchNorm
from esrgan_tf.train import losses
from esrgan_tf.train import state as train_state
from esrgan_tf.train import steps as train_steps
from esrgan_tf.train.optimizer import FusedAdam

LR, B1, B2, EPS = 1e-2, 0.9, 0.99, 1e-8


def _adam(form, grads):
  # θ0 = 0: the float32 variable then holds the small updates without rounding.
  variable = keras.Variable(np.zeros(grads[0].shape, np.float32))
  opt = FusedAdam(LR, beta_1=B1, beta_2=B2, epsilon=EPS, epsilon_form=form)
  opt.build([variable])
  apply = tf.function(lambda g: opt.apply([g], [variable]))
  for g in grads:
    apply(tf.constant(g))
  return variable.numpy().astype(np.float64)


def _closed_form(grads, torch_form):
  theta = np.zeros(grads[0].shape)
  m = v = 0.0
  for t, g in enumerate(grads, start=1):
    g = g.astype(np.float64)
    m, v = B1 * m + (1 - B1) * g, B2 * v + (1 - B2) * g * g
    if torch_form:  # torch/optim/adam.py: step_size·m / (√v/√(1 − β2^t) + ε)
      theta = theta - LR / (1 - B1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - B2 ** t) + EPS)
    else:  # Keras: α_t·m / (√v + ε)
      theta = theta - LR * np.sqrt(1 - B2 ** t) / (1 - B1 ** t) * m / (np.sqrt(v) + EPS)
  return theta


@pytest.mark.parametrize("form", ["torch", "keras"])
def test_adam_epsilon_forms_match_their_closed_forms(form):
  # Gradients of ~1e-8, so that √v is comparable to ε and the two forms differ visibly.
  rng = np.random.default_rng(0)
  grads = [(rng.normal(size=(4, 5)) * 1e-8).astype(np.float32) for _ in range(5)]
  got, want = _adam(form, grads), _closed_form(grads, form == "torch")
  other = _closed_form(grads, form != "torch")
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert np.abs(other - want).max() > 0.05 * np.abs(want).max()  # The forms really differ.


def test_adam_forms_agree_once_sqrt_v_dominates_epsilon():
  rng = np.random.default_rng(1)
  grads = [rng.normal(size=(3, 3)).astype(np.float32) for _ in range(3)]
  np.testing.assert_allclose(_adam("torch", grads), _adam("keras", grads), rtol=0, atol=1e-6)


def test_adam_refuses_unknown_form_and_torch_amsgrad():
  with pytest.raises(ValueError, match="epsilon_form"):
    FusedAdam(1e-3, epsilon_form="pytorch")
  with pytest.raises(ValueError, match="amsgrad"):
    FusedAdam(1e-3, amsgrad=True, epsilon_form="torch")


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


REAL = np.array([[3.0], [2.5], [-2.0]], np.float32)
FAKE = np.array([[0.0], [-0.5], [-1.0]], np.float32)


def _d_loss_and_grads(fn):
  real, fake = tf.constant(REAL), tf.constant(FAKE)
  with tf.GradientTape() as tape:
    tape.watch([real, fake])
    loss = tf.reduce_mean(fn(real, fake))
  g_real, g_fake = tape.gradient(loss, [real, fake])
  return float(loss), g_real.numpy()[:, 0], g_fake.numpy()[:, 0]


def test_ragan_d_loss_forms_hand_derived():
  r, f, n = REAL[:, 0].astype(np.float64), FAKE[:, 0].astype(np.float64), 3
  # L = mean_i ½[−log σ(r_i − f̄) − log(1 − σ(f_i − r̄))]
  want = np.mean(0.5 * (-np.log(_sigmoid(r - f.mean())) - np.log(1 - _sigmoid(f - r.mean()))))
  # Detached (BasicSR): ∂L/∂r_i = ½(σ(r_i − f̄) − 1)/n, ∂L/∂f_i = ½σ(f_i − r̄)/n.
  a, b = _sigmoid(r - f.mean()) - 1, _sigmoid(f - r.mean())
  detached = (0.5 * a / n, 0.5 * b / n)
  # Paper form adds the terms through the means: ∂/∂r_i gets −½·Σ_j b_j/n², ∂/∂f_i −½·Σ_j a_j/n².
  paper = (0.5 * a / n - 0.5 * b.sum() / n ** 2, 0.5 * b / n - 0.5 * a.sum() / n ** 2)
  for fn, (g_r, g_f) in ((losses.ragan_discriminator_loss_detached, detached),
                         (losses.ragan_discriminator_loss, paper)):
    loss, got_r, got_f = _d_loss_and_grads(fn)
    assert loss == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(got_r, g_r, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_f, g_f, rtol=1e-5, atol=1e-7)
  # A shift of every logit (D's last bias) cancels in the paper's form only.
  assert abs(sum(paper[0]) + sum(paper[1])) < 1e-12
  assert abs(sum(detached[0]) + sum(detached[1])) > 1e-2


def test_ragan_detached_takes_the_fake_mean_from_the_separate_pass():
  other = FAKE + 1.0
  got = losses.ragan_discriminator_loss_detached(REAL, FAKE, other).numpy()
  r, f = REAL[:, 0].astype(np.float64), FAKE[:, 0].astype(np.float64)
  want = 0.5 * (-np.log(_sigmoid(r - other.mean())) - np.log(1 - _sigmoid(f - r.mean())))
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_torch_batch_norm_updates_with_the_unbiased_variance():
  x = np.random.default_rng(2).normal(size=(2, 3, 3, 4)).astype(np.float32) * 3 + 1
  bn = TorchBatchNorm(momentum=0.9, epsilon=1e-5)
  bn.build(x.shape)
  out = bn(x, training=True).numpy()
  flat = x.reshape(-1, 4).astype(np.float64)
  n = flat.shape[0]
  np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * flat.mean(0), rtol=1e-5)
  np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * flat.var(0) * n / (n - 1),
                             rtol=1e-5)
  # The batch itself is normalised by the biased variance (as torch and Keras both do).
  np.testing.assert_allclose(out.reshape(-1, 4), (flat - flat.mean(0)) / np.sqrt(
      flat.var(0) + 1e-5), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(bn(x, training=False).numpy(), (x - bn.moving_mean.numpy()) / np.sqrt(
      bn.moving_variance.numpy() + 1e-5), rtol=1e-4, atol=1e-5)


def _gan_config(form):
  import os  # pylint: disable=g-import-not-at-top

  from esrgan_tf.train import configs  # pylint: disable=g-import-not-at-top
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  c = configs.load_config_module(os.path.join(repo, "configs", "esrgan_x4.py")).get_config()
  c.model.update(num_features=4, num_blocks=1, growth_channels=4)
  c.data.update(gt_size=16, batch_size=2)
  c.discriminator.update(num_features=4)
  c.perceptual.update(weight=0.0, weights="")
  c.loss.ragan_form = form
  c.train.strategy = "default"
  return c


@pytest.mark.parametrize("form,order", [("basicsr", "gffgf"), ("paper", "gfgf")])
def test_d_passes_per_step_update_batch_norm_in_basicsr_order(form, order):
  """After one step, D's first batch norm holds the momentum updates of the passes, in order:
  BasicSR's real, fake (G step) | fake, real, fake (D step); the paper form skips the extra fake.
  (The letters: g = the real HR batch, f = the fake SR batch.)"""
  c = _gan_config(form)
  state = train_state.create_train_state(c)
  step = tf.function(train_steps.make_replica_step(c, state, 2))
  rng = np.random.default_rng(3)
  lr = tf.constant(rng.uniform(size=(2, 4, 4, 3)).astype(np.float32))
  hr = tf.constant(rng.uniform(size=(2, 16, 16, 3)).astype(np.float32))
  d = state.models.discriminator
  sr = state.models.generator(lr)  # The SR every pass of this step sees (G before its update).
  conv0_0, _, conv0_1, bn = d.stage_layers[0]

  def bn_input(images):
    x = conv0_1(tf.nn.leaky_relu(conv0_0(images), alpha=0.2)).numpy().reshape(-1, 4)
    return x.mean(0).astype(np.float64), x.var(0).astype(np.float64) * len(x) / (len(x) - 1)

  stats = {"g": bn_input(hr), "f": bn_input(sr)}
  mean, var = np.zeros(4), np.ones(4)
  for key in order:
    mean, var = 0.9 * mean + 0.1 * stats[key][0], 0.9 * var + 0.1 * stats[key][1]
  step(lr, hr)
  np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(bn.moving_variance.numpy(), var, rtol=1e-4, atol=1e-6)
