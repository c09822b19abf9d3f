"""MultiHeadRRDBNet: one trunk, N heads; a one-head model is RRDBNet; serialisation; blending."""

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf import models
from esrgan_tf.core.errors import ModelError
from esrgan_tf.inference import engine as engine_lib
from esrgan_tf.models import MultiHeadRRDBNet, RRDBNet, multihead

TINY = dict(num_features=8, num_blocks=1, growth_channels=4)
X2X4X8 = [{"name": "x2", "scale": 2}, {"name": "x4", "scale": 4}, {"name": "x8", "scale": 8}]


def _image(h=7, w=9, n=1, seed=0):
  return np.random.default_rng(seed).random((n, h, w, 3), dtype=np.float32)


def _multi(heads=X2X4X8, seed=1, **kwargs):
  keras.utils.set_random_seed(seed)
  model = MultiHeadRRDBNet(**{**TINY, **kwargs}, heads=heads)
  model.build()
  return model


def _rrdbnet(seed=2, **kwargs):
  keras.utils.set_random_seed(seed)
  model = RRDBNet(**{**TINY, **kwargs})
  model.build()
  return model


# --- a one-head model is RRDBNet ------------------------------------------------------------------

@pytest.mark.parametrize("arch", [
    dict(scale=4, upsampler="nearest"), dict(scale=4, upsampler="depth_to_space"),
    dict(scale=2, upsampler="nearest"), dict(scale=8, upsampler="depth_to_space"),
    dict(scale=2, upsampler="nearest", input_unshuffle=2),  # RealESRGAN_x2plus' layout
    dict(scale=1, upsampler="nearest", input_unshuffle=4),
])
def test_one_head_model_is_rrdbnet(arch):
  single = _rrdbnet(**arch)
  extra = {"input_unshuffle": arch["input_unshuffle"]} if "input_unshuffle" in arch else {}
  multi = _multi(heads=[{"name": "only", "scale": arch["scale"]}], upsampler=arch["upsampler"],
                 **extra)
  # Same variables: count, shapes and order; the paths differ only by the head's folder.
  assert multi.count_params() == single.count_params()
  assert [v.shape for v in multi.weights] == [v.shape for v in single.weights]
  strip = lambda v: v.path.split("/", 1)[1].replace("only/", "")
  assert [strip(v) for v in multi.weights] == [strip(v) for v in single.weights]
  assert list(multi.head_convs("only")) == list(single.named_convs())
  assert multi.head_arch("only") == single.arch_config()
  # Same outputs: RRDBNet's weights, copied by position, give its output exactly.
  multi.set_weights(single.get_weights())
  x = _image(9, 11)  # odd sizes: the unshuffled layouts pad and crop
  expected = single(x).numpy()
  out = multi(x)
  assert list(out) == ["only"]
  np.testing.assert_array_equal(out["only"].numpy(), expected)
  np.testing.assert_array_equal(multi.head_fn("only")(x).numpy(), expected)


def test_rrdbnet_variables_and_names_unchanged_by_the_refactor():
  # The names the published weights and workdir checkpoints are keyed by (a 2-block x8 net).
  model = _rrdbnet(scale=8, upsampler="nearest", num_blocks=2)
  paths = [v.path for v in model.weights]
  assert paths[:4] == ["rrdbnet/conv_first/kernel", "rrdbnet/conv_first/bias",
                       "rrdbnet/body.0/rdb1/conv1/kernel", "rrdbnet/body.0/rdb1/conv1/bias"]
  assert paths[-12:] == [f"rrdbnet/{c}/{k}" for c in ("conv_body", "conv_up1", "conv_up2",
                                                      "conv_up3", "conv_hr", "conv_last")
                         for k in ("kernel", "bias")]
  assert len(paths) == 2 * (1 + 2 * 15 + 6)


# --- several heads ------------------------------------------------------------------------------

