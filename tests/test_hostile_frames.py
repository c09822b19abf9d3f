"""Multi-frame images and parsers run on refused formats (hostile suite).

Each attack: the exported `upscale_bytes` graph decodes one frame of the size it declares (a GIF is
cut after its first image, animated WebP refused, APNG frames never decoded), esrgan-serve counts
every frame an export without that guarantee would decode, and formats the server refuses never
reach a parser. Measured on esrgan-serve in a subprocess (status, seconds, VmHWM growth, a normal
request afterwards) and on the graph in process. Before the fix a 1,923-byte GIF made the model
run on 1024² (+2.1 GB) and a TIFF of 4 M strips cost 1.4 GB before "TIFF not accepted".
"""

import base64
import io
import json
import os
import shutil
import time

import grpc
import hostile_fixtures as hf
import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from esrgan_tf.export import saved_model
from esrgan_tf.images import headers, headers_tf
from esrgan_tf.models import RRDBNet
from esrgan_tf.serving import limits
from esrgan_tf.serving.errors import ServingError

MB = hf.MB
# Peak-RSS growth allowed for a remote attack (the bound).
MAX_GROWTH = 100 * MB
SCALE = 4


def _model():
  keras.utils.set_random_seed(3)
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=SCALE)
  model.build((None, None, None, 3))
  return model


@pytest.fixture(scope="module")
def module():
  """The export's graph code, unsaved (traced in process), with a 64² per-image limit."""
  module = saved_model.ExportModule(_model(), max_pixels=64 * 64)
  module.upscale_bytes(tf.constant([hf.png()]))  # Traced once here, not in a timed test.
  module.serving_default(tf.zeros([1, 2, 2, 3], tf.uint8))
  return module


def _upscale_bytes(module, data):
  out = module.upscale_bytes(tf.constant([data]))["output_bytes"].numpy()[0]
  return np.asarray(Image.open(io.BytesIO(out)))


def _model_on(module, pixels):
  return module.serving_default(tf.constant(pixels[None]))["upscaled"].numpy()[0]


# --- the graph -----------------------------------------------------------------------------------

def test_graph_decodes_only_the_first_gif_frame(module):
  # A 1×1 screen, a 1×1 first frame, a 1024² second one: TF alone decodes a 1024² canvas for
  # every frame (the model then ran on 1024²); the graph now decodes the first image only.
  data = hf.gif((1, 1), [hf.gif_frame(1, 1), hf.gif_frame(1024, 1024)])
  assert len(data) < 2048
  np.testing.assert_array_equal(headers_tf.declared_size(tf.constant(data)).numpy(), [1, 1])
  started = time.monotonic()
  out = _upscale_bytes(module, data)
  assert time.monotonic() - started < 5
  first = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # Pillow: frame 0.
  assert first.shape == (1, 1, 3)
  np.testing.assert_array_equal(out, _model_on(module, first))


def test_graph_refuses_a_large_first_gif_frame_before_decoding(module):
  data = hf.gif((1, 1), [hf.gif_frame(16384, 16384)])  # 199 kB declaring 268 Mpx.
  np.testing.assert_array_equal(headers_tf.declared_size(tf.constant(data)).numpy(), [16384, 16384])
  started = time.monotonic()
  with pytest.raises(tf.errors.InvalidArgumentError, match="declared size"):
    module.upscale_bytes(tf.constant([data]))
  assert time.monotonic() - started < 5


def test_graph_gif_walk_has_a_step_limit_the_server_shares():
  # A comment of k one-byte sub-blocks before a 1×1 image: the walk takes k + 5 steps (comment
  # block, k sub-blocks, its terminator, image block, its one data sub-block and terminator).
  fn = tf.function(headers_tf.declared_size, input_signature=[tf.TensorSpec([], tf.string)])
  limit = headers.GIF_MAX_STEPS
  fits = hf.gif((1, 1), [hf.gif_frame(1, 1)], hf.gif_comment(limit - 5))
  over = hf.gif((1, 1), [hf.gif_frame(1, 1)], hf.gif_comment(limit - 4))
  np.testing.assert_array_equal(fn(tf.constant(fits)).numpy(), [1, 1])
  started = time.monotonic()
  np.testing.assert_array_equal(fn(tf.constant(over)).numpy(), [-1, -1])
  assert time.monotonic() - started < 5  # ~0.1 ms a step
  assert limits.read_image_header(fits, "x").width == 1
  with pytest.raises(ServingError, match=f"does not end within {limit} blocks"):
    limits.read_image_header(over, "x")


def test_graph_refuses_animated_webp_and_ignores_apng_frames(module):
  with pytest.raises(tf.errors.InvalidArgumentError, match="no size in its header"):
    module.upscale_bytes(tf.constant([hf.animated_webp()]))
  data = hf.apng(frames=3)
  default = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # Frame 0: the IHDR image.
  np.testing.assert_array_equal(_upscale_bytes(module, data), _model_on(module, default))


