"""Float64 numpy forward passes of the discriminators, written from the PyTorch definitions.

Independent of the Keras code: weights are in torch layout (conv (out, in, kh, kw), linear
(out, in), spectral norm's u (out,) and v (in·kh·kw,) in torch's flattening order), images NHWC.
Sources: BasicSR basicsr/archs/discriminator_arch.py (VGGStyleDiscriminator), Real-ESRGAN
realesrgan/archs/discriminator_arch.py (UNetDiscriminatorSN), torch/nn/utils/spectral_norm.py,
torch.nn.BatchNorm2d, torch.nn.functional.interpolate (bilinear, align_corners=False).
"""

from __future__ import annotations

import numpy as np

SLOPE = 0.2
TORCH_BN_EPS = 1e-5


def conv2d(x, weight, bias=None, stride=1, padding=1):
  """torch.nn.functional.conv2d with zero padding, on NHWC float64 input."""
  out_ch, in_ch, kh, kw = weight.shape
  assert x.shape[-1] == in_ch, (x.shape, weight.shape)
  xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  h_out = (xp.shape[1] - kh) // stride + 1
  w_out = (xp.shape[2] - kw) // stride + 1
  out = np.zeros((x.shape[0], h_out, w_out, out_ch))
  for i in range(kh):
    for j in range(kw):
      patch = xp[:, i:i + stride * (h_out - 1) + 1:stride, j:j + stride * (w_out - 1) + 1:stride]
      out += patch @ weight[:, :, i, j].T
  return out if bias is None else out + bias


def lrelu(x):
  return np.where(x >= 0, x, SLOPE * x)


def _upsample_axis(x, axis):
  n = x.shape[axis]
  dst = np.arange(2 * n)
  # torch area_pixel_compute_source_index: (dst + 0.5) / scale − 0.5, clamped at 0 for linear.
  src = np.maximum((dst + 0.5) / 2 - 0.5, 0.0)
  i0 = np.floor(src).astype(int)
  i1 = np.minimum(i0 + 1, n - 1)
  lam = src - i0
  shape = [1] * x.ndim
  shape[axis] = 2 * n
  lam = lam.reshape(shape)
  return (1 - lam) * np.take(x, i0, axis=axis) + lam * np.take(x, i1, axis=axis)


def upsample_bilinear_x2(x):
  """F.interpolate(scale_factor=2, mode='bilinear', align_corners=False), NHWC (separable)."""
  return _upsample_axis(_upsample_axis(x, 1), 2)


def normalize(x, eps=1e-12):
  return x / max(np.linalg.norm(x), eps)


def power_iteration(weight, u):
  """One torch power iteration: v = normalize(Wᵀu), u = normalize(W v), W = weight (out, -1)."""
  w = weight.reshape(weight.shape[0], -1)
  v = normalize(w.T @ u)
  u = normalize(w @ v)
  return u, v


def sn_weight(weight, u, v):
  """weight / σ with σ = uᵀ W v (torch's eval mode)."""
  sigma = u @ weight.reshape(weight.shape[0], -1) @ v
  return weight / sigma


def batch_norm(x, gamma, beta, mean=None, var=None, eps=TORCH_BN_EPS):
  """BatchNorm2d: with mean/var given (eval), else batch statistics (train, biased variance)."""
  if mean is None:
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))
  return (x - mean) / np.sqrt(var + eps) * gamma + beta


def unet_forward(state, x, skip_connection=True, training=False):
  """UNetDiscriminatorSN on NHWC x; state holds convN.weight[_orig/_u/_v] (torch names).

  In training, u and v are first updated by one power iteration (returned in the new state).

  Returns:
    (logits [N, H, W, 1], state with the u and v used).
  """
  state = dict(state)

  def sn(name):
    weight, u = state[f"{name}.weight_orig"], state[f"{name}.weight_u"]
    v = state[f"{name}.weight_v"]
    if training:
      u, v = power_iteration(weight, u)
      state[f"{name}.weight_u"], state[f"{name}.weight_v"] = u, v
    return sn_weight(weight, u, v)

  x0 = lrelu(conv2d(x, state["conv0.weight"], state["conv0.bias"]))
  x1 = lrelu(conv2d(x0, sn("conv1"), stride=2))
  x2 = lrelu(conv2d(x1, sn("conv2"), stride=2))
  x3 = lrelu(conv2d(x2, sn("conv3"), stride=2))
  x4 = lrelu(conv2d(upsample_bilinear_x2(x3), sn("conv4")))
  if skip_connection:
    x4 = x4 + x2
  x5 = lrelu(conv2d(upsample_bilinear_x2(x4), sn("conv5")))
  if skip_connection:
    x5 = x5 + x1
  x6 = lrelu(conv2d(upsample_bilinear_x2(x5), sn("conv6")))
  if skip_connection:
    x6 = x6 + x0
  out = lrelu(conv2d(x6, sn("conv7")))
  out = lrelu(conv2d(out, sn("conv8")))
  return conv2d(out, state["conv9.weight"], state["conv9.bias"]), state


