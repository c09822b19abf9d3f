"""Tests for esrgan_tf.inference.engine: the one place every --model flag is resolved."""

import numpy as np
import pytest

from esrgan_tf.core.errors import ModelError
from esrgan_tf.inference import engine as engine_lib
from esrgan_tf.inference import resolver
from esrgan_tf.models import RRDBNet


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=2, upsampler="nearest")
  model.build()
  path = tmp_path_factory.mktemp("m") / "tiny.keras"
  model.save(path)
  return model, str(path)


def test_keras_file_gives_same_numbers(tiny_keras):
  model, path = tiny_keras
  up = resolver.load_engine(resolver.ModelSpec(model=path, precision="float32"))
  x = np.random.default_rng(0).random((2, 5, 6, 3)).astype(np.float32)
  assert up.scale == 2
  assert up.info["arch"]["upsampler"] == "nearest"
  np.testing.assert_allclose(up(x), model(x).numpy(), atol=1e-6)
  assert isinstance(resolver.load_generator(path), RRDBNet)


def test_keras_engine_traces_once_for_all_sizes(tiny_keras):
  model, _ = tiny_keras
  up = engine_lib.keras_engine(model)
  for shape in [(1, 4, 4, 3), (3, 9, 5, 3), (1, 17, 2, 3)]:
    out = up(np.zeros(shape, np.float32))
    assert out.shape == (shape[0], shape[1] * 2, shape[2] * 2, 3)
  # The tf.function is the closure's only traced function; its input_signature is fully dynamic.
  run = up.fn.__closure__[0].cell_contents
  assert run.experimental_get_tracing_count() == 1


def test_wrapping_a_model_again_reuses_its_traced_function(tiny_keras):
  """The cause of "N out of the last M calls ... triggered retracing": one function per wrapper."""
  model, _ = tiny_keras
  x = np.random.default_rng(1).random((1, 6, 5, 3)).astype(np.float32)
  runs = set()
  for _ in range(7):  # as training's evaluation and the quickstart wrap the same model
    up = engine_lib.keras_engine(model)
    up(x)
    runs.add(id(engine_lib._TRACED[model]))  # pylint: disable=protected-access
  assert len(runs) == 1
  assert engine_lib._TRACED[model].experimental_get_tracing_count() == 1  # pylint: disable=protected-access
  # The shared function reads the live variables: a weight update is seen without retracing.
  before = up(x)
  kernel, bias = model.conv_last.get_weights()
  model.conv_last.set_weights([kernel, bias + 0.25])
  try:
    np.testing.assert_allclose(engine_lib.keras_engine(model)(x), before + 0.25, atol=1e-5)
  finally:
    model.conv_last.set_weights([kernel, bias])
  assert engine_lib._TRACED[model].experimental_get_tracing_count() == 1  # pylint: disable=protected-access


@pytest.mark.parametrize("name, content, message", [
    ("missing.keras", None, "no such file"),
    ("weights.h5", b"x", "unrecognised model"),
    ("broken.keras", b"not a zip archive", "not a loadable .keras model"),
])
def test_bad_specs_name_the_file(tmp_path, name, content, message):
  path = tmp_path / name
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(ModelError, match=message) as info:
    resolver.load_engine(str(path))
  assert str(path) in str(info.value)


def test_load_generator_refuses_tflite(tmp_path):
  path = tmp_path / "m.tflite"
  path.write_bytes(b"\0" * 16)
  with pytest.raises(ModelError, match="not a Keras generator"):
    resolver.load_generator(str(path))


def test_bfloat16_computes_in_bfloat16_close_to_float32(tiny_keras):
  model, _ = tiny_keras
  x = np.random.default_rng(1).random((1, 16, 16, 3)).astype(np.float32)
  f32 = engine_lib.keras_engine(model)(x)
  bf16 = engine_lib.keras_engine(model, precision="bfloat16")(x)
  assert bf16.dtype == np.float32
  err = np.abs(bf16 - f32)
  # bf16 keeps 8 significant bits (relative step 2^-8 ≈ 0.004 per rounding): measured max error
  # 0.56–1.22 % of the output's peak over 6 random inits (this fixture is not seeded); bound 3 %.
  assert 0 < err.max() < 0.03 * np.abs(f32).max()
  with pytest.raises(ModelError, match="precision"):
    engine_lib.keras_engine(model, precision="float16")


def test_bf16_model_variables_and_compute_are_bf16():
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=2)
  model.build()
  clone = model.with_dtype("bfloat16")
  assert {w.dtype for w in clone.weights} == {"bfloat16"}
  assert clone(np.zeros((1, 4, 4, 3), np.float32)).dtype == "bfloat16"
  assert clone.get_config()["dtype"] == "bfloat16"
  assert clone.arch_config() == model.arch_config()


def test_resolve_precision_falls_back_without_native_bf16(tmp_path):
  from esrgan_tf.core import precision
  no_bf16 = tmp_path / "cpuinfo_plain"
  no_bf16.write_text("processor : 0\nflags : fpu sse avx2 avx512f\n")
  with_bf16 = tmp_path / "cpuinfo_bf16"
  with_bf16.write_text("processor : 0\nflags : fpu avx512f avx512_bf16\n")
  assert precision.resolve_precision("bfloat16", cpuinfo_path=str(no_bf16)) == "float32"
  assert precision.resolve_precision("bfloat16", cpuinfo_path=str(with_bf16)) == "bfloat16"
  assert precision.resolve_precision("float32", cpuinfo_path=str(with_bf16)) == "float32"
  with pytest.raises(ValueError, match="precision must be one of"):
    precision.resolve_precision("fp8")
