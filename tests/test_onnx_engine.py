"""The ONNX Runtime engine (esrgan_tf.inference.onnx) and `--model=x.onnx` in the CLIs.

Needs the `onnx` extra, imported unconditionally (a missing extra fails, it does not skip).
Foreign models (no esrgan_tf metadata) are built here with onnx.helper from one Resize node, so
the expected output is numpy's nearest upscaling.
"""

import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image
import pytest

from esrgan_tf.core.errors import ModelError
from esrgan_tf.export import onnx as onnx_export
from esrgan_tf.images import pixels
from esrgan_tf.inference import engine as engine_lib
from esrgan_tf.inference import onnx as onnx_engine_lib
from esrgan_tf.inference import resolver, tiling

SCALE = 2
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
  """(model, .keras path, .onnx path, uint8 .onnx path) of one tiny x2 RRDBNet (nearest)."""
  import keras  # pylint: disable=g-import-not-at-top

  from esrgan_tf.models import RRDBNet  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(3)
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=SCALE,
                  upsampler="nearest")
  model.build()
  directory = tmp_path_factory.mktemp("onnx_engine")
  keras_path = str(directory / "tiny.keras")
  model.save(keras_path)
  float_path = onnx_export.convert(model, directory / "tiny.onnx", source=keras_path)
  uint8_path = onnx_export.convert(model, directory / "tiny_uint8.onnx",
                                   onnx_export.OnnxOptions(layout="nhwc_uint8"))
  return model, keras_path, float_path, uint8_path


def _resize_model(path, *, shape, scale, elem_type=TensorProto.FLOAT, inputs=1):
  """A foreign .onnx: nearest upscaling by `scale` of an NCHW input of `shape` (None: dynamic)."""
  dims = [d if d is not None else name for d, name in zip(shape, ("n", "c", "h", "w"))]
  names = [f"x{i}" for i in range(inputs)]
  scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, scale, scale])
  node = helper.make_node("Resize", [names[0], "", "scales"], ["y"], mode="nearest",
                          coordinate_transformation_mode="asymmetric", nearest_mode="floor")
  graph = helper.make_graph(
      [node], "foreign", [helper.make_tensor_value_info(n, elem_type, dims) for n in names],
      [helper.make_tensor_value_info("y", elem_type, None)], initializer=[scales])
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
  model.ir_version = 8
  onnx.save(model, str(path))
  return str(path)


def _nearest(images, scale):
  return images.repeat(scale, 1).repeat(scale, 2)


def test_our_export_through_the_model_resolver(tiny_keras):
  model, _, float_path, _ = tiny_keras
  engine = resolver.load_engine(resolver.ModelSpec(model=float_path, num_threads=1))
  assert engine.scale == SCALE and engine.input_size is None and engine.max_batch is None
  assert engine.info["layout"] == "nchw_float" and engine.info["max_pixels"] is None
  assert engine.info["arch"] == model.arch_config() and engine.info["num_threads"] == 1
  images = np.random.default_rng(0).random((3, 13, 9, 3), dtype=np.float32)
  got = engine(images)
  assert got.shape == (3, 26, 18, 3)
  assert np.abs(got - model(images).numpy()).max() <= TOLERANCE
  # Tiled, the ONNX engine gives what the Keras engine gives with the same tiles.
  image = images[0]
  spec = tiling.TileSpec(tile=6, overlap=2, batch=4, pre_pad=0)
  tiled = tiling.upscale_array(image, engine, spec)
  reference = tiling.upscale_array(image, engine_lib.keras_engine(model), spec)
  assert np.abs(tiled - reference).max() <= TOLERANCE


def test_uint8_export_as_an_engine(tiny_keras):
  model, _, _, uint8_path = tiny_keras
  engine = onnx_engine_lib.onnx_engine(uint8_path)
  assert engine.info["layout"] == "nhwc_uint8" and engine.scale == SCALE
  images = pixels.to_float(np.random.default_rng(1).integers(0, 256, (1, 7, 5, 3), np.uint8))
  got = engine(images)
  expected = pixels.to_float(pixels.from_float(model(images).numpy(), 8))
  assert got.dtype == np.float32 and got.shape == expected.shape
  assert np.abs(got - expected).max() <= 1 / 255 + 1e-7


def test_foreign_static_model_takes_tiles_of_its_size(tmp_path):
  path = _resize_model(tmp_path / "static.onnx", shape=(1, 3, 8, 8), scale=3)
  engine = onnx_engine_lib.onnx_engine(path)
  assert engine.scale == 3 and engine.input_size == (8, 8) and engine.max_batch == 1
  small = np.random.default_rng(2).random((2, 5, 7, 3), dtype=np.float32)
  np.testing.assert_array_equal(engine(small), _nearest(small, 3))  # padded, then cropped
  with pytest.raises(ValueError, match=r"at most 8×8.*tile"):
    engine(np.zeros((1, 9, 8, 3), np.float32))
  image = np.random.default_rng(3).random((13, 11, 3), dtype=np.float32)
  # Blended overlaps: weights summing to 1 in float32 arithmetic.
  spec = tiling.TileSpec(tile=8, overlap=2, batch=4, pre_pad=0)
  np.testing.assert_allclose(tiling.upscale_array(image, engine, spec),
                             _nearest(image[None], 3)[0], atol=1e-6)