def random_unet_state(num_feat=4, num_in_ch=3, seed=0):
  """A torch-layout UNetDiscriminatorSN state dict: random weights, unit u and v."""
  rng = np.random.default_rng(seed)
  nf = num_feat
  shapes = {"conv1": (2 * nf, nf, 4), "conv2": (4 * nf, 2 * nf, 4), "conv3": (8 * nf, 4 * nf, 4),
            "conv4": (4 * nf, 8 * nf, 3), "conv5": (2 * nf, 4 * nf, 3), "conv6": (nf, 2 * nf, 3),
            "conv7": (nf, nf, 3), "conv8": (nf, nf, 3)}
  state = {"conv0.weight": rng.normal(0, 0.3, (nf, num_in_ch, 3, 3)),
           "conv0.bias": rng.normal(0, 0.1, (nf,))}
  for name, (out_ch, in_ch, k) in shapes.items():
    weight = rng.normal(0, 0.3, (out_ch, in_ch, k, k))
    # Two power iterations from a random u, as after a little training: σ near the top singular
    # value but not converged (a training call still changes it visibly).
    u, v = power_iteration(weight, normalize(rng.normal(size=out_ch)))
    u, v = power_iteration(weight, u)
    state[f"{name}.weight_orig"], state[f"{name}.weight_u"], state[f"{name}.weight_v"] = (
        weight, u, v)
  state["conv9.weight"] = rng.normal(0, 0.3, (1, nf, 3, 3))
  state["conv9.bias"] = rng.normal(0, 0.1, (1,))
  return {k: v.astype(np.float32) for k, v in state.items()}


def vgg_forward(state, x, num_stages, training=False):
  """VGGStyleDiscriminator (BasicSR names conv{i}_{j}, bn{i}_{j}, linear1/2) on NHWC x.

  Generalised as our `Discriminator("vgg")` is: `num_stages` stages (5 for 128², 6 for 256²).
  """
  feat = x
  for i in range(num_stages):
    for j, stride in ((0, 1), (1, 2)):
      name = f"conv{i}_{j}"
      feat = conv2d(feat, state[f"{name}.weight"], state.get(f"{name}.bias"), stride=stride,
                    padding=1)
      bn = f"bn{i}_{j}"
      if f"{bn}.weight" in state:
        stats = ({} if training else
                 {"mean": state[f"{bn}.running_mean"], "var": state[f"{bn}.running_var"]})
        feat = batch_norm(feat, state[f"{bn}.weight"], state[f"{bn}.bias"], **stats)
      feat = lrelu(feat)
  # torch flattens NCHW: (C, H, W) order.
  flat = feat.transpose(0, 3, 1, 2).reshape(feat.shape[0], -1)
  hidden = lrelu(flat @ state["linear1.weight"].T + state["linear1.bias"])
  return hidden @ state["linear2.weight"].T + state["linear2.bias"]


def random_vgg_state(num_feat=2, num_stages=2, num_in_ch=3, seed=0):
  """A torch-layout VGGStyleDiscriminator state dict (random weights and BN statistics)."""
  rng = np.random.default_rng(seed)
  state, in_ch = {}, num_in_ch
  for i in range(num_stages):
    out_ch = num_feat * min(2 ** i, 8)
    for j, k in ((0, 3), (1, 4)):
      state[f"conv{i}_{j}.weight"] = rng.normal(0, 0.3, (out_ch, in_ch, k, k))
      if i == 0 and j == 0:
        state["conv0_0.bias"] = rng.normal(0, 0.1, (out_ch,))
      else:
        state[f"bn{i}_{j}.weight"] = rng.uniform(0.5, 1.5, out_ch)
        state[f"bn{i}_{j}.bias"] = rng.normal(0, 0.1, out_ch)
        state[f"bn{i}_{j}.running_mean"] = rng.normal(0, 0.5, out_ch)
        state[f"bn{i}_{j}.running_var"] = rng.uniform(0.5, 2.0, out_ch)
      in_ch = out_ch
  state["linear1.weight"] = rng.normal(0, 0.1, (100, in_ch * 16))
  state["linear1.bias"] = rng.normal(0, 0.1, (100,))
  state["linear2.weight"] = rng.normal(0, 0.1, (1, 100))
  state["linear2.bias"] = rng.normal(0, 0.1, (1,))
  return {k: v.astype(np.float32) for k, v in state.items()}
