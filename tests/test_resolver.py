"""The one model entry point: `resolver.ModelSpec`, `load_engine`, `load_engines`."""

import numpy as np
import pytest

from esrgan_tf.core.errors import ModelError
from esrgan_tf.inference import remote, resolver


def test_load_engine_routes_servers_and_heads(monkeypatch, tmp_path):
  calls = []
  monkeypatch.setattr(remote, "remote_engine",
                      lambda address, **kwargs: calls.append((address, kwargs)) or "remote")
  assert resolver.load_engine(resolver.ModelSpec(server="localhost:8500", model_name="sr")) == (
      "remote")
  assert resolver.load_engine(resolver.ModelSpec(server="h:1", head="x2")) == "remote"
  assert calls == [("localhost:8500", {"model_name": "sr", "signature_name": "upscale_float"}),
                   ("h:1", {"model_name": "esrgan", "signature_name": "upscale_x2_float"})]
  with pytest.raises(ModelError, match="no such file"):
    resolver.load_engine(str(tmp_path / "missing.keras"))


@pytest.mark.parametrize("kwargs,match", [
    (dict(), "exactly one of a model and a server"),
    (dict(model="a", server="h:1"), "exactly one"),
    (dict(model="a", blend_with="b"), "go together"),
    (dict(server="h:1", blend_with="b", blend_weight=0.5), "needs a model"),
    (dict(model="a", blend_with="b", blend_weight=1.5), r"in \[0, 1\]"),
    (dict(model="a", precision="fp8"), "precision must be one of"),
    (dict(model="a", num_threads=0), "num_threads must be ≥ 1"),
    (dict(model="a", head="x2", blend_heads="a:0.5,b:0.5"), "exclude each other"),
    (dict(model="a", blend_with="b", blend_weight=0.5, head="x2"), "blends whole models"),
    (dict(server="h:1", blend_heads="a:0.5,b:0.5"), "needs the Keras model"),
])
def test_model_spec_refuses_inconsistent_fields(kwargs, match):
  with pytest.raises(ValueError, match=match):
    resolver.ModelSpec(**kwargs)


def test_names_say_what_runs():
  assert resolver.ModelSpec(model="a.pth").name == "a.pth"
  assert resolver.ModelSpec(server="h:1", model_name="m").name == "m@h:1"
  assert resolver.ModelSpec(model="a", blend_with="b", blend_weight=0.25).name == (
      "0.25·a + 0.75·b")


def test_one_output_models_give_one_engine(tiny_keras_model):
  spec = resolver.ModelSpec(model=tiny_keras_model(2), precision="float32")
  engines = resolver.load_engines(spec)
  assert list(engines) == [None] and engines[None].scale == 2
  x = np.random.default_rng(0).random((1, 5, 4, 3), dtype=np.float32)
  np.testing.assert_array_equal(engines[None](x), resolver.load_engine(spec)(x))
  with pytest.raises(ModelError, match="not a multi-head model"):
    resolver.load_generator(resolver.ModelSpec(model=tiny_keras_model(2), head="x2"))