def test_heads_share_the_trunk_and_match_their_single_models():
  model = _multi()
  x = _image()
  out = model(x)
  assert {k: tuple(v.shape) for k, v in out.items()} == {
      "x2": (1, 14, 18, 3), "x4": (1, 28, 36, 3), "x8": (1, 56, 72, 3)}
  assert model.scales == {"x2": 2, "x4": 4, "x8": 8} and model.default_head == "x2"
  assert model.scale == 2
  # Each head equals an RRDBNet holding the trunk and that head (independent forward).
  for head in model.head_names:
    single = model.to_rrdbnet(head)
    np.testing.assert_allclose(out[head].numpy(), single(x).numpy(), rtol=0, atol=1e-6)
  # The trunk is shared: trunk weights are stored once, each head adds only its own convs.
  trunk = sum(np.prod(v.shape) for v in model.weights if v.path.split("/")[1] in
              ("conv_first", "conv_body") or v.path.split("/")[1].startswith("body."))
  heads = sum(model.to_rrdbnet(h).count_params() - trunk for h in model.head_names)
  assert model.count_params() == trunk + heads


def test_asking_for_one_head_runs_only_that_head():
  model = _multi()
  calls = {name: 0 for name in model.head_names}
  for name, head in zip(model.head_names, model.output_heads):
    original = head.conv_last.call

    def counted(x, _name=name, _original=original):
      calls[_name] += 1
      return _original(x)

    head.conv_last.call = counted
  x = _image()
  x4 = model.head_fn("x4")(x)
  assert calls == {"x2": 0, "x4": 1, "x8": 0}
  subset = model(x, heads=("x8", "x2"))
  assert list(subset) == ["x8", "x2"] and calls == {"x2": 1, "x4": 1, "x8": 1}
  # In a traced function too: the graph holds one head's convs.
  graph = tf.function(model.head_fn("x8")).get_concrete_function(
      tf.TensorSpec([1, None, None, 3], tf.float32)).graph
  assert calls["x8"] == 2 and calls["x2"] == 1 and calls["x4"] == 1
  assert len([op for op in graph.get_operations() if op.type == "Conv2D"]) == 1 + 15 + 1 + 3 + 2
  np.testing.assert_array_equal(x4.numpy(), model(x)["x4"].numpy())


def test_two_heads_of_one_scale_and_their_blend():
  model = _multi(heads=[{"name": "psnr", "scale": 4}, {"name": "gan", "scale": 4}],
                 upsampler="nearest")
  x = _image()
  out = model(x)
  psnr, gan = out["psnr"].numpy(), out["gan"].numpy()
  assert np.abs(psnr - gan).mean() > 1e-3  # two different heads
  blend = multihead.parse_head_blend("psnr:0.3, gan:0.7")
  assert blend.weights == (("psnr", 0.3), ("gan", 0.7)) and blend.describe() == "psnr:0.3,gan:0.7"
  np.testing.assert_allclose(model.blend_fn(blend)(x).numpy(), 0.3 * psnr + 0.7 * gan,
                             rtol=0, atol=1e-6)


@pytest.mark.parametrize("text, message", [
    ("psnr:0.3", "at least two heads"),
    ("psnr:0.5,psnr:0.5", "named twice"),
    ("psnr:0.3,gan:0.6", "sum to 1, they sum to 0.9"),
    ("psnr:-0.5,gan:1.5", r"in \[0, 1\]"),
    ("psnr=0.3,gan=0.7", "HEAD:WEIGHT"),
    ("psnr:abc,gan:0.7", "HEAD:WEIGHT"),
])
def test_bad_blend_text(text, message):
  with pytest.raises(ValueError, match=message):
    multihead.parse_head_blend(text)


def test_blend_needs_heads_of_one_scale():
  model = _multi()
  with pytest.raises(ValueError, match=r"share a scale, they are x2 ×2, x4 ×4"):
    model.blend_fn(multihead.parse_head_blend("x2:0.5,x4:0.5"))
  with pytest.raises(ValueError, match=r"no head 'gan'; its heads are \['x2', 'x4', 'x8'\]"):
    model.blend_fn(multihead.parse_head_blend("x2:0.5,gan:0.5"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(heads=[]), "non-empty list"),
    (dict(heads="x4"), "non-empty list"),
    (dict(heads=[{"name": "x4"}]), "needs name and scale"),
    (dict(heads=[{"name": "x4", "scale": 4, "size": 3}]), r"unknown keys \['size'\]"),
    (dict(heads=[{"name": "X4", "scale": 4}]), "lower-case identifier"),
    (dict(heads=[{"name": "x4.a", "scale": 4}]), "lower-case identifier"),
    (dict(heads=[{"name": "body", "scale": 4}]), "reserved"),
    (dict(heads=[{"name": "x4_float", "scale": 4}]), "reserved"),
    (dict(heads=[{"name": "a", "scale": 4}, {"name": "a", "scale": 2}]), "used twice"),
    (dict(heads=[{"name": "a", "scale": 3}]), r"head 'a': scale must be one of"),
    (dict(heads=[{"name": "a", "scale": 4, "upsampler": "bilinear"}]), "head 'a': upsampler"),
    (dict(heads=[{"name": "a", "scale": 8}], input_unshuffle=2), "trunk upscaling ×16"),
    (dict(heads=[{"name": "a", "scale": 4}], default_head="b"), "default_head 'b' is not"),
    (dict(heads=[{"name": "a", "scale": 4}], num_blocks=0), "num_blocks must be a positive"),
])
def test_invalid_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    MultiHeadRRDBNet(**{**TINY, **kwargs})


