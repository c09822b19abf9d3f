"""Tests for esrgan_tf.export.int8: calibration tiles, and a calibrated int8 conversion whose
convolutions are int8 while the float islands stay float32, the float-op knob, and int16x8."""

import os
import subprocess
import sys

from ai_edge_litert import schema_py_generated as schema
import keras
import numpy as np
from PIL import Image
import pytest

import esrgan_tf
from esrgan_tf.export import int8, tflite
from esrgan_tf.inference.tflite import tflite_engine
from esrgan_tf.models import RRDBNet

SIZE = (16, 16)


def _ops(path):
  """[(op name, [input tensor types])] of a .tflite file, in execution order."""
  with open(path, "rb") as f:
    model = schema.ModelT.InitFromPackedBuf(f.read(), 0)
  names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
  types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
  graph = model.subgraphs[0]
  out = []
  for op in graph.operators:
    code = model.operatorCodes[op.opcodeIndex]
    out.append((names[max(code.builtinCode, code.deprecatedBuiltinCode)],
                [types[graph.tensors[i].type] for i in op.inputs if i >= 0]))
  return out


def test_calibration_tiles_are_crops_of_the_images(tmp_path):
  rng = np.random.default_rng(0)
  big = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
  Image.fromarray(big).save(tmp_path / "big.png")
  Image.fromarray(big[:8, :8]).save(tmp_path / "small.png")  # Smaller than a tile: not used.
  (tmp_path / "notes.txt").write_text("not an image")
  tiles = int8.calibration_tiles(str(tmp_path), SIZE, count=5)
  assert len(tiles) == 5
  source = big.astype(np.float32) / 255
  for tile in tiles:
    assert tile.shape == (1, 16, 16, 3) and tile.dtype == np.float32
    assert any(np.array_equal(tile[0], source[y:y + 16, x:x + 16])
               for y in range(5) for x in range(9))


def test_calibration_tiles_errors(tmp_path):
  with pytest.raises(ValueError, match="calibration_dir.*does not exist"):
    int8.calibration_tiles(str(tmp_path / "missing"), SIZE)
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "small.png")
  with pytest.raises(ValueError, match=r"no calibration image of at least 16×16 pixels \(1 "):
    int8.calibration_tiles(str(tmp_path), SIZE)
  (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
  with pytest.raises(ValueError, match="broken.png"):
    int8.calibration_tiles(str(tmp_path), SIZE)


def test_int8_conversion_int8_convs_float_islands_close_to_float(tmp_path):
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, upsampler="nearest")
  model.build((None, None, None, 3))
  path = tflite.convert(model, str(tmp_path / "m.tflite"), input_size=SIZE, quantize="int8",
                        gpu_check=True)  # int8 files are not held to the GPU check.
  ops = _ops(path)
  convs = [types for name, types in ops if name == "CONV_2D"]
  assert len(convs) == 21  # conv_first, 3 RDBs × 5, conv_body, up1, up2, hr, last.
  assert all(types[:2] == ["INT8", "INT8"] for types in convs)  # int8 activations and weights
  # The default islands: the residual additions and scalings compute in float32.
  for name in int8.FLOAT_OPS:
    islands = [types for op, types in ops if op == name]
    assert islands and all(set(types) == {"FLOAT32"} for types in islands), name
  image = np.asarray(Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png"))
                     .convert("RGB"), np.float32)[None, 60:76, 80:96] / 255
  got = tflite_engine(path, num_threads=1)(image)
  want = model(image).numpy()
  # A random-init tiny net, 8-bit activations: close, not equal (measured 41.2 dB).
  psnr = 10 * np.log10(np.ptp(want) ** 2 / np.mean((got - want) ** 2))
  assert 33 < psnr < 80


def _tiny_model():
  keras.utils.set_random_seed(0)
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, upsampler="nearest")
  model.build((None, None, None, 3))
  return model


