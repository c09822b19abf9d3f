"""Spectral normalization with PyTorch's semantics (`torch.nn.utils.spectral_norm`).

`keras.layers.SpectralNormalization` (keras/src/layers/normalization/spectral_normalization.py)
differs from torch in three ways that matter for BasicSR/Real-ESRGAN discriminators:
  * in training it *overwrites* the kernel variable with W/σ, so the trainable variable is the
    normalized kernel, not torch's `weight_orig`, and no gradient flows through σ;
  * at inference it applies the kernel as stored, with no σ at all;
  * it keeps only u, not v, so torch's eval-mode σ = uᵀ W v cannot be reproduced.
`SpectralNorm` subclasses it (so `isinstance(layer, keras.layers.SpectralNormalization)` holds)
but follows torch (torch/nn/utils/spectral_norm.py; Miyato et al. 2018, "Spectral Normalization
for Generative Adversarial Networks", Algorithm 1):
  * the wrapped layer's kernel is W (torch `weight_orig`), the trainable parameter;
  * u ∈ R^out and v ∈ R^fan_in are non-trainable (torch buffers `weight_u`, `weight_v`);
  * training: one power iteration without gradient, v ← normalize(Wᵀu), u ← normalize(W v),
    stored; then σ = uᵀ W v with gradient through W only; the layer applies W/σ;
  * inference: σ = uᵀ W v from the stored u, v (torch's eval mode), no update.
normalize(x) = x / max(‖x‖₂, eps) with eps = 1e-12 (torch's default).

Layout: torch flattens a conv weight (out, in, kh, kw) to the matrix (out, in·kh·kw). We keep
Keras' natural matrix w = kernel.reshape(kh·kw·in, out) = W_torchᵀ up to a permutation of its
rows, so v is stored in (kh, kw, in) order; `esrgan_tf.weights.discriminator` permutes torch's v
(in, kh, kw) on import and back on export. σ is the same number either way.
"""

from __future__ import annotations

import keras
from keras import ops
import numpy as np

# torch.nn.utils.spectral_norm(module, n_power_iterations=1, eps=1e-12).
TORCH_EPS = 1e-12


def _normalize(x, eps):
  return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x))), eps)


def _unit_normal(shape, dtype=None):
  """A random unit vector, as torch initialises u and v (normal(0, 1), then normalized)."""
  return _normalize(keras.random.normal(shape, dtype="float32"), TORCH_EPS)


@keras.saving.register_keras_serializable(package="esrgan_tf")
class SpectralNorm(keras.layers.SpectralNormalization):
  """Spectral normalization of a Conv2D or Dense kernel with torch's train/eval semantics.

  Args:
    layer: A `keras.layers.Conv2D` or `keras.layers.Dense` (activation is applied after the
      normalized kernel and bias, as the wrapped layer would).
    power_iterations: Power iterations per training call (torch's n_power_iterations, 1).
    eps: Normalization epsilon (torch's 1e-12).
    **kwargs: Passed to `keras.layers.Wrapper`.

  Raises:
    TypeError: If `layer` is not a Conv2D or Dense.
  """

  def __init__(self, layer, power_iterations: int = 1, eps: float = TORCH_EPS, **kwargs):
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      raise TypeError(f"SpectralNorm wraps Conv2D or Dense layers, got {type(layer).__name__}")
    super().__init__(layer, power_iterations=power_iterations, **kwargs)
    self.eps = float(eps)

  def build(self, input_shape):
    # Skip SpectralNormalization.build (it creates only u, with a different initialiser).
    keras.layers.Wrapper.build(self, input_shape)
    self.kernel = self.layer.kernel
    self.kernel_shape = tuple(self.kernel.shape)
    out = self.kernel_shape[-1]
    fan_in = int(np.prod(self.kernel_shape[:-1]))
    self.vector_u = self.add_weight(shape=(out,), initializer=_unit_normal, trainable=False,
                                    name="vector_u", autocast=False)
    self.vector_v = self.add_weight(shape=(fan_in,), initializer=_unit_normal, trainable=False,
                                    name="vector_v", autocast=False)

  def _matrix(self):
    """The kernel as Keras' (fan_in, out) matrix w, in float32."""
    return ops.reshape(ops.cast(self.kernel, "float32"), (-1, self.kernel_shape[-1]))

  def sigma(self, training: bool = False):
    """σ = uᵀ W v; in training after one power-iteration update of the stored u and v.

    Args:
      training: Update u and v first (torch's module.training).

    Returns:
      The scalar σ (float32), differentiable with respect to the kernel.
    """
    w = self._matrix()
    if training:
      w_const = ops.stop_gradient(w)
      u = ops.cast(self.vector_u, "float32")
      v = ops.cast(self.vector_v, "float32")
      for _ in range(self.power_iterations):
        v = _normalize(ops.matmul(w_const, u), self.eps)  # torch: v = normalize(W_tᵀ u)
        u = _normalize(ops.matmul(v, w_const), self.eps)  # torch: u = normalize(W_t v)
      self.vector_u.assign(ops.cast(u, self.vector_u.dtype))
      self.vector_v.assign(ops.cast(v, self.vector_v.dtype))
    u = ops.stop_gradient(ops.cast(self.vector_u, "float32"))
    v = ops.stop_gradient(ops.cast(self.vector_v, "float32"))
    return ops.sum(ops.matmul(v, w) * u)

  def normalized_weights(self):
    """(u, W/σ) from the stored vectors, without updating them (Keras' method, torch's eval)."""
    return self.vector_u.value, ops.cast(
        ops.reshape(self._matrix() / self.sigma(False), self.kernel_shape), self.kernel.dtype)

  def call(self, inputs, training=False):
    kernel = ops.cast(ops.cast(self.kernel, "float32") / self.sigma(bool(training)),
                      inputs.dtype)
    if isinstance(self.layer, keras.layers.Conv2D):
      outputs = self.layer.convolution_op(inputs, kernel)
    else:
      outputs = ops.matmul(inputs, kernel)
    if self.layer.use_bias:
      outputs = outputs + ops.cast(self.layer.bias, outputs.dtype)
    if self.layer.activation is not None:
      outputs = self.layer.activation(outputs)
    return outputs

  def get_config(self):
    return {**super().get_config(), "eps": self.eps}
