"""Keras Adam whose per-variable update is TF's one fused kernel (`ResourceApplyAdam`).

Same maths as `keras.optimizers.Adam` (Kingma & Ba 2015, §2 last paragraph, the ε-hat form Keras
implements): α_t = lr·√(1 − β2^t)/(1 − β1^t); m ← m + (g − m)(1 − β1); v ← v + (g² − v)(1 − β2);
θ ← θ − α_t·m/(√v + ε). TF's kernel (tensorflow/core/kernels/training_ops.cc, ApplyAdamNonCuda)
evaluates exactly these expressions.

Why: Keras 3 builds the update from ~15 Python-level ops per variable, and RRDBNet (nb 23) has 702
variables. Measured on the full PSNR step (batch 4, 128² HR, 2 threads, TF 2.21): that Python
tracing took ~60% of the step function's ~40 s trace and ~10k of its ~49k graph nodes (which
Grappler then spends seconds on, and which the executor runs as ~10 separate element-wise passes
over every weight, each with its own temporary buffer). One kernel per variable with the
step-dependent scalars computed once per `apply` removes all of that.

Where ε goes (`epsilon_form`):
  * "keras" (default, Keras/TF): θ ← θ − α_t·m/(√v + ε), ε added to √v BEFORE the bias
    correction; in torch's terms an effective ε of ε/√(1 − β2^t) (10× at step 1 with β2 0.99).
  * "torch" (torch.optim.Adam, torch/optim/adam.py `_single_tensor_adam`, which BasicSR uses):
    θ ← θ − lr/(1 − β1^t)·m/(√v/√(1 − β2^t) + ε), ε added AFTER the bias correction. Equal to
    the kernel's expression with ε_t = ε·√(1 − β2^t) (multiply numerator and denominator by
    √(1 − β2^t)), so this form passes ε_t to the same fused kernel at each step.
The two differ only while √v is not ≫ ε (the first few hundred steps of a fresh run).

Anything the fused path does not cover (amsgrad, non-float variables, another backend) falls
back to Keras' own `update_step` (the "keras" form only: "torch" refuses amsgrad and densifies
sparse gradients).
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Variable dtypes the CPU/GPU ResourceApplyAdam kernels are registered for.
_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
EPSILON_FORMS = ("keras", "torch")


@keras.saving.register_keras_serializable(package="esrgan_tf")
class FusedAdam(keras.optimizers.Adam):
  """`keras.optimizers.Adam` (same arguments, variables and checkpoints), fused update.

  Args:
    *args: `keras.optimizers.Adam`'s.
    epsilon_form: "keras" or "torch" (module docstring: where ε is added).
    **kwargs: `keras.optimizers.Adam`'s.

  Raises:
    ValueError: An unknown epsilon_form, or "torch" with amsgrad.
  """

  def __init__(self, *args, epsilon_form: str = "keras", **kwargs):
    super().__init__(*args, **kwargs)
    if epsilon_form not in EPSILON_FORMS:
      raise ValueError(f"epsilon_form must be one of {EPSILON_FORMS}, got {epsilon_form!r}")
    if epsilon_form == "torch" and self.amsgrad:
      raise ValueError("epsilon_form='torch' is implemented for Adam without amsgrad only")
    self.epsilon_form = epsilon_form
    # During one `apply`: β1^t, β2^t, lr, β1, β2, ε (or ε_t) as float32 tensors.
    self._step_scalars = None

  def get_config(self):
    return {**super().get_config(), "epsilon_form": self.epsilon_form}

  def _backend_update_step(self, grads, trainable_variables, learning_rate):
    # Once per apply (not once per variable as Keras' update_step): t = iterations + 1.
    step = tf.cast(self.iterations + 1, tf.float32)
    beta_1, beta_2 = (tf.constant(b, tf.float32) for b in (self.beta_1, self.beta_2))
    beta_2_power = tf.pow(beta_2, step)
    epsilon = tf.constant(self.epsilon, tf.float32)
    if self.epsilon_form == "torch":
      epsilon = epsilon * tf.sqrt(1.0 - beta_2_power)
    self._step_scalars = (tf.pow(beta_1, step), beta_2_power,
                          tf.cast(learning_rate, tf.float32), beta_1, beta_2, epsilon)
    try:
      super()._backend_update_step(grads, trainable_variables, learning_rate)
    finally:
      self._step_scalars = None

  def update_step(self, gradient, variable, learning_rate):
    dtype = tf.as_dtype(variable.dtype)
    if self.epsilon_form == "torch" and isinstance(gradient, tf.IndexedSlices):
      gradient = tf.convert_to_tensor(gradient)  # Sparse: dense for the fused kernel.
    if (self._step_scalars is None or self.amsgrad or dtype not in _FUSED_DTYPES
        or not isinstance(gradient, tf.Tensor)):
      if self.epsilon_form == "torch":
        raise ValueError(f"epsilon_form='torch' needs the fused path; variable {variable.path} "
                         f"has dtype {dtype.name}")
      return super().update_step(gradient, variable, learning_rate)
    index = self._get_variable_index(variable)
    m, v = self._momentums[index], self._velocities[index]
    beta_1_power, beta_2_power, lr, beta_1, beta_2, epsilon = (
        tf.cast(s, dtype) for s in self._step_scalars)  # No op for float32 variables.
    return tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=m.handle, v=v.handle, beta1_power=beta_1_power,
        beta2_power=beta_2_power, lr=lr, beta1=beta_1, beta2=beta_2, epsilon=epsilon,
        grad=tf.cast(gradient, dtype), use_locking=False)
