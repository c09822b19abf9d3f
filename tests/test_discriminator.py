"""Tests for esrgan_tf.models.discriminator."""

import discriminator_reference as ref
import keras
import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf.models.discriminator import Discriminator


def test_vgg_parameter_count_matches_basicsr_vgg128():
  # BasicSR VGGStyleDiscriminator(num_in_ch=3, num_feat=64), 128×128 input. Per stage i with
  # f = 64·min(2^i, 8) and c the input channels: 3×3 conv 9·c·f (+f bias at i = 0 only),
  # 4×4 stride-2 conv 16·f², a BN after each conv except conv0_0 (2f trainable + 2f moving).
  #   stage0 (c=3,f=64):   1,792 + 65,536 + 256               =    67,584
  #   stage1 (64→128):    73,728 + 262,144 + 2·512            =   336,896
  #   stage2 (128→256):  294,912 + 1,048,576 + 2·1,024        = 1,345,536
  #   stage3 (256→512): 1,179,648 + 4,194,304 + 2·2,048       = 5,378,048
  #   stage4 (512→512): 2,359,296 + 4,194,304 + 2·2,048       = 6,557,696
  #   linear1 512·4·4·100 + 100 = 819,300; linear2 101.   Total  14,505,161
  # of which BN moving stats 2·(64 + 2·(128 + 256 + 512 + 512)) = 5,760 are torch buffers:
  # trainable 14,499,401, BasicSR's parameter count.
  d = Discriminator("vgg", 64, input_size=128)
  d.build((None, 128, 128, 3))
  assert d.count_params() == 14_505_161
  assert sum(int(np.prod(w.shape)) for w in d.trainable_weights) == 14_499_401


def test_vgg_logits_shape_and_input_size_validation():
  d = Discriminator("vgg", 4, input_size=32)
  out = d(tf.random.uniform([3, 32, 32, 3]), training=True)
  assert out.shape == (3, 1) and out.dtype == tf.float32
  with pytest.raises(ValueError, match=r"takes 32×32 inputs"):
    d(tf.zeros([1, 64, 64, 3]))
  for bad in (0, 4, 48, 100):
    with pytest.raises(ValueError, match="input_size must be 4·2\\^k"):
      Discriminator("vgg", 4, input_size=bad)


def test_logits_are_unbounded():
  # A sigmoid head would confine outputs to (0, 1); logits of a random net on large inputs are not.
  d = Discriminator("patch", 4, num_stages=2)
  out = d(tf.random.uniform([8, 16, 16, 3], -50.0, 50.0)).numpy()
  assert (out < 0).any() or (out > 1).any()


def test_patch_takes_any_size_and_spectral_norm_wraps_layers():
  d = Discriminator("patch", 4, num_stages=2, spectral_norm=True)
  for shape in ([2, 24, 40, 3], [1, 17, 9, 3]):
    assert d(tf.random.uniform(shape), training=True).shape == (shape[0], 1)
  wrapped = [l for l in d._flatten_layers() if isinstance(l, keras.layers.SpectralNormalization)]
  assert len(wrapped) == 2 * 2 + 1  # two convs per stage + the 1×1 head.
  assert not any(isinstance(l, keras.layers.BatchNormalization) for l in d._flatten_layers())


def test_bad_arguments():
  with pytest.raises(ValueError, match="type must be one of"):
    Discriminator("unet")
  with pytest.raises(ValueError, match="num_features"):
    Discriminator("patch", 0)
  with pytest.raises(ValueError, match="expected \\[N, H, W, 3\\]"):
    Discriminator("patch", 4)(tf.zeros([1, 8, 8, 1]))


# --- float64 numpy forward passes (tests/discriminator_reference.py) ---------------------------


def _set_conv(layer, weight, bias=None):
  """Assigns a torch-layout (out, in, kh, kw) / linear (out, in) weight to a Keras layer."""
  if weight.ndim == 4:
    layer.kernel.assign(weight.transpose(2, 3, 1, 0))
  else:
    layer.kernel.assign(weight.T)
  if bias is not None:
    layer.bias.assign(bias)


