"""`upscale_video` end to end on tiny clips made with PyAV (tests/video_clips.py).

Each output is checked against independent references: the source file's own packets and
timestamps (read back with PyAV), and `esrgan-upscale`'s image path run on every frame decoded
alone (`video_clips.image_path_frames`), converted to Y'CbCr by swscale with the source's tags.
Lossless encoders (FFV1, x264 qp 0) make the comparison exact.
"""

from fractions import Fraction

import av
import numpy as np
import pytest
import video_clips

from esrgan_tf.inference import batch, tiling
from esrgan_tf.inference.video import colour, encoding, geometry, probe, segments
from esrgan_tf.inference.video.errors import VideoError
from esrgan_tf.inference.video.options import VideoOptions
from esrgan_tf.inference.video.upscale import upscale_video

# Tiles smaller than the clips, with overlap and pre-pad: the frames really go through tiling.
TILES = batch.Options(tiles=tiling.TileSpec(tile=16, overlap=4, pre_pad=2))
FFV1 = encoding.EncodeSettings(codec="ffv1")


@pytest.fixture(scope="module")
def engine():
  return video_clips.tiny_engine()


def _options(**kwargs):
  # Many small segments: every test also joins segments.
  return VideoOptions(**{"encode": FFV1, "checkpoint_seconds": 0, "min_segment_seconds": 0.05,
                         **kwargs})


def _times(path, index=None):
  frames, stream = video_clips.decode(path, index)
  return [f.pts * stream.time_base for f in frames]


def _timed_bytes(path, index):
  # (pts, dts, data) of each packet; the block duration Matroska stores is the muxer's to guess.
  return [p[:2] + p[3:] for p in video_clips.packets(path, index)]


def _yuv(rgb, pix_fmt, space=1, color_range=1):
  """Reference RGB → Y'CbCr with swscale and the given tags (plain PyAV, not our converter)."""
  return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
      format=pix_fmt, dst_colorspace=space, dst_color_range=color_range).to_ndarray()


def test_vfr_mkv_keeps_every_stream_timestamp_and_pixel(tmp_path, engine):
  src, dst = tmp_path / "vfr.mkv", tmp_path / "out.mkv"
  video_clips.vfr_mkv(src)

  result = upscale_video(str(src), str(dst), engine, TILES, _options())

  assert result.segments > 1 and not result.warnings
  # Timing: the same frames at the same times (20/40/60 ms apart).
  times = _times(src)
  assert _times(dst) == times and len(times) == 9
  assert [int(1000 * (b - a)) for a, b in zip(times, times[1:])][:3] == [20, 40, 60]
  # Pixels: each frame is the image path's output on that frame.
  expected = video_clips.image_path_frames(src, engine, TILES, str(tmp_path))
  frames, _ = video_clips.decode(dst)
  assert (frames[0].width, frames[0].height) == (80, 48)
  for got, rgb in zip(frames, expected):
    np.testing.assert_array_equal(got.to_ndarray(), _yuv(rgb, "yuv420p"))
  # Every other stream: packets byte-identical, metadata and dispositions kept.
  with av.open(str(src)) as a, av.open(str(dst)) as b:
    assert [s.type for s in b.streams] == [s.type for s in a.streams]
    for s, t in zip(a.streams, b.streams):
      assert t.disposition == s.disposition, s.index
      for key in ("language", "title", "filename", "mimetype"):
        assert t.metadata.get(key) == s.metadata.get(key), (s.index, key)
    assert b.metadata["title"] == "vfr test"
    assert [(c["start"] * c["time_base"], c["metadata"]["title"]) for c in b.chapters()] == [
        (Fraction(0), "One"), (Fraction(1, 5), "Two")]
    assert b.streams[4].data == a.streams[4].data  # the font attachment
  for index in (1, 2, 3):  # two audio tracks and the subtitle: same bytes at the same times
    assert _timed_bytes(dst, index) == _timed_bytes(src, index)
  assert not (tmp_path / ".out.mkv.parts").exists()


