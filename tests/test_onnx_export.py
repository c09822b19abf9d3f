"""ONNX export (esrgan_tf.export.onnx) against the Keras model, run by onnxruntime.

Needs the `onnx` extra (tf2onnx, onnx, onnxruntime), imported unconditionally: without it this
module fails rather than skips, so CI installs the extra.

Every architecture is exported once (module-scoped cache: tf2onnx takes 1-6 s per tiny net) and
compared with Keras float32 on odd sizes, on a batch, and at the sizes where the pixel-unshuffle
pad goes through its gather branch (1×3, 2×1: pad ≥ side). Tiny nets (nf 8, nb 1, gc 4) with
random biases and PReLU slopes, so that every weight matters.
"""

import json
import os

import keras
import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime
import pytest

from esrgan_tf.export import onnx as onnx_export
from esrgan_tf.images import pixels
from esrgan_tf.models import RRDBNet, SRVGGNetCompact

# The bound for float32 ONNX Runtime vs Keras float32.
TOLERANCE = 1e-5
ODD_SIZES = [(37, 53), (1, 3), (2, 1)]
TINY = dict(num_features=8, num_blocks=1, growth_channels=4)
ARCHS = {
    "rrdbnet_d2s_x2": (RRDBNet, dict(TINY, scale=2, upsampler="depth_to_space")),
    "rrdbnet_d2s_x4": (RRDBNet, dict(TINY, scale=4, upsampler="depth_to_space")),
    "rrdbnet_d2s_x8": (RRDBNet, dict(TINY, scale=8, upsampler="depth_to_space")),
    "rrdbnet_nearest_x2": (RRDBNet, dict(TINY, scale=2, upsampler="nearest")),
    "rrdbnet_nearest_x4": (RRDBNet, dict(TINY, scale=4, upsampler="nearest")),
    "rrdbnet_nearest_x8": (RRDBNet, dict(TINY, scale=8, upsampler="nearest")),
    # Real-ESRGAN's x2plus layout (unshuffle 2, ×4 trunk) and the x1 one (unshuffle 4).
    "unshuffle_x2plus": (RRDBNet, dict(TINY, scale=2, upsampler="nearest", input_unshuffle=2)),
    "unshuffle_x1": (RRDBNet, dict(TINY, scale=1, upsampler="nearest", input_unshuffle=4)),
    "compact_prelu_x4": (SRVGGNetCompact, dict(num_feat=8, num_conv=2, upscale=4,
                                               act_type="prelu")),
}


def tiny_model(name: str, seed: int = 0):
  """The ARCHS net, seeded, with random biases and PReLU slopes (the init makes them 0 / 0.25)."""
  cls, arch = ARCHS[name]
  keras.utils.set_random_seed(seed)
  model = cls(**arch)
  model.build()
  rng = np.random.default_rng(seed)
  for variable in model.weights:
    if variable.path.endswith("bias"):
      variable.assign(rng.normal(0, 0.05, variable.shape).astype(np.float32))
    elif variable.path.endswith("alpha"):
      variable.assign(rng.uniform(0.05, 0.5, variable.shape).astype(np.float32))
  return model


@pytest.fixture(scope="module")
def exported():
  """exported(name, **options) → (Keras model, ModelProto, onnxruntime session), cached."""
  cache = {}

  def get(name, **options):
    key = (name, tuple(sorted(options.items())))
    if key not in cache:
      model = tiny_model(name)
      proto = onnx_export.convert_to_proto(model, onnx_export.OnnxOptions(**options),
                                           source=f"/weights/{name}.keras")
      session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                             providers=["CPUExecutionProvider"])
      cache[key] = model, proto, session
    return cache[key]

  return get


def run_nchw(session, images: np.ndarray) -> np.ndarray:
  """NHWC float32 → the session's NCHW model → NHWC."""
  out = session.run(None, {"input": np.ascontiguousarray(images.transpose(0, 3, 1, 2))})[0]
  return out.transpose(0, 2, 3, 1)


def _images(n, h, w, seed=0):
  return np.random.default_rng(seed).random((n, h, w, 3), dtype=np.float32)


@pytest.mark.parametrize("name", list(ARCHS))
def test_matches_keras_on_odd_sizes_and_a_batch(exported, name):
  model, _, session = exported(name)
  scale = model.scale
  for n, (h, w) in [(1, size) for size in ODD_SIZES] + [(2, (6, 5))]:
    images = _images(n, h, w)
    expected = model(images).numpy()
    got = run_nchw(session, images)
    assert got.shape == expected.shape == (n, scale * h, scale * w, 3), (h, w)
    assert np.abs(got - expected).max() <= TOLERANCE, (h, w, np.abs(got - expected).max())
  # The net is not near the identity: its output differs from nearest upscaling.
  assert np.abs(expected - images.repeat(scale, 1).repeat(scale, 2)).mean() > 0.01


