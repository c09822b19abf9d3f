"""A multi-head model as one SavedModel (signatures per head, weights once), loaded back per head,
and as one .tflite per head through esrgan-export."""

import io
import json
import os

from absl import flags
from absl.testing import flagsaver
import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from esrgan_tf.cli import export as export_cli
from esrgan_tf.core.errors import ModelError
from esrgan_tf.export import saved_model as saved_model_lib
from esrgan_tf.export import tflite
from esrgan_tf.inference import resolver
from esrgan_tf.models import MultiHeadRRDBNet

TINY = dict(num_features=8, num_blocks=1, growth_channels=4)
HEADS = [{"name": "x2", "scale": 2}, {"name": "x4", "scale": 4, "upsampler": "nearest"}]
BASE_SIGNATURES = {"serving_default", "upscale_float", "upscale_bytes"}
HEAD_SIGNATURES = {f"upscale_{h}{v}" for h in ("x2", "x4") for v in ("", "_float", "_bytes")}


def tiny_multihead(seed=7, default_head="x4"):
  keras.utils.set_random_seed(seed)
  model = MultiHeadRRDBNet(**TINY, heads=HEADS, default_head=default_head)
  model.build()
  return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  model = tiny_multihead()
  base = str(tmp_path_factory.mktemp("multi_export"))
  path = saved_model_lib.export_saved_model(model, base, version=1, source="unit test")
  return model, path, tf.saved_model.load(path)


def test_signatures_per_head_plus_the_default_head(exported):
  model, _, loaded = exported
  assert set(loaded.signatures) == BASE_SIGNATURES | HEAD_SIGNATURES
  x = np.random.default_rng(0).random((2, 7, 9, 3), dtype=np.float32)
  out = model(x)
  for head, scale in (("x2", 2), ("x4", 4)):
    got = loaded.signatures[f"upscale_{head}_float"](images=tf.constant(x))["upscaled"].numpy()
    assert got.shape == (2, 7 * scale, 9 * scale, 3)
    np.testing.assert_allclose(got, out[head].numpy(), rtol=0, atol=1e-6)
  # The single-output names answer for the default head (x4), bit for bit as its own signature.
  u8 = (x * 255).astype(np.uint8)
  default = loaded.signatures["serving_default"](images=tf.constant(u8))["upscaled"].numpy()
  x4 = loaded.signatures["upscale_x4"](images=tf.constant(u8))["upscaled"].numpy()
  assert default.dtype == np.uint8 and default.shape == (2, 28, 36, 3)
  np.testing.assert_array_equal(default, x4)
  np.testing.assert_array_equal(
      loaded.signatures["upscale_float"](images=tf.constant(x))["upscaled"].numpy(),
      loaded.signatures["upscale_x4_float"](images=tf.constant(x))["upscaled"].numpy())


def test_bytes_signature_of_each_head(exported):
  model, _, loaded = exported
  image = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  out = loaded.signatures["upscale_x2_bytes"](image_bytes=tf.constant([buffer.getvalue()]))
  decoded = np.array(Image.open(io.BytesIO(out["output_bytes"].numpy()[0])))
  want = model(image[None].astype(np.float32) / 255.0)["x2"].numpy()[0]
  assert decoded.shape == (12, 10, 3)
  # uint8 by the package's rounding: at most one level off where float noise meets x.5.
  assert np.abs(decoded.astype(int) - np.clip(np.rint(want * 255), 0, 255)).max() <= 1


