"""FusedAdam against keras.optimizers.Adam (the reference maths) and against numpy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf.train.optimizer import FusedAdam


def _run(optimizer_cls, grads, amsgrad=False, eager=False, schedule=False):
  """Applies `grads` (steps × shapes) to fresh variables; returns final values and slots."""
  init = [np.linspace(-1, 1, np.prod(g.shape)).reshape(g.shape).astype(np.float32)
          for g in grads[0]]
  variables = [keras.Variable(x) for x in init]
  lr = (keras.optimizers.schedules.PiecewiseConstantDecay([1], [1e-2, 5e-3]) if schedule
        else 1e-2)
  opt = optimizer_cls(lr, beta_1=0.9, beta_2=0.99, epsilon=1e-8, amsgrad=amsgrad)
  opt.build(variables)

  def apply(step_grads):
    opt.apply([tf.convert_to_tensor(g) for g in step_grads], variables)

  apply_fn = apply if eager else tf.function(apply)
  for step_grads in grads:
    apply_fn(step_grads)
  return ([v.numpy() for v in variables] + [m.numpy() for m in opt._momentums]
          + [v.numpy() for v in opt._velocities])


def _grads(steps=3, seed=0):
  rng = np.random.default_rng(seed)
  return [[rng.normal(size=(3, 3, 2, 4)).astype(np.float32),
           rng.normal(size=(4,)).astype(np.float32)] for _ in range(steps)]


@pytest.mark.parametrize("eager", [False, True])
@pytest.mark.parametrize("schedule", [False, True])
def test_matches_keras_adam(eager, schedule):
  grads = _grads()
  want = _run(keras.optimizers.Adam, grads, eager=eager, schedule=schedule)
  got = _run(FusedAdam, grads, eager=eager, schedule=schedule)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_matches_numpy_closed_form():
  """α_t = lr·√(1 − β2^t)/(1 − β1^t), θ ← θ − α_t·m/(√v + ε) (Kingma & Ba 2015, §2)."""
  grads = _grads(steps=2, seed=1)
  got = _run(FusedAdam, grads)
  lr, b1, b2, eps = 1e-2, 0.9, 0.99, 1e-8
  for i in range(2):
    theta = np.linspace(-1, 1, grads[0][i].size).reshape(grads[0][i].shape).astype(np.float64)
    m = v = 0.0
    for t, step_grads in enumerate(grads, start=1):
      g = step_grads[i].astype(np.float64)
      m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
      theta = theta - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(got[i], theta, rtol=0, atol=1e-6)


def test_amsgrad_falls_back_to_keras():
  grads = _grads()
  want = _run(keras.optimizers.Adam, grads, amsgrad=True)
  got = _run(FusedAdam, grads, amsgrad=True)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_one_fused_op_per_variable_in_the_graph():
  variables = [keras.Variable(np.zeros((2, 2), np.float32)) for _ in range(3)]
  opt = FusedAdam(1e-3)
  opt.build(variables)
  graph = tf.function(lambda: opt.apply([tf.ones((2, 2))] * 3, variables)).get_concrete_function()
  types = [op.type for op in graph.graph.get_operations()]
  assert types.count("ResourceApplyAdam") == 3
  assert "Sqrt" not in types  # Keras' unfused path computes √v with a separate op.