def _set_sn(wrapper, weight, u, v, bias=None):
  _set_conv(wrapper.layer, weight, bias)
  wrapper.vector_u.assign(u)
  if weight.ndim == 4:  # torch's v is in (in, kh, kw) order, ours in (kh, kw, in).
    v = v.reshape(weight.shape[1:]).transpose(1, 2, 0).reshape(-1)
  wrapper.vector_v.assign(v)


def _set_bn(bn, state, prefix):
  bn.gamma.assign(state[f"{prefix}.weight"])
  bn.beta.assign(state[f"{prefix}.bias"])
  bn.moving_mean.assign(state[f"{prefix}.running_mean"])
  bn.moving_variance.assign(state[f"{prefix}.running_var"])


def _f64(state):
  return {k: np.asarray(v, np.float64) for k, v in state.items()}


def _vgg_from_state(state, num_stages, size):
  d = Discriminator("vgg", 2, input_size=size)
  d.build((None, size, size, 3))
  assert d.num_stages == num_stages
  for i, (conv0, bn0, conv1, bn1) in enumerate(d.stage_layers):
    _set_conv(conv0, state[f"conv{i}_0.weight"], state.get(f"conv{i}_0.bias"))
    _set_conv(conv1, state[f"conv{i}_1.weight"])
    if bn0 is not None:
      _set_bn(bn0, state, f"bn{i}_0")
    _set_bn(bn1, state, f"bn{i}_1")
  # linear1: torch's input order is (C, 4, 4), Keras Flatten's (4, 4, C).
  w1 = state["linear1.weight"]
  w1 = w1.reshape(100, -1, 4, 4).transpose(0, 2, 3, 1).reshape(100, -1)
  _set_conv(d.head[0], w1, state["linear1.bias"])
  _set_conv(d.head[1], state["linear2.weight"], state["linear2.bias"])
  return d


@pytest.mark.parametrize("training", [False, True])
def test_vgg_matches_numpy_batch_norm_in_both_modes(training):
  state = ref.random_vgg_state(num_feat=2, num_stages=2, seed=21)
  d = _vgg_from_state(state, num_stages=2, size=16)
  x = np.random.default_rng(22).uniform(-1, 1, (4, 16, 16, 3))
  expected = ref.vgg_forward(_f64(state), x, num_stages=2, training=training)
  out = d(x.astype(np.float32), training=training).numpy()
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_batch_norm_moving_statistics_use_torch_momentum():
  # torch BatchNorm2d(momentum=0.1): running_mean ← 0.9·running_mean + 0.1·batch mean.
  state = ref.random_vgg_state(num_feat=2, num_stages=2, seed=23)
  d = _vgg_from_state(state, num_stages=2, size=16)
  x = np.random.default_rng(24).uniform(-1, 1, (4, 16, 16, 3))
  d(x.astype(np.float32), training=True)
  pre_bn = ref.conv2d(ref.lrelu(ref.conv2d(x, state["conv0_0.weight"].astype(np.float64),
                                           state["conv0_0.bias"])),
                      state["conv0_1.weight"].astype(np.float64), stride=2)
  expected = 0.9 * state["bn0_1.running_mean"] + 0.1 * pre_bn.mean(axis=(0, 1, 2))
  np.testing.assert_allclose(d.stage_layers[0][3].moving_mean.numpy(), expected, rtol=1e-5,
                             atol=1e-6)
  assert d.stage_layers[0][3].epsilon == ref.TORCH_BN_EPS


def _patch_forward(state, x, num_stages, spectral_norm, training):
  """The patch discriminator: the vgg stages, global average pool, 1×1 conv (our design)."""
  feat = x
  for i in range(num_stages):
    for j, stride in ((0, 1), (1, 2)):
      name = f"conv{i}_{j}"
      weight = state[f"{name}.weight"]
      if spectral_norm:
        weight = ref.sn_weight(weight, state[f"{name}.weight_u"], state[f"{name}.weight_v"])
      feat = ref.conv2d(feat, weight, state.get(f"{name}.bias"), stride=stride)
      if not spectral_norm and not (i == 0 and j == 0):
        stats = ({} if training else {"mean": state[f"bn{i}_{j}.running_mean"],
                                      "var": state[f"bn{i}_{j}.running_var"]})
        feat = ref.batch_norm(feat, state[f"bn{i}_{j}.weight"], state[f"bn{i}_{j}.bias"],
                              **stats)
      feat = ref.lrelu(feat)
  pooled = feat.mean(axis=(1, 2))
  head = state["conv_out.weight"]
  if spectral_norm:
    head = ref.sn_weight(head, state["conv_out.weight_u"], state["conv_out.weight_v"])
  return pooled @ head[:, :, 0, 0].T + state["conv_out.bias"]