def test_mp4_output_converts_srt_to_mov_text_and_names_the_dropped_attachment(tmp_path, engine):
  src, dst = tmp_path / "vfr.mkv", tmp_path / "out.mp4"
  video_clips.vfr_mkv(src)
  lines = []

  result = upscale_video(str(src), str(dst), engine, TILES, _options(), report=lines.append)

  assert any("font.ttf" in line and "dropped" in line for line in lines)
  assert any("mov_text" in line and "[deu]" in line for line in lines)
  assert len(result.warnings) == 2
  assert _times(dst) == _times(src)
  with av.open(str(dst)) as b:
    # (MP4 keeps chapters in a text track of its own, a data stream without a codec context.)
    kinds = [(s.type, s.codec_context.name, s.metadata.get("language")) for s in b.streams
             if s.codec_context is not None]
    assert kinds == [("video", "ffv1", "und"), ("audio", "aac", "eng"), ("audio", "aac", "fra"),
                     ("subtitle", "mov_text", "deu")]
    texts = [(p.pts * p.time_base, sub.ass.split(b",,")[-1]) for p in b.demux(b.streams[3])
             if p.size > 2 for sub in p.decode()]
  # (mov_text styles a span; the closing tag at the end of the line is implied.)
  assert texts == [(Fraction(1, 25), b"Hallo {\\i1}Welt"), (Fraction(1, 5), b"Zweite Zeile")]
  for index in (1, 2):
    assert [p[3] for p in video_clips.packets(dst, index)] == [
        p[3] for p in video_clips.packets(src, index)]


def test_ten_bit_bt2020_pq_comes_out_ten_bit_with_its_tags(tmp_path, engine):
  src, dst = tmp_path / "hdr.mkv", tmp_path / "out.mkv"
  video_clips.hdr10_x265(src)
  lossless_x265 = encoding.EncodeSettings(codec="libx265", options=(("x265-params",
                                                                     "lossless=1"),))

  upscale_video(str(src), str(dst), engine, TILES, _options(encode=lossless_x265))

  info = probe.probe(str(dst))
  assert info.video.pix_fmt == "yuv420p10le" and info.video.codec == "hevc"
  assert info.video.colour == colour.ColourTags(range=1, primaries=9, trc=16, space=9,
                                                chroma_location="topleft")
  assert _times(dst) == _times(src)
  converter = colour.Converter("yuv420p10le", "yuv420p10le", info.video.colour)
  expected = video_clips.image_path_frames(src, engine, TILES, str(tmp_path), converter)
  frames, _ = video_clips.decode(dst)
  for got, rgb in zip(frames, expected):
    assert rgb.dtype == np.uint16  # the image path saw (and wrote) 16-bit PNGs
    np.testing.assert_array_equal(got.to_ndarray(), converter.from_rgb(rgb).to_ndarray())


def test_odd_size_source_and_the_chroma_rounding_rule(tmp_path, engine):
  src = tmp_path / "odd.mkv"
  video_clips.ffv1_clip(src, frames=3, width=33, height=17)

  upscale_video(str(src), str(tmp_path / "x2.mkv"), engine, TILES, _options())
  upscale_video(str(src), str(tmp_path / "half.mkv"), engine, TILES,
                _options(size=geometry.SizeRequest(outscale=1.5)))

  frames, _ = video_clips.decode(tmp_path / "x2.mkv")
  expected = video_clips.image_path_frames(src, engine, TILES, str(tmp_path))
  assert (frames[0].width, frames[0].height) == (66, 34)
  for got, rgb in zip(frames, expected):
    np.testing.assert_array_equal(got.to_ndarray(), _yuv(rgb, "yuv420p"))
  half, _ = video_clips.decode(tmp_path / "half.mkv")
  assert (half[0].width, half[0].height) == (48, 24)  # int(33·1.5) = 49 → 48, 25 → 24
  assert len(half) == 3