def test_x2plus_pad_gives_the_right_size_for_every_parity(exported):
  """tf2onnx's integer FloorMod truncates: (-n) % 2 gave 72×104 for 37×53 and a failing Pad at
  1×3; the pad is now written (f - n % f) % f. All four parities of (H, W) and the gather branch."""
  _, _, session = exported("unshuffle_x2plus")
  for h, w in [(4, 6), (5, 6), (4, 7), (37, 53), (1, 1), (1, 2), (3, 1)]:
    assert run_nchw(session, _images(1, h, w)).shape == (1, 2 * h, 2 * w, 3)


def test_graph_is_standard_onnx_with_the_pytorch2onnx_layout(exported):
  _, proto, _ = exported("rrdbnet_nearest_x4")
  graph = proto.graph
  assert [(v.name, v.type.tensor_type.elem_type) for v in graph.input] == [
      ("input", onnx.TensorProto.FLOAT)]
  assert [(v.name, v.type.tensor_type.elem_type) for v in graph.output] == [
      ("output", onnx.TensorProto.FLOAT)]
  dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
  assert dims(graph.input[0]) == ["batch", 3, "height", "width"]
  assert dims(graph.output[0]) == ["batch", 3, "out_height", "out_width"]
  assert [(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [
      ("", 17)]
  ops = {node.op_type for node in graph.node}
  assert all(onnx.defs.has(op, 17, "") for op in ops)
  # The NHWC↔NCHW transposes around the Keras call cancel with tf2onnx's own around each Conv.
  assert "Transpose" not in ops and "Resize" in ops
  for node in graph.node:
    if node.op_type == "Resize":
      attrs = {a.name: a.s for a in node.attribute if a.type == onnx.AttributeProto.STRING}
      assert attrs["mode"] == b"nearest"
      assert attrs["coordinate_transformation_mode"] == b"asymmetric"
      assert attrs["nearest_mode"] == b"floor"


def test_metadata_holds_the_model_facts(exported):
  model, proto, session = exported("compact_prelu_x4")
  props = {p.key: p.value for p in proto.metadata_props}
  assert props["format"] == "esrgan_tf.onnx" and props["format_version"] == "1"
  assert props["scale"] == "4" and props["generator"] == "SRVGGNetCompact"
  assert json.loads(props["arch"]) == model.arch_config()
  assert props["layout"] == "nchw_float" and props["weights"] == "float32"
  assert props["source"] == "/weights/compact_prelu_x4.keras"
  assert props["licence"] == "unknown"  # not a published model's file
  for key in ("esrgan_tf_version", "tensorflow_version", "tf2onnx_version", "created_utc"):
    assert props[key]
  # onnxruntime reads the same map; facts_from_metadata types it.
  facts = onnx_export.facts_from_metadata(session.get_modelmeta().custom_metadata_map)
  assert facts["scale"] == 4 and facts["arch"] == model.arch_config()


def test_licence_from_the_registry_or_given(tiny_generator):
  model = tiny_generator(scale=2)
  facts = onnx_export.model_facts(model, onnx_export.OnnxOptions(),
                                  source="/cache/esrgan_tf/RealESRGAN_x4plus.pth")
  assert facts["licence"] == "BSD-3-Clause"  # Real-ESRGAN's LICENSE (esrgan_tf.weights.registry)
  facts = onnx_export.model_facts(model, onnx_export.OnnxOptions(licence="CC-BY-4.0"),
                                  source="/cache/esrgan_tf/RealESRGAN_x4plus.pth")
  assert facts["licence"] == "CC-BY-4.0"


def test_facts_from_metadata_refuses_newer_or_broken_metadata():
  good = {"format": "esrgan_tf.onnx", "format_version": "1", "scale": "4", "arch": "{}",
          "layout": "nchw_float"}
  assert onnx_export.facts_from_metadata({"format": "other"}) == {}
  assert onnx_export.facts_from_metadata(good)["scale"] == 4
  with pytest.raises(ValueError, match="newer esrgan_tf"):
    onnx_export.facts_from_metadata({**good, "format_version": "2"})
  with pytest.raises(ValueError, match="unreadable"):
    onnx_export.facts_from_metadata({**good, "scale": "four"})
  with pytest.raises(ValueError, match="layout"):
    onnx_export.facts_from_metadata({**good, "layout": "nhwc_float"})


def test_float16_weights_halve_the_convs_and_match_rounded_keras(exported):
  model, proto, session = exported("rrdbnet_nearest_x4", weights="float16")
  _, proto32, session32 = exported("rrdbnet_nearest_x4")
  conv_inputs = {name for node in proto.graph.node if node.op_type == "Conv"
                 for name in node.input[1:]}
  kernels = [t for t in proto.graph.initializer if t.name.endswith("__float16")]
  assert kernels and all(t.data_type == onnx.TensorProto.FLOAT16 for t in kernels)
  assert all(t.data_type != onnx.TensorProto.FLOAT for t in proto.graph.initializer
             if t.name in conv_inputs)
  # Each stored as float16 with the values of the float32 export's tensor of the same name.
  float32 = {t.name: numpy_helper.to_array(t) for t in proto32.graph.initializer}
  for half in kernels:
    values = numpy_helper.to_array(half)
    original = float32[half.name.removesuffix("__float16")]
    assert values.nbytes * 2 == original.nbytes
    np.testing.assert_array_equal(values, original.astype(np.float16))
  # Reference: the Keras model with its conv weights rounded to float16. tf2onnx folds the 0.2
  # residual scaling into each dense block's conv5 kernel before the rounding, so the match is
  # to float16 precision of those kernels, far closer than to the float32 model.
  rounded = tiny_model("rrdbnet_nearest_x4")
  for variable in rounded.weights:
    if "kernel" in variable.path or "bias" in variable.path:
      variable.assign(variable.numpy().astype(np.float16).astype(np.float32))
  images = _images(1, 37, 53)
  got = run_nchw(session, images)
  error_rounded = np.abs(got - rounded(images).numpy()).max()
  error_float32 = np.abs(got - model(images).numpy()).max()
  print(f"float16 weights: max |Δ| {error_rounded:.1e} vs rounded Keras, {error_float32:.1e} "
        "vs float32 Keras")
  assert error_rounded <= 1e-4 and error_float32 >= 10 * error_rounded
  assert np.abs(run_nchw(session32, images) - model(images).numpy()).max() <= TOLERANCE


def test_nhwc_uint8_layout_rounds_like_esrgan_tf_pixels(exported):
  model, proto, session = exported("compact_prelu_x4", layout="nhwc_uint8", opset=18)
  assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
  assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [18]
  image = np.random.default_rng(1).integers(0, 256, (1, 37, 53, 3), dtype=np.uint8)
  got = session.run(None, {"input": image})[0]
  expected = pixels.from_float(model(pixels.to_float(image)).numpy(), 8)
  assert got.dtype == np.uint8 and got.shape == expected.shape == (1, 148, 212, 3)
  difference = np.abs(got.astype(int) - expected)
  # Rounding ties of two float32 engines may land one level apart; nothing more.
  assert difference.max() <= 1 and (difference == 0).mean() > 0.999


def test_convert_writes_atomically_and_refuses_to_overwrite(tmp_path, tiny_generator):
  model = tiny_generator(scale=2, upsampler="depth_to_space")
  path = tmp_path / "out" / "m.onnx"
  assert onnx_export.convert(model, path) == str(path)
  first = path.read_bytes()
  with pytest.raises(FileExistsError, match="overwrite"):
    onnx_export.convert(model, path)
  assert path.read_bytes() == first
  bf16 = RRDBNet(**TINY, scale=2, dtype="bfloat16")
  bf16.build()
  with pytest.raises(ValueError, match="float32 generator"):
    onnx_export.convert(bf16, tmp_path / "out" / "bf16.onnx")
  assert sorted(os.listdir(tmp_path / "out")) == ["m.onnx"]  # no temporary or partial file


def test_options_are_checked():
  with pytest.raises(ValueError, match="layout"):
    onnx_export.OnnxOptions(layout="nhwc_float")
  with pytest.raises(ValueError, match="opset"):
    onnx_export.OnnxOptions(opset=13)
  with pytest.raises(ValueError, match="weights"):
    onnx_export.OnnxOptions(weights="int8")
  assert onnx_export.default_filename(4, onnx_export.OnnxOptions()) == "esrgan_x4.onnx"
  assert onnx_export.default_filename(2, onnx_export.OnnxOptions(
      layout="nhwc_uint8", weights="float16")) == "esrgan_x2_nhwc_uint8_fp16.onnx"