def test_python_walker_counts_every_gif_frame():
  data = hf.gif((10, 10), [hf.gif_frame(16, 16)] + [hf.gif_frame(256, 128)] * 50)
  header = limits.read_image_header(data, "x")
  assert (header.width, header.height, header.frames, header.canvas) == (16, 16, 51, (256, 128))
  assert header.pixels(first_frame_only=True) == 256
  assert header.pixels(first_frame_only=False) == 51 * 256 * 128
  # The logical screen is checked too (as in the graph), though TF decodes frames only.
  with pytest.raises(ServingError, match="declares 15000×15000"):
    limits.check_header(limits.read_image_header(hf.gif((15000, 15000), [hf.gif_frame(1, 1)]),
                                                 "x"), "x", 64 * 64)


# --- esrgan-serve --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
  """Version 1: an export without the first-frame fact (every frame counted); version 2: ours."""
  base = tmp_path_factory.mktemp("frames_exports")
  saved_model.export_saved_model(_model(), str(base), version=2)
  shutil.copytree(base / "2", base / "1")
  facts_path = base / "1" / saved_model.ASSET_DIR / saved_model.ASSET_NAME
  facts = json.loads(facts_path.read_text())
  del facts["image_frames"]
  facts_path.write_text(json.dumps(facts))
  server = hf.Server(str(base), "--max_versions=2")
  yield server
  server.close()


def _rest_bytes(server, data, version):
  body = json.dumps({"signature_name": "upscale_bytes",
                     "instances": [{"b64": base64.b64encode(data).decode()}]}).encode()
  before = server.reset_peak()
  status, answer, seconds, _ = hf.http(
      server.rest_port, hf.post(f"/v1/models/esrgan/versions/{version}:predict", body))
  return status, answer, seconds, server.peak() - before


def _normal(server, version=2):
  status, answer, _, _ = _rest_bytes(server, hf.png(4, 4), version)
  assert status == 200, answer
  out = base64.b64decode(answer["predictions"][0]["b64"])
  assert Image.open(io.BytesIO(out)).size == (16, 16)


FRAME_ATTACKS = {
    # name: (GIF, answer of our export (v2): status and output size or message, the same for an
    # export decoding every frame (v1))
    "1×1 screen, 2nd frame 1024² (1.9 kB)": (
        lambda: hf.gif((1, 1), [hf.gif_frame(1, 1), hf.gif_frame(1024, 1024)]),
        (200, (4, 4)), (400, "2 frames of 1024×1024")),
    "16² first frame, 1,000 frames of 256² (460 kB)": (
        lambda: hf.gif((16, 16), [hf.gif_frame(16, 16)] + [hf.gif_frame(256, 256)] * 1000),
        (200, (64, 64)), (400, "1001 frames of 256×256")),
    "first frame 16384² (199 kB)": (
        lambda: hf.gif((1, 1), [hf.gif_frame(16384, 16384)]),
        (400, "declares 16384×16384"), (400, "declares 16384×16384")),
}


@pytest.mark.parametrize("name", list(FRAME_ATTACKS))
def test_multi_frame_gif_through_rest(served, name):
  make, ours, all_frames = FRAME_ATTACKS[name]
  data = make()
  for version, (want, detail) in ((2, ours), (1, all_frames)):
    status, answer, seconds, growth = _rest_bytes(served, data, version)
    assert status == want, answer
    if want == 200:
      out = base64.b64decode(answer["predictions"][0]["b64"])
      assert Image.open(io.BytesIO(out)).size == detail  # the first frame ×4
    else:
      assert detail in answer["error"], answer
    assert seconds < 10, seconds
    assert growth < MAX_GROWTH, f"v{version}: peak RSS grew {growth / MB:.0f} MB"
    _normal(served, version)


def test_animated_webp_and_apng_through_rest(served):
  status, answer, seconds, growth = _rest_bytes(served, hf.animated_webp(frames=50), 2)
  assert status == 400 and "animated WebP is not accepted" in answer["error"], answer
  assert seconds < 5 and growth < MAX_GROWTH
  data = hf.apng(frames=40, size=(8, 8))
  status, answer, seconds, growth = _rest_bytes(served, data, 1)  # Frames ignored by TF.
  assert status == 200, answer
  out = Image.open(io.BytesIO(base64.b64decode(answer["predictions"][0]["b64"])))
  assert out.size == (32, 32) and seconds < 10 and growth < MAX_GROWTH
  _normal(served)