def test_fps_conversion_repeats_and_drops_on_a_constant_grid(tmp_path, engine):
  src, dst = tmp_path / "vfr.mkv", tmp_path / "out.mkv"
  video_clips.vfr_mkv(src, frames=6)  # frames at 0, 20, 60, 120, 140, 180 ms; ends at 240

  upscale_video(str(src), str(dst), engine, TILES, _options(fps=Fraction(25), audio="none"))

  times = _times(dst)
  assert times == [Fraction(k, 25) for k in range(6)]  # 0..200 ms every 40 ms
  # Tick k (k·40 ms) shows the last source frame at or before it: 0, 20, 60, 120, 140, 180 ms.
  frames, _ = video_clips.decode(dst)
  expected = video_clips.image_path_frames(src, engine, TILES, str(tmp_path))
  for got, source_index in zip(frames, [0, 1, 2, 3, 4, 5]):
    np.testing.assert_array_equal(got.to_ndarray(), _yuv(expected[source_index], "yuv420p"))


def test_start_and_duration_cut_a_preview_starting_at_zero(tmp_path, engine):
  src, dst = tmp_path / "vfr.mkv", tmp_path / "out.mkv"
  video_clips.vfr_mkv(src)  # frames at 0, 20, 60, 120, 140, 180, 240, 260, 300 ms

  upscale_video(str(src), str(dst), engine, TILES, _options(start=0.1, duration=0.1))

  assert _times(dst) == [Fraction(20, 1000), Fraction(40, 1000), Fraction(80, 1000)]
  audio = [p[0] for p in video_clips.packets(dst, 1)]
  assert audio and min(audio) >= 0 and max(audio) < 100


def test_audio_aac_and_none(tmp_path, engine):
  src = tmp_path / "vfr.mkv"
  video_clips.vfr_mkv(src, frames=3)
  upscale_video(str(src), str(tmp_path / "none.mkv"), engine, TILES, _options(audio="none"))
  upscale_video(str(src), str(tmp_path / "aac.mp4"), engine, TILES, _options(audio="aac"))
  with av.open(str(tmp_path / "none.mkv")) as c:
    assert [s.type for s in c.streams] == ["video", "subtitle", "attachment"]
  with av.open(str(tmp_path / "aac.mp4")) as c:
    audio = [(a.index, a.codec_context.name, a.metadata.get("language")) for a in c.streams.audio]
  assert [a[1:] for a in audio] == [("aac", "eng"), ("aac", "fra")]
  for index, _, _ in audio:  # re-encoded: new packets, as many (+1 for the encoder's delay)
    source = video_clips.packets(src, index)
    encoded = video_clips.packets(tmp_path / "aac.mp4", index)
    assert len(encoded) - len(source) in (0, 1)
    assert [p[3] for p in encoded] != [p[3] for p in source[:len(encoded)]]


def test_corrupt_packet_is_an_error_with_file_and_time_and_segments_are_kept(tmp_path, engine):
  good, bad = tmp_path / "good.mp4", tmp_path / "bad.mp4"
  video_clips.cfr_h264_aac(good, frames=12)
  when = video_clips.corrupt_copy(good, bad, packet_index=8)
  dst = tmp_path / "out.mp4"

  with pytest.raises(VideoError) as error:
    upscale_video(str(bad), str(dst), engine, TILES, _options())

  message = str(error.value)
  assert message.startswith(f"{bad}: at 00:00:00.{round(1000 * when):03d}: corrupt video data")
  assert not dst.exists()
  work = segments.workdir_for(str(dst))
  manifest = __import__("json").load(open(f"{work}/manifest.json"))
  assert manifest["segments"] and manifest["segments"][-1]["last_pts"] < when * 12800


def test_existing_output_is_not_replaced(tmp_path, engine):
  src, dst = tmp_path / "odd.mkv", tmp_path / "out.mkv"
  video_clips.ffv1_clip(src, frames=2, width=16, height=16)
  dst.write_bytes(b"keep me")
  with pytest.raises(VideoError, match="exists"):
    upscale_video(str(src), str(dst), engine, TILES, _options())
  assert dst.read_bytes() == b"keep me"