# --- serialisation ------------------------------------------------------------------------------

def test_config_round_trip_and_keras_file(tmp_path):
  model = _multi(heads=[{"name": "x2", "scale": 2}, {"name": "x4", "scale": 4,
                                                       "upsampler": "nearest"}])
  config = model.get_config()
  assert config["heads"] == [{"name": "x2", "scale": 2, "upsampler": "depth_to_space"},
                             {"name": "x4", "scale": 4, "upsampler": "nearest"}]
  assert config["default_head"] == "x2"
  clone = MultiHeadRRDBNet.from_config(config)
  clone.build()
  assert clone.get_config() == config
  path = str(tmp_path / "multi.keras")
  model.save(path)
  loaded = keras.models.load_model(path, compile=False)
  assert isinstance(loaded, MultiHeadRRDBNet) and loaded.arch_config() == model.arch_config()
  x = _image()
  for head in ("x2", "x4"):
    np.testing.assert_array_equal(loaded(x)[head].numpy(), model(x)[head].numpy())


def test_build_generator_from_a_config():
  config = ml_collections.ConfigDict(dict(arch="multihead_rrdbnet", **TINY, heads=X2X4X8,
                                          default_head="x4"))
  model = models.build_generator(config, name="generator")
  assert isinstance(model, MultiHeadRRDBNet) and model.name == "generator"
  assert model.built and model.default_head == "x4" and model.scale == 4
  assert models.arch_name(model) == "multihead_rrdbnet"


def test_bfloat16_copy_keeps_the_heads():
  model = _multi()
  copy = model.with_dtype("bfloat16")
  assert copy.compute_dtype == "bfloat16" and copy.head_names == model.head_names
  x = _image()
  got = tf.cast(copy(x)["x8"], tf.float32).numpy()
  # The same computation as the bfloat16 copy of the RRDBNet holding the trunk and that head.
  single = model.to_rrdbnet("x8").with_dtype("bfloat16")
  np.testing.assert_array_equal(got, tf.cast(single(x), tf.float32).numpy())
  want = model(x)["x8"].numpy()
  # bfloat16 keeps 8 significant bits: errors of a few % of the output's range, not more.
  assert 0 < np.abs(got - want).max() < 0.05 * np.abs(want).max()


# --- single-head interop ------------------------------------------------------------------------

def test_load_rrdbnet_into_one_head_and_extract_it_back():
  single = _rrdbnet(scale=4, upsampler="nearest", seed=5)
  model = multihead.from_rrdbnet(single, [{"name": "x2", "scale": 2, "upsampler": "depth_to_space"},
                                          {"name": "x4", "scale": 4}], "x4", default_head="x4")
  x = _image()
  np.testing.assert_array_equal(model.head_fn("x4")(x).numpy(), single(x).numpy())
  extracted = model.to_rrdbnet("x4")
  for a, b in zip(extracted.get_weights(), single.get_weights()):
    np.testing.assert_array_equal(a, b)
  # The other head is untouched by loading: it keeps its fresh initialisation.
  before = [w.copy() for w in model.output_heads[0].get_weights()]
  model.load_rrdbnet(_rrdbnet(scale=4, upsampler="nearest", seed=6), "x4")
  for a, b in zip(model.output_heads[0].get_weights(), before):
    np.testing.assert_array_equal(a, b)