def test_tiff_of_a_million_strips_is_refused_by_its_magic_bytes(served):
  # 9 MB: Pillow's TIFF parser expands its two 1 M-entry arrays and tile list to ~40× that
  # before the format is refused; the magic bytes now refuse it before any parser runs.
  data = hf.tiff_many_strips(1_000_000)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "esrgan"
  request.model_spec.signature_name = "upscale_bytes"
  request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string))
  stub = prediction_service_pb2_grpc.PredictionServiceStub(served.channel)
  before = served.reset_peak()
  started = time.monotonic()
  with pytest.raises(grpc.RpcError) as e:
    stub.Predict(request, timeout=60)
  seconds, growth = time.monotonic() - started, served.peak() - before
  assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "not a PNG, JPEG, WebP, GIF or BMP image (starts with b'II*" in e.value.details()
  assert seconds < 5 and growth < MAX_GROWTH, (seconds, growth / MB)
  _normal(served)


def test_pillow_opens_only_the_format_the_magic_bytes_name(monkeypatch):
  # Image.open is asked for the one plugin: a PNG header on bytes that another plugin would
  # accept is read as PNG or refused, never handed to the other parser.
  opened = []
  original = Image.open

  def spy(fp, mode="r", formats=None):
    opened.append(formats)
    return original(fp, mode, formats)

  monkeypatch.setattr(Image, "open", spy)
  assert limits.read_image_header(hf.png(3, 5), "x").width == 5
  assert opened == [["PNG"]]
  with pytest.raises(ServingError, match="cannot read an image size from the BMP header"):
    limits.read_image_header(b"BM" + b"\0" * 40, "x")
  assert opened[-1] == ["BMP"]


# --- esrgan-upscale's reader ---------------------------------------------------------------------

_READ = "from esrgan_tf.images import image_io\nimport hostile_fixtures as hf\n"


def test_reader_refuses_a_tiff_of_four_million_strips_before_pillow_parses_it(tmp_path):
  path = tmp_path / "strips.tif"
  path.write_bytes(hf.tiff_many_strips(4_000_000))  # 36 MB; 1.35 GB and 57 s before.
  outcome = hf.child_peak(_READ, f"image_io.read_image({str(path)!r})")
  assert "TIFF page 1 has 4,000,000 StripOffsets, over the limit of 131,072" in outcome["error"]
  assert outcome["seconds"] < 2 and outcome["growth"] < 20 * MB, outcome


def test_reader_counts_tiff_pages_itself(tmp_path):
  many = tmp_path / "pages.tif"
  many.write_bytes(hf.tiff_pages(20_000))  # 2 MB; Pillow's n_frames took 12.8 s.
  outcome = hf.child_peak(_READ, f"image_io.read_image({str(many)!r}, multi_frame='first')")
  assert "TIFF of more than 4,096 pages" in outcome["error"], outcome
  assert outcome["seconds"] < 2, outcome
  few = tmp_path / "few.tif"
  few.write_bytes(hf.tiff_pages(300))
  from esrgan_tf.images import image_io  # pylint: disable=g-import-not-at-top
  with pytest.raises(image_io.ImageError, match="300 frames"):
    image_io.read_image(str(few))
  image = image_io.read_image(str(few), multi_frame="first")
  assert image.size == (1, 1) and image.color[0, 0, 0] == 0.0  # page 0's pixel value 0
  with Image.open(few) as reference:
    assert reference.n_frames == 300  # Pillow agrees on the count.


def test_reader_decodes_only_the_first_frame_of_animations(tmp_path):
  from esrgan_tf.images import image_io  # pylint: disable=g-import-not-at-top
  for name, data in (("anim.webp", hf.animated_webp(frames=200, size=(64, 48))),
                     ("anim.png", hf.apng(frames=200, size=(64, 48)))):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(image_io.ImageError, match="200 frames"):
      image_io.read_image(str(path))
    outcome = hf.child_peak(_READ, f"image_io.read_image({str(path)!r}, multi_frame='first')"
                            ".color.shape")
    assert outcome["result"] == "(48, 64, 3)", outcome
    assert outcome["growth"] < 20 * MB, outcome
    with Image.open(path) as reference:
      first = np.asarray(reference.convert("RGB"), np.float32) / 255
    np.testing.assert_allclose(image_io.read_image(str(path), multi_frame="first").color, first)


def test_reader_still_refuses_gif_by_name(tmp_path):
  from esrgan_tf.images import image_io  # pylint: disable=g-import-not-at-top
  path = tmp_path / "x.gif"
  path.write_bytes(hf.gif((1, 1), [hf.gif_frame(1, 1), hf.gif_frame(1024, 1024)]))
  with pytest.raises(image_io.ImageError, match="unsupported format GIF"):
    image_io.read_image(str(path))
  assert not os.path.exists(tmp_path / "x_out.png")