@pytest.mark.parametrize("spectral_norm,training", [(False, False), (False, True),
                                                    (True, False)])
def test_patch_matches_numpy(spectral_norm, training):
  rng = np.random.default_rng(25)
  nf, num_stages = 2, 2
  d = Discriminator("patch", nf, num_stages=num_stages, spectral_norm=spectral_norm)
  d.build((None, None, None, 3))
  state, in_ch = {}, 3
  for i, layers in enumerate(d.stage_layers):
    out_ch = nf * 2 ** i
    for j, k in ((0, 3), (1, 4)):
      name, conv, bn = f"conv{i}_{j}", layers[2 * j], layers[2 * j + 1]
      weight = rng.normal(0, 0.3, (out_ch, in_ch, k, k))
      bias = rng.normal(0, 0.1, out_ch) if (spectral_norm or (i, j) == (0, 0)) else None
      state[f"{name}.weight"] = weight
      if bias is not None:
        state[f"{name}.bias"] = bias
      if spectral_norm:
        u, v = ref.power_iteration(weight, ref.normalize(rng.normal(size=out_ch)))
        state[f"{name}.weight_u"], state[f"{name}.weight_v"] = u, v
        _set_sn(conv, weight, u, v, bias)
      else:
        _set_conv(conv, weight, bias)
      if bn is not None:
        prefix = f"bn{i}_{j}"
        state.update({f"{prefix}.weight": rng.uniform(0.5, 1.5, out_ch),
                      f"{prefix}.bias": rng.normal(0, 0.1, out_ch),
                      f"{prefix}.running_mean": rng.normal(0, 0.5, out_ch),
                      f"{prefix}.running_var": rng.uniform(0.5, 2, out_ch)})
        _set_bn(bn, state, prefix)
      in_ch = out_ch
  head = rng.normal(0, 0.3, (1, in_ch, 1, 1))
  state["conv_out.weight"], state["conv_out.bias"] = head, rng.normal(0, 0.1, 1)
  if spectral_norm:
    u, v = ref.power_iteration(head, np.array([1.0]))
    state["conv_out.weight_u"], state["conv_out.weight_v"] = u, v
    _set_sn(d.head[0], head, u, v, state["conv_out.bias"])
  else:
    _set_conv(d.head[0], head, state["conv_out.bias"])
  x = rng.uniform(-1, 1, (3, 16, 16, 3))
  expected = _patch_forward(state, x, num_stages, spectral_norm, training)
  out = d(x.astype(np.float32), training=training).numpy()
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_spectral_norm_updates_u_v_only_in_training_calls():
  # Discriminator.call passes `training` on implicitly (Keras call context): one torch power
  # iteration per training call, none at inference.
  d = Discriminator("patch", 2, num_stages=1, spectral_norm=True)
  d.build((None, None, None, 3))
  wrapper = d.stage_layers[0][2]  # conv0_1, 4×4: kernel (4, 4, 2, 2).
  kernel = wrapper.layer.kernel.numpy().astype(np.float64)
  weight = kernel.transpose(3, 2, 0, 1)  # torch OIHW
  u0 = wrapper.vector_u.numpy().astype(np.float64)
  x = np.random.default_rng(26).uniform(size=(1, 8, 8, 3)).astype(np.float32)
  d(x, training=False)
  np.testing.assert_array_equal(wrapper.vector_u.numpy(), u0.astype(np.float32))
  d(x, training=True)
  u1, v1 = ref.power_iteration(weight, u0)
  np.testing.assert_allclose(wrapper.vector_u.numpy(), u1, atol=1e-6)
  np.testing.assert_allclose(  # Stored in (kh, kw, in) order.
      wrapper.vector_v.numpy(), v1.reshape(2, 4, 4).transpose(1, 2, 0).ravel(), atol=1e-6)