def test_load_rrdbnet_refuses_another_architecture():
  model = _multi()
  with pytest.raises(ValueError, match=r"head 'x4' .*scale: model 2, head 4"):
    model.load_rrdbnet(_rrdbnet(scale=2), "x4")
  with pytest.raises(ValueError, match=r"upsampler: model 'nearest', head 'depth_to_space'"):
    model.load_rrdbnet(_rrdbnet(scale=4, upsampler="nearest"), "x4")
  with pytest.raises(ValueError, match="num_blocks: model 2, head 1"):
    model.load_rrdbnet(_rrdbnet(scale=4, num_blocks=2), "x4")
  with pytest.raises(ValueError, match="no head 'x3'"):
    model.to_rrdbnet("x3")


# --- as an Engine ---------------------------------------------------------------------------

def test_keras_engine_runs_one_head_or_a_blend():
  model = _multi(heads=[{"name": "psnr", "scale": 4}, {"name": "gan", "scale": 4},
                        {"name": "x2", "scale": 2}])
  x = _image(6, 5)
  out = {k: v.numpy() for k, v in model(x).items()}
  default = engine_lib.keras_engine(model)
  assert default.scale == 4 and default.info["head"] == "psnr"
  assert default.info["heads"] == {"psnr": 4, "gan": 4, "x2": 2}
  np.testing.assert_allclose(default(x), out["psnr"], rtol=0, atol=1e-6)
  for _ in range(3):  # wrapping again reuses the head's traced function
    x2 = engine_lib.keras_engine(model, head="x2")
    assert x2.scale == 2
    np.testing.assert_allclose(x2(x), out["x2"], rtol=0, atol=1e-6)
  traced = engine_lib._TRACED_OUTPUTS[model]  # pylint: disable=protected-access
  assert traced["x2"].experimental_get_tracing_count() == 1
  blend = engine_lib.keras_engine(model, blend=multihead.parse_head_blend("psnr:.25,gan:.75"))
  assert blend.scale == 4 and blend.info["blend_heads"] == "psnr:0.25,gan:0.75"
  np.testing.assert_allclose(blend(x), 0.25 * out["psnr"] + 0.75 * out["gan"], rtol=0, atol=1e-6)
  bf16 = engine_lib.keras_engine(model, precision="bfloat16", head="x2")
  assert np.abs(bf16(x) - out["x2"]).max() < 0.05 * np.abs(out["x2"]).max()


def test_keras_engine_head_errors():
  model = _multi()
  with pytest.raises(ModelError, match=r"m: .*no head 'gan'"):
    engine_lib.keras_engine(model, name="m", head="gan")
  with pytest.raises(ModelError, match="a head or a head blend, not both"):
    engine_lib.keras_engine(model, head="x2",
                                blend=multihead.parse_head_blend("x2:0.5,x4:0.5"))
  with pytest.raises(ModelError, match="not a multi-head model"):
    engine_lib.keras_engine(_rrdbnet(), head="x2")


def test_features_then_heads_is_the_call_split_in_two():
  model = _multi()
  x = _image()
  features = model.features(x)
  assert tuple(features.shape) == (1, 7, 9, 8)
  out = model(x)
  split = model.heads_from(features, ("x8", "x2"))
  assert list(split) == ["x8", "x2"]
  for head in split:
    np.testing.assert_array_equal(split[head].numpy(), out[head].numpy())
  # What a training step can do with it: stop one head's gradient into the trunk.
  with tf.GradientTape() as tape:
    features = model.features(x)
    images = model.heads_from(features, ("x2",))
    frozen = model.heads_from(tf.stop_gradient(features), ("x4",))
    loss = tf.reduce_mean(images["x2"]) + tf.reduce_mean(frozen["x4"])
  grads = dict(zip([v.path for v in model.trainable_variables],
                   tape.gradient(loss, model.trainable_variables)))
  trunk_kernel = "multihead_rrdbnet/conv_first/kernel"
  with tf.GradientTape() as tape:
    loss_x2 = tf.reduce_mean(model.heads_from(model.features(x), ("x2",))["x2"])
  only_x2 = tape.gradient(loss_x2, model.conv_first.kernel)
  np.testing.assert_allclose(grads[trunk_kernel].numpy(), only_x2.numpy(), rtol=1e-5, atol=1e-8)
  assert grads["multihead_rrdbnet/x4/conv_last/kernel"] is not None
  assert grads["multihead_rrdbnet/x8/conv_last/kernel"] is None
