"""Tests for BasicSR discriminator checkpoints (esrgan_tf.weights load/save_discriminator)."""

import discriminator_reference as ref
import numpy as np
import pytest
import weights_fixtures as wf

from esrgan_tf import weights
from esrgan_tf.models import Discriminator, UNetDiscriminatorSN, checkpoints
from esrgan_tf.weights import CheckpointError, torch_pickle
from esrgan_tf.weights import discriminator as d_weights


def _f64(state):
  return {k: np.asarray(v, np.float64) for k, v in state.items()}


def test_unet_from_hand_built_torch_file_matches_numpy(tmp_path):
  # A netD file as BasicSR writes it: {"params": state_dict} (torch's pickle layout, written by
  # the independent fixture generator, not our writer), with DataParallel prefixes.
  state = ref.random_unet_state(num_feat=4, seed=7)
  path = tmp_path / "net_d.pth"
  wf.write_zip(path, {"params": wf.state_dict({f"module.{k}": v for k, v in state.items()})})
  d = checkpoints.load_discriminator(path)
  assert isinstance(d, UNetDiscriminatorSN) and (d.num_in_ch, d.num_feat) == (3, 4)
  x = np.random.default_rng(8).uniform(-1, 1, (1, 16, 16, 3))
  expected, _ = ref.unet_forward(_f64(state), x)
  np.testing.assert_allclose(d(x.astype(np.float32)).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_unet_round_trip_through_our_writer(tmp_path):
  state = ref.random_unet_state(num_feat=2, num_in_ch=1, seed=9)
  d = checkpoints.build_discriminator(d_weights.read_discriminator(state), skip_connection=False)
  assert d.skip_connection is False
  for suffix in (".pth", ".safetensors"):
    path = str(tmp_path / f"d{suffix}")
    weights.save_discriminator(d, path)
    back = weights.read_state_dict(path)
    if suffix == ".pth":  # torch's state_dict order: conv0, conv1.weight_orig/_u/_v, ...
      assert list(back) == list(state)
    assert set(back) == set(state)
    for key in state:
      np.testing.assert_array_equal(back[key], state[key], err_msg=key)
  # The .pth holds {"params": ...} only (netD files have no params_ema).
  with torch_pickle.read_torch_checkpoint(str(tmp_path / "d.pth")) as checkpoint:
    assert list(checkpoint.obj) == ["params"]
  reloaded = checkpoints.load_discriminator(str(tmp_path / "d.pth"), skip_connection=False)
  x = np.random.default_rng(0).uniform(size=(1, 8, 8, 1)).astype(np.float32)
  np.testing.assert_array_equal(reloaded(x).numpy(), d(x).numpy())


def test_parametrization_keys_are_accepted():
  # torch.nn.utils.parametrizations.spectral_norm names the same tensors differently.
  state = ref.random_unet_state(num_feat=2, seed=10)
  renamed = {}
  for key, value in state.items():
    key = key.replace(".weight_orig", ".parametrizations.weight.original")
    key = key.replace(".weight_u", ".parametrizations.weight.0._u")
    renamed[key.replace(".weight_v", ".parametrizations.weight.0._v")] = value
  d = checkpoints.build_discriminator(d_weights.read_discriminator(renamed))
  np.testing.assert_array_equal(d_weights.discriminator_state(d)["conv2.weight_u"],
                                state["conv2.weight_u"])


@pytest.mark.parametrize("training", [False, True])
def test_vgg_style_from_hand_built_file_matches_numpy(tmp_path, training):
  # BasicSR VGGStyleDiscriminator(3, num_feat=2, input_size=128): 5 stages; BN buffers include
  # the int64 num_batches_tracked torch writes.
  state = ref.random_vgg_state(num_feat=2, num_stages=5, seed=11)
  file_state = dict(state)
  for key in [k for k in state if k.endswith(".running_var")]:
    file_state[key.replace("running_var", "num_batches_tracked")] = np.array(7, np.int64)
  path = tmp_path / "vgg_d.pth"
  wf.write_zip(path, {"params": wf.state_dict(file_state)})
  d = checkpoints.load_discriminator(path)
  assert isinstance(d, Discriminator)
  assert (d.type, d.num_features, d.input_size, d.spectral_norm) == ("vgg", 2, 128, False)
  x = np.random.default_rng(12).uniform(-1, 1, (3, 128, 128, 3))
  expected = ref.vgg_forward(_f64(state), x, num_stages=5, training=training)
  out = d(x.astype(np.float32), training=training).numpy()
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_vgg_style_round_trip(tmp_path):
  state = ref.random_vgg_state(num_feat=2, num_stages=5, seed=13)
  d = checkpoints.build_discriminator(d_weights.read_discriminator(state))
  path = str(tmp_path / "vgg.safetensors")
  weights.save_discriminator(d, path)
  back = weights.read_state_dict(path)
  assert set(back) == set(state)
  for key in state:
    np.testing.assert_array_equal(back[key], state[key], err_msg=key)


def test_refuses_wrong_layouts_and_targets(tmp_path):
  rrdb = tmp_path / "rrdb.pth"
  wf.write_zip(rrdb, {"params_ema": wf.state_dict(wf.random_state())})
  with pytest.raises(CheckpointError, match=r"rrdb\.pth: not a BasicSR discriminator"):
    checkpoints.load_discriminator(rrdb)

  state = ref.random_unet_state(num_feat=2, seed=14)
  no_sn = {k.replace("weight_orig", "weight"): v for k, v in state.items()
           if not k.endswith(("weight_u", "weight_v"))}
  with pytest.raises(CheckpointError, match="spectral norm was removed"):
    checkpoints.build_discriminator(d_weights.read_discriminator(no_sn))
  missing = {k: v for k, v in state.items() if k != "conv5.weight_v"}
  with pytest.raises(CheckpointError, match=r"missing \['conv5\.weight_v'\]"):
    checkpoints.build_discriminator(d_weights.read_discriminator(missing))
  bad_shape = dict(state, **{"conv3.weight_u": state["conv3.weight_u"][:-1]})
  with pytest.raises(CheckpointError, match=r"conv3\.weight_u: shape \(15,\), expected \(16,\)"):
    checkpoints.build_discriminator(d_weights.read_discriminator(bad_shape))
  bad_value = dict(state, **{"conv9.bias": np.array([np.nan], np.float32)})
  with pytest.raises(CheckpointError, match="conv9.bias contains NaN"):
    checkpoints.build_discriminator(d_weights.read_discriminator(bad_value))

  vgg = ref.random_vgg_state(num_feat=2, num_stages=3, seed=15)
  with pytest.raises(CheckpointError, match="3 stages; BasicSR has 5"):
    checkpoints.build_discriminator(d_weights.read_discriminator(vgg))

  d = UNetDiscriminatorSN(3, 2)
  d.build()
  target = tmp_path / "d.pth"
  target.write_bytes(b"keep")
  with pytest.raises(CheckpointError, match="exists"):
    weights.save_discriminator(d, str(target))
  assert target.read_bytes() == b"keep"
  with pytest.raises(CheckpointError, match="written as .pth or .safetensors"):
    weights.save_discriminator(d, str(tmp_path / "d.keras"))
  patch = Discriminator("patch", 2, num_stages=2)
  patch.build((None, 16, 16, 3))
  with pytest.raises(CheckpointError, match="type='patch'.*no BasicSR counterpart"):
    weights.save_discriminator(patch, str(tmp_path / "p.pth"))
  assert not (tmp_path / "p.pth").exists()
