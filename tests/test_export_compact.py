"""SavedModel and TFLite export of the new layouts: SRVGGNetCompact and pixel-unshuffle RRDBNet.

References are the eager Keras models (themselves checked against numpy in test_srvgg.py and
test_rrdbnet_unshuffle.py).
"""

import keras
import numpy as np
import pytest

from esrgan_tf.export import gpu_delegate as gpu_delegate_lib
from esrgan_tf.export import saved_model, tflite
from esrgan_tf.export.gpu_delegate import _op_names, _schema
from esrgan_tf.inference import engine as engine_lib
from esrgan_tf.inference.saved_model import saved_model_engine
from esrgan_tf.inference.tflite import tflite_engine
from esrgan_tf.models import RRDBNet, SRVGGNetCompact

SIZE = (15, 17)  # odd static TFLite input: not a multiple of the unshuffle factors


def _compact(upscale=4):
  keras.utils.set_random_seed(0)
  model = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=upscale)
  model.build()
  for prelu in model.named_prelus().values():
    prelu.alpha.assign(np.random.default_rng(1).uniform(-0.5, 0.5, prelu.alpha.shape))
  return model


def _unshuffle(scale):
  keras.utils.set_random_seed(0)
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=scale,
                  upsampler="nearest", input_unshuffle={2: 2, 1: 4}[scale])
  model.build()
  return model


def _ops(data: bytes) -> set:
  schema = _schema()
  parsed = schema.ModelT.InitFromPackedBuf(data, 0)
  names = _op_names(schema)
  return {names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in parsed.operatorCodes}


def _image(h, w, seed=0):
  return np.random.default_rng(seed).random((1, h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("make", [lambda: _compact(3), lambda: _unshuffle(1)],
                         ids=["compact_x3", "rrdbnet_x1_unshuffle4"])
def test_saved_model_matches_eager_on_odd_sizes(tmp_path, make):
  model = make()
  path = saved_model.export_saved_model(model, str(tmp_path))
  facts = saved_model.read_model_facts(path)
  assert facts["arch"] == model.arch_config() and facts["scale"] == model.scale
  assert facts["generator"] == type(model).__name__
  loaded = saved_model_engine(path)
  for h, w in ((7, 9), (8, 8), (2, 3)):
    x = _image(h, w)
    np.testing.assert_allclose(loaded(x), model(x).numpy(), atol=1e-5)


def test_compact_tflite_fp32_passes_gpu_check_and_matches(tmp_path):
  model = _compact(4)
  path = tflite.convert(model, str(tmp_path / "compact.tflite"), input_size=SIZE)
  with open(path, "rb") as f:
    data = f.read()
  assert "PRELU" in _ops(data)
  assert gpu_delegate_lib.check_gpu_compatibility(data) == []
  runner = tflite_engine(path, num_threads=1)
  assert runner.scale == 4
  x = _image(*SIZE)
  np.testing.assert_allclose(runner(x), model(x).numpy(), atol=1e-4)


@pytest.mark.parametrize("quantize", ["fp16", "dynamic"])
def test_compact_tflite_quantized_pass_gpu_check(quantize):
  data = tflite.convert_to_bytes(_compact(2), input_size=SIZE, quantize=quantize)
  assert "PRELU" in _ops(data)
  assert gpu_delegate_lib.check_gpu_compatibility(data) == []


def test_unshuffle_tflite_pads_in_graph_and_matches(tmp_path):
  model = _unshuffle(2)
  path = tflite.convert(model, str(tmp_path / "x2plus.tflite"), input_size=SIZE)
  with open(path, "rb") as f:
    ops = _ops(f.read())
  assert {"MIRROR_PAD", "SPACE_TO_DEPTH", "STRIDED_SLICE"} <= ops
  runner = tflite_engine(path, num_threads=1)
  x = _image(*SIZE)
  assert runner(x).shape == (1, 30, 34, 3)
  np.testing.assert_allclose(runner(x), model(x).numpy(), atol=1e-4)


def test_gpu_check_refuses_prelu_with_full_alpha():
  # keras PReLU without shared_axes has one slope per pixel and channel: alpha [H, W, C] (3-D),
  # which the delegate reads neither as linear nor as a 4-D HWC tensor.
  model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.PReLU()])
  data = tflite.convert_to_bytes(model, input_size=(8, 8))
  problems = gpu_delegate_lib.check_gpu_compatibility(data)
  assert len(problems) == 1
  assert "PRELU: alpha shape [8, 8, 3] is neither" in problems[0]


def test_keras_engine_bfloat16_compact():
  model = _compact(3)
  up = engine_lib.keras_engine(model, precision="bfloat16")
  x = _image(5, 6)
  got = up(x)
  assert got.shape == (1, 15, 18, 3) and got.dtype == np.float32
  # bf16: 8 mantissa bits. Measured max error 0.0039 (output peak 1.03, seeded weights); 3×.
  np.testing.assert_allclose(got, model(x).numpy(), rtol=0, atol=0.012)
  assert not np.array_equal(got, model(x).numpy())  # bf16 really computed.


def test_unshuffle_tflite_from_saved_model_export_passes_gpu_check(tmp_path):
  # From an export the pad is traced with dynamic sizes (tf.cond between MIRROR_PAD and a
  # gather); the static conversion must fold it to MIRROR_PAD, as the GPU delegate has no GATHER.
  model = _unshuffle(2)
  version = saved_model.export_saved_model(model, str(tmp_path / "export"))
  path = tflite.convert(version, str(tmp_path / "x2plus.tflite"), input_size=SIZE)
  with open(path, "rb") as f:
    data = f.read()
  assert "GATHER" not in _ops(data) and "MIRROR_PAD" in _ops(data)
  assert gpu_delegate_lib.check_gpu_compatibility(data) == []
  x = _image(*SIZE)
  np.testing.assert_allclose(tflite_engine(path)(x), model(x).numpy(), atol=1e-4)
