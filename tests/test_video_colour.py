"""Colour conversions and output sizes of the video path against hand-derived values.

References: ITU-R BT.709-6 / BT.601-7 / BT.2020-2 luma coefficients and the limited-range code
mapping Y = 16·2^(n−8) + 219·2^(n−8)·Y', C = 128·2^(n−8) + 224·2^(n−8)·C', computed here in
plain Python (not with the module's helpers).
"""

import av
import numpy as np
import pytest

from esrgan_tf.inference.video import colour, encoding, geometry

# (AVColorSpace, Kr, Kb) from the ITU recommendations.
MATRICES = [(1, 0.2126, 0.0722), (6, 0.299, 0.114), (9, 0.2627, 0.0593)]


def _expected_codes(rgb, kr, kb, bits):
  r, g, b = (v / 255.0 for v in rgb)
  y = kr * r + (1 - kr - kb) * g + kb * b
  cb, cr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
  s = 2 ** (bits - 8)
  return [round(16 * s + 219 * s * y), round(128 * s + 224 * s * cb),
          round(128 * s + 224 * s * cr)]


def _planes(frame):
  """(Y, Cb, Cr) sample at the top-left of a 4:2:0 frame."""
  return [int(np.frombuffer(p, np.uint16 if "10" in frame.format.name else np.uint8)[0])
          for p in frame.planes]


@pytest.mark.parametrize("space,kr,kb", MATRICES)
@pytest.mark.parametrize("bits,pix_fmt", [(8, "yuv420p"), (10, "yuv420p10le")])
def test_rgb_frames_are_encoded_with_the_source_matrix(space, kr, kb, bits, pix_fmt):
  tags = colour.ColourTags(range=1, primaries=1, trc=1, space=space)
  converter = colour.Converter(pix_fmt, pix_fmt, tags)
  rgb = (200, 50, 100)
  array = np.empty((4, 6, 3), np.uint8 if bits == 8 else np.uint16)
  array[...] = rgb if bits == 8 else [v * 257 for v in rgb]

  frame = converter.from_rgb(array)

  assert frame.format.name == pix_fmt
  assert (frame.colorspace, frame.color_range) == (space, 1)
  assert _planes(frame) == _expected_codes(rgb, kr, kb, bits)


def test_an_untagged_conversion_would_shift_a_bt709_source():
  # The failure the tags prevent: BT.601 codes for a BT.709 source differ by far more than
  # rounding.
  bt709 = _expected_codes((200, 50, 100), 0.2126, 0.0722, 8)
  bt601 = _expected_codes((200, 50, 100), 0.299, 0.114, 8)
  assert abs(bt709[0] - bt601[0]) > 10
  untagged = av.VideoFrame.from_ndarray(np.full((4, 6, 3), (200, 50, 100), np.uint8),
                                        format="rgb24").reformat(format="yuv420p")
  assert _planes(untagged) == bt601


@pytest.mark.parametrize("pix_fmt,black,white,peak", [("yuv420p", 16, 235, 255),
                                                      ("yuv420p10le", 64, 940, 65535)])
def test_limited_range_white_and_black_round_trip_exactly(pix_fmt, black, white, peak):
  converter = colour.Converter(pix_fmt, pix_fmt, colour.ColourTags(range=1, space=9))
  array = np.zeros((4, 4, 3), np.uint8 if peak == 255 else np.uint16)
  array[:, 2:] = peak

  frame = converter.from_rgb(array)
  luma = frame.to_ndarray()[:4]

  assert (luma[0, 0], luma[0, 3]) == (black, white)
  # And back: swscale's own 16-bit RGB path would give 65283 for 940 (see colour.py).
  back = converter.to_rgb(frame)
  assert back[0, 3].tolist() == [peak] * 3 and back[0, 0].tolist() == [0, 0, 0]


def _planes444(frame):
  """[3, H, W] samples of a 16-bit-per-sample planar frame (rows may be padded)."""
  return np.stack([np.frombuffer(p, np.uint16).reshape(frame.height, -1)[:, :frame.width]
                   for p in frame.planes]).astype(int)