def _chelsea_tile():
  return np.asarray(Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png"))
                    .convert("RGB"), np.float32)[None, 60:76, 80:96] / 255


def _psnr(got, want):
  return 10 * np.log10(np.ptp(want) ** 2 / np.mean((got - want) ** 2))


def test_float_ops_choose_the_islands(tmp_path):
  model = _tiny_model()
  everything = _ops(tflite.convert(model, str(tmp_path / "all.tflite"), input_size=SIZE,
                                   quantize="int8", float_ops=()))
  # No island: the residual additions and scalings run on int8 tensors, and no op computes in
  # float32 except the QUANTIZE of the float input and DEQUANTIZE of the output.
  assert [types for op, types in everything if op == "ADD"] and all(
      set(types) == {"INT8"} for op, types in everything if op in ("ADD", "MUL", "LEAKY_RELU"))
  assert [op for op, _ in everything if op == "DEQUANTIZE"] == ["DEQUANTIZE"]
  lrelu = _ops(tflite.convert(model, str(tmp_path / "lrelu.tflite"), input_size=SIZE,
                              quantize="int8", float_ops=["leaky_relu"]))
  assert all(set(types) == {"FLOAT32"} for op, types in lrelu if op == "LEAKY_RELU")
  assert all(set(types) == {"INT8"} for op, types in lrelu if op in ("ADD", "MUL"))
  # Each float island is entered through a DEQUANTIZE: one per LeakyReLU (4 in the dense block,
  # 3 after the upsampling / conv_hr convs) plus the output's.
  assert sum(op == "DEQUANTIZE" for op, _ in lrelu) == 4 * 3 + 3 + 1


def test_int16x8_conversion_int16_activations_int8_weights(tmp_path):
  model = _tiny_model()
  path = tflite.convert(model, str(tmp_path / "m16.tflite"), input_size=SIZE,
                        quantize="int16x8", gpu_check=True)  # not held to the GPU check
  convs = [types for name, types in _ops(path) if name == "CONV_2D"]
  assert len(convs) == 21
  assert all(types == ["INT16", "INT8", "INT64"] for types in convs)  # activations, weights, bias
  image = _chelsea_tile()
  want = model(image).numpy()
  got16 = tflite_engine(path, num_threads=1)(image)
  got8 = tflite_engine(
      tflite.convert(model, str(tmp_path / "m8.tflite"), input_size=SIZE, quantize="int8"),
      num_threads=1)(image)
  # 256× finer activation steps: closer to float32 than int8 (measured 51.3 vs 40.3 dB; not
  # 48 dB more: ranges calibrated on other photos clip some of this tile's activations).
  assert _psnr(got16, want) > _psnr(got8, want) + 8


def test_float_ops_errors(tmp_path):
  model = _tiny_model()
  with pytest.raises(ValueError, match="ADDD is not a TFLite builtin op name"):
    tflite.convert(model, str(tmp_path / "m.tflite"), input_size=SIZE, quantize="int8",
                   float_ops=["ADD", "ADDD"])
  with pytest.raises(ValueError, match="float_ops applies to quantize='int8' only, not 'dynamic'"):
    tflite.convert(model, str(tmp_path / "m.tflite"), input_size=SIZE, quantize="dynamic",
                   float_ops=["ADD"])
  with pytest.raises(ValueError, match="int16x8: float islands are not supported"):
    int8.quantize_int8(None, [], float_ops=["ADD"], activations="int16")
  assert not (tmp_path / "m.tflite").exists()


def test_export_cli_rejects_float_ops_without_int8(tmp_path):
  run = subprocess.run(
      [sys.executable, "-m", "esrgan_tf.cli.export", "--model=unused.keras",
       f"--export_dir={tmp_path}", "--format=tflite", "--tflite_quantize=int16x8",
       "--int8_float_ops=ADD"],
      capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
      timeout=120, check=False)
  assert run.returncode != 0
  assert "--int8_float_ops applies to --tflite_quantize=int8 only" in run.stderr