def test_foreign_dynamic_float16_model_scale_is_probed(tmp_path):
  path = _resize_model(tmp_path / "dynamic.onnx", shape=(None, 3, None, None), scale=2,
                       elem_type=TensorProto.FLOAT16)
  engine = onnx_engine_lib.onnx_engine(path)
  assert engine.scale == 2 and engine.input_size is None and engine.max_batch is None
  images = np.random.default_rng(4).random((2, 3, 5, 3), dtype=np.float32)
  expected = _nearest(images.astype(np.float16).astype(np.float32), 2)
  np.testing.assert_array_equal(engine(images), expected)


def test_refused_models_name_the_file_and_the_problem(tmp_path):
  with pytest.raises(ModelError, match=r"missing\.onnx: no such file"):
    onnx_engine_lib.onnx_engine(tmp_path / "missing.onnx")
  garbage = tmp_path / "garbage.onnx"
  garbage.write_bytes(b"this is not a protobuf" * 10)
  with pytest.raises(ModelError, match=r"garbage\.onnx: not a loadable ONNX model"):
    resolver.load_engine(str(garbage))
  two = _resize_model(tmp_path / "two.onnx", shape=(1, 3, 8, 8), scale=2, inputs=2)
  with pytest.raises(ModelError, match=r"two\.onnx: expected one input and one output"):
    onnx_engine_lib.onnx_engine(two)
  flat = tmp_path / "flat.onnx"
  graph = helper.make_graph(
      [helper.make_node("Relu", ["x"], ["y"])], "flat",
      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 10])],
      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])])
  onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
            str(flat))
  with pytest.raises(ModelError, match=r"flat\.onnx: expected an image model"):
    onnx_engine_lib.onnx_engine(str(flat))


def test_newer_metadata_is_refused(tmp_path, tiny_keras):
  proto = onnx.load(tiny_keras[2])
  for prop in proto.metadata_props:
    if prop.key == "format_version":
      prop.value = "99"
  path = tmp_path / "newer.onnx"
  onnx.save(proto, str(path))
  with pytest.raises(ModelError, match=r"newer\.onnx: written by a newer esrgan_tf"):
    onnx_engine_lib.onnx_engine(str(path))


def test_without_onnxruntime_the_message_names_the_extra(tmp_path, tiny_keras, monkeypatch):
  monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
  with pytest.raises(ModelError, match=r"needs onnxruntime \(pip install "
                                r"'esrgan_tf\[onnx\]'\)"):
    resolver.load_engine(tiny_keras[2])


def test_image_paths_never_import_the_onnx_packages(tiny_keras):
  code = ("import sys; from esrgan_tf.inference import batch, resolver\n"
          "import esrgan_tf.cli.export, esrgan_tf.export.onnx, esrgan_tf.inference.onnx\n"
          f"resolver.load_engine({tiny_keras[1]!r})\n"
          "print(sorted(m for m in ('onnx', 'onnxruntime', 'tf2onnx') if m in sys.modules))")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip().splitlines()[-1] == "[]"


def _cli(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", f"esrgan_tf.cli.{module}", *args],
                        capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.mark.slow
def test_export_upscale_and_eval_command_lines(tmp_path, tiny_keras):
  _, keras_path, _, _ = tiny_keras
  export_dir = tmp_path / "exports"
  run = _cli("export", f"--model={keras_path}", f"--export_dir={export_dir}", "--format=onnx",
             "--onnx_licence=CC0-1.0")
  assert run.returncode == 0, run.stderr
  onnx_path = export_dir / "esrgan_x2.onnx"
  assert f"ONNX: {onnx_path}" in run.stdout
  facts = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
  assert facts["licence"] == "CC0-1.0" and facts["source"] == keras_path
  run = _cli("export", f"--model={keras_path}", f"--export_dir={export_dir}", "--format=onnx",
             "--precision=bfloat16")
  assert run.returncode == 2 and "--onnx_weights" in run.stderr

  images = tmp_path / "in"
  images.mkdir()
  rng = np.random.default_rng(5)
  Image.fromarray(rng.integers(0, 256, (21, 17, 3), np.uint8)).save(images / "a.png")
  Image.fromarray(rng.integers(0, 256, (40, 40, 3), np.uint8)).save(images / "big.png")
  outputs = {}
  for name, model in (("keras", keras_path), ("onnx", onnx_path)):
    # 21·17 = 357 pixels pass --max_pixels=400; 40·40 = 1600 do not, whatever the engine.
    # float32: --precision=auto picks bfloat16 for Keras on CPUs with native bf16.
    run = _cli("upscale", f"--model={model}", f"--input={images}", f"--output={tmp_path / name}",
               "--max_pixels=400", "--tile=8", "--tile_overlap=2", "--precision=float32")
    assert run.returncode == 1, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "1 upscaled, 1 failed"
    assert "big.png" in run.stderr and "1600" in run.stderr.replace(",", "")
    outputs[name] = np.asarray(Image.open(tmp_path / name / "a_out.png"), np.int32)
  assert outputs["onnx"].shape == (42, 34, 3)
  # Float32 engines ≤ 1e-5 apart: a rounding tie at most one level apart.
  assert np.abs(outputs["onnx"] - outputs["keras"]).max() <= 1

  run = _cli("evaluate", f"--model={onnx_path}", f"--hr={images}", "--scale=2")
  assert run.returncode == 0, run.stderr
  assert "mean" in run.stdout