def test_ten_bit_round_trip_stays_within_one_code():
  converter = colour.Converter("yuv444p10le", "yuv444p10le", colour.ColourTags(range=1, space=9))
  rgb = np.random.default_rng(0).integers(0, 65536, (8, 8, 3), dtype=np.uint16)
  codes = _planes444(converter.from_rgb(rgb))
  again = _planes444(converter.from_rgb(converter.to_rgb(converter.from_rgb(rgb))))
  assert codes.max() <= 1023 and np.abs(codes - again).max() <= 1


def test_full_range_yuvj_source_keeps_full_range():
  converter = colour.Converter("yuvj420p", "yuvj420p", colour.ColourTags(range=2, space=5))
  frame = converter.from_rgb(np.full((4, 4, 3), 255, np.uint8))
  assert frame.to_ndarray()[0, 0] == 255 and frame.color_range == 2


def test_unsupported_matrix_is_refused_by_name():
  with pytest.raises(Exception, match="ICtCp"):
    colour.Converter("yuv420p10le", "yuv420p10le", colour.ColourTags(space=14), path="x.mkv")


def test_chroma_location_is_read_from_ffmpegs_verbose_stream_line():
  dump = ("  Stream #0:0: Video: h264 (High), 1 reference frame, yuv420p(tv, bt709, "
          "progressive, topleft), 64x48\n  Stream #0:1: Audio: aac")
  assert colour.chroma_location_from_dump(dump, 0) == "topleft"
  assert colour.chroma_location_from_dump(dump, 1) == ""


@pytest.mark.parametrize("source,scale,pix_fmt,request_,output,resize", [
    ((33, 17), 2, "yuv420p", geometry.SizeRequest(), (66, 34), False),
    ((33, 17), 3, "yuv420p", geometry.SizeRequest(), (98, 50), False),  # crop 1 column/row
    ((33, 17), 3, "yuv444p", geometry.SizeRequest(), (99, 51), False),
    ((33, 17), 3, "yuv422p", geometry.SizeRequest(), (98, 51), False),
    ((33, 17), 2, "yuv420p", geometry.SizeRequest(outscale=1.5), (48, 24), True),  # 49x25
    ((640, 360), 4, "yuv420p", geometry.SizeRequest(width=1000), (1000, 562), True),
    ((640, 360), 4, "yuv420p", geometry.SizeRequest(height=721), (1282, 720), True),
    ((640, 360), 4, "yuv420p", geometry.SizeRequest(outscale=4), (2560, 1440), False),
])
def test_output_size_rule(source, scale, pix_fmt, request_, output, resize):
  plan = geometry.plan(source, scale, pix_fmt, request_)
  assert plan.output == output and plan.resize == resize
  assert plan.model == (source[0] * scale, source[1] * scale)


def test_size_request_refuses_outscale_with_width():
  with pytest.raises(ValueError, match="not both"):
    geometry.SizeRequest(outscale=2, width=100)


def test_auto_codec_keeps_the_family_where_the_container_holds_it():
  auto = encoding.EncodeSettings()
  assert encoding.choose_codec(auto, "hevc", "matroska", "x") == "libx265"
  assert encoding.choose_codec(auto, "ffv1", "matroska", "x") == "ffv1"
  assert encoding.choose_codec(auto, "mpeg4", "mp4", "x") == "libx264"
  assert encoding.choose_codec(auto, "h264", "webm", "x") == "libvpx-vp9"
  assert encoding.choose_pix_fmt("libx264", "yuv420p10le") == "yuv420p10le"
  assert encoding.choose_pix_fmt("libx264", "gbrp") == "yuv444p"
  with pytest.raises(Exception, match="cannot hold"):
    encoding.choose_codec(encoding.EncodeSettings(codec="ffv1"), "h264", "webm", "x.webm")


def test_encoder_options_are_checked_by_name():
  options = encoding.encoder_options("libx265", encoding.EncodeSettings(
      crf=20, preset="fast", options=encoding.parse_options(["x265-params=aq-mode=1"])))
  assert options == {"crf": "20", "preset": "fast", "x265-params": "log-level=error:aq-mode=1"}
  encoding.check_options("libx265", options, "x.mkv")
  with pytest.raises(Exception, match="libx264 has no option nonsense"):
    encoding.check_options("libx264", {"nonsense": "1"}, "x.mkv")
  with pytest.raises(ValueError, match="KEY=VALUE"):
    encoding.parse_options(["crf"])