def test_weights_are_stored_once(exported):
  model, path, _ = exported
  stored = [name for name, _ in tf.train.list_variables(os.path.join(path, "variables",
                                                                     "variables"))
            if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")]
  assert len(stored) == len(model.weights)
  size = os.path.getsize(os.path.join(path, "variables", "variables.data-00000-of-00001"))
  params = model.count_params() * 4
  assert params <= size < params + 64 * 1024  # not one copy of the trunk per head


def test_model_facts_list_the_heads(exported):
  model, path, _ = exported
  with open(os.path.join(path, "assets.extra", "esrgan_tf.json"), encoding="utf-8") as f:
    facts = json.load(f)
  assert facts["generator"] == "MultiHeadRRDBNet" and facts["arch"] == model.arch_config()
  assert facts["default_head"] == "x4" and facts["scale"] == 4
  assert facts["heads"] == [
      {"name": "x2", "scale": 2, "signatures": {"uint8": "upscale_x2", "float": "upscale_x2_float",
                                                "bytes": "upscale_x2_bytes"}},
      {"name": "x4", "scale": 4, "signatures": {"uint8": "upscale_x4", "float": "upscale_x4_float",
                                                "bytes": "upscale_x4_bytes"}}]
  assert set(facts["signatures"]) == BASE_SIGNATURES | HEAD_SIGNATURES
  assert facts["signatures"]["upscale_x2_bytes"]["scale"] == 2
  assert facts["signatures"]["serving_default"]["head"] == "x4"


def test_load_back_per_head(exported):
  model, path, _ = exported
  x = np.random.default_rng(2).random((1, 5, 6, 3), dtype=np.float32)
  default = resolver.load_engine(path)
  assert default.scale == 4 and default.info["head"] == "x4"
  assert default.info["heads"] == {"x2": 2, "x4": 4}
  x2 = resolver.load_engine(resolver.ModelSpec(model=path, head="x2"))
  assert x2.scale == 2 and x2.name.endswith("[x2]")
  np.testing.assert_allclose(x2(x), model(x)["x2"].numpy(), rtol=0, atol=1e-6)
  every = resolver.load_engines(path)
  assert sorted(every) == ["x2", "x4"] and every["x2"].scale == 2
  np.testing.assert_allclose(every["x4"](x), model(x)["x4"].numpy(), rtol=0, atol=1e-6)
  with pytest.raises(ModelError, match=r"no head 'x8'; its heads are \['x2', 'x4'\]"):
    resolver.load_engine(resolver.ModelSpec(model=path, head="x8"))
  with pytest.raises(ModelError, match="blending heads needs the Keras model"):
    resolver.load_engine(resolver.ModelSpec(model=path, blend_heads="x2:0.5,x4:0.5"))


def test_single_head_export_has_no_heads(tmp_path):
  model = tiny_multihead().to_rrdbnet("x2")
  path = saved_model_lib.export_saved_model(model, str(tmp_path), version=1)
  with open(os.path.join(path, "assets.extra", "esrgan_tf.json"), encoding="utf-8") as f:
    facts = json.load(f)
  assert "heads" not in facts and set(facts["signatures"]) == BASE_SIGNATURES
  assert resolver.load_engines(path).keys() == {None}
  with pytest.raises(ModelError, match="not a multi-head export"):
    resolver.load_engine(resolver.ModelSpec(model=path, head="x2"))


@pytest.mark.slow
def test_cli_writes_one_saved_model_and_a_tflite_per_head(tmp_path, capsys):
  model = tiny_multihead(seed=8)
  keras_path = str(tmp_path / "multi.keras")
  model.save(keras_path)
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  out = str(tmp_path / "exports")
  with flagsaver.flagsaver(model=keras_path, export_dir=out, format="both",
                           tflite_input_size="12x12"):
    export_cli.main(["esrgan-export"])
  names = {"x2": "esrgan_x2_x2_12x12_none.tflite", "x4": "esrgan_x4_x4_12x12_none.tflite"}
  assert sorted(os.listdir(out)) == ["1", *sorted(names.values())]
  assert "TFLite: " in capsys.readouterr().out
  loaded = tf.saved_model.load(os.path.join(out, "1"))
  assert {"upscale_static", "upscale_x2_static", "upscale_x4_static"} <= set(loaded.signatures)
  x = np.random.default_rng(3).random((1, 12, 12, 3), dtype=np.float32)
  for head, name in names.items():
    runner = resolver.load_engine(os.path.join(out, name))
    assert runner.scale == model.scales[head]
    np.testing.assert_allclose(runner(x), model(x)[head].numpy(), rtol=0, atol=1e-4)
    with pytest.raises(ModelError, match="holds one head"):
      resolver.load_engine(resolver.ModelSpec(model=os.path.join(out, name), head=head))


def test_tflite_converter_asks_for_one_head(tmp_path):
  with pytest.raises(ValueError, match=r"several heads \['x2', 'x4'\]: convert one"):
    tflite.convert(tiny_multihead(), str(tmp_path / "m.tflite"), input_size=(8, 8))
  assert not os.listdir(tmp_path)
