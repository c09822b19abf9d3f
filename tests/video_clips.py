"""Tiny video files for the video tests, made with PyAV itself (no network, no ffmpeg binary).

Every maker writes a real container with real encoders; content is a moving gradient with noise
so that neighbouring frames differ and tiles see texture. Frame i of every clip is
`picture(i, width, height)`.
"""

import dataclasses
from fractions import Fraction
import os

import av
import image_fixtures
import numpy as np
from PIL import Image

from esrgan_tf.images import image_io, pixels
from esrgan_tf.inference import batch

MS = Fraction(1, 1000)
VFR_DURATIONS_MS = (20, 40, 60)


def picture(i: int, width: int, height: int, bits: int = 8) -> np.ndarray:
  """Frame i: an RGB gradient that moves with i, plus seeded noise ([H, W, 3] uint8/uint16)."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float64)
  base = np.stack([(x + 3 * i) / width, (y + 2 * i) / height, 0.5 + 0.4 * np.sin(x / 3 + i)],
                  axis=-1) % 1.0
  noise = np.random.default_rng(i).uniform(-0.05, 0.05, base.shape)
  peak = 255 if bits == 8 else 65535
  dtype = np.uint8 if bits == 8 else np.uint16
  return np.rint(np.clip(base + noise, 0, 1) * peak).astype(dtype)


def _video_frame(i, width, height, pix_fmt, colorspace=1, color_range=1):
  bits = 16 if "10" in pix_fmt else 8
  rgb = picture(i, width, height, bits)
  frame = av.VideoFrame.from_ndarray(rgb, format="rgb24" if bits == 8 else "rgb48le")
  return frame.reformat(format=pix_fmt, dst_colorspace=colorspace, dst_color_range=color_range)


def _audio_packets(out, stream, seconds: float, seed: int):
  samples, pts = int(seconds * stream.sample_rate), 0
  rng = np.random.default_rng(seed)
  while pts < samples:
    frame = av.AudioFrame.from_ndarray(
        (rng.standard_normal((2, 1024)) * 0.1).astype(np.float32), format="fltp",
        layout="stereo")
    frame.sample_rate, frame.pts = stream.sample_rate, pts
    pts += 1024
    out.mux(stream.encode(frame))
  out.mux(stream.encode())


def cfr_h264_aac(path, frames: int = 10, width: int = 48, height: int = 32, rate: int = 25):
  """Constant rate H.264 (BT.709 limited, tagged) + AAC (English) in MP4."""
  with av.open(str(path), "w") as out:
    video = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast", "crf": "10"})
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    cc = video.codec_context
    cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 1, 1, 1, 1
    audio = out.add_stream("aac", rate=48000)
    audio.layout = "stereo"
    audio.metadata["language"] = "eng"
    out.metadata["title"] = "cfr test"
    for i in range(frames):
      frame = _video_frame(i, width, height, "yuv420p")
      frame.pts = i
      out.mux(video.encode(frame))
    out.mux(video.encode())
    _audio_packets(out, audio, frames / rate, seed=1)


def vfr_mkv(path, frames: int = 9, width: int = 40, height: int = 24):
  """Variable rate FFV1 in Matroska (frames of 20/40/60 ms), two AAC tracks of different
  languages and dispositions, an SRT subtitle, two chapters, a font attachment, a title."""
  with av.open(str(path), "w") as out:
    video = out.add_stream("ffv1")
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.codec_context.time_base = video.time_base = MS
    video.codec_context.colorspace, video.codec_context.color_range = 1, 1
    video.metadata["title"] = "picture"
    tracks = []
    for language, title, disposition in (("eng", "Main", av.stream.Disposition.default),
                                         ("fra", "Commentaire", av.stream.Disposition.comment)):
      audio = out.add_stream("aac", rate=48000)
      audio.layout = "stereo"
      audio.metadata["language"], audio.metadata["title"] = language, title
      audio.disposition = disposition
      tracks.append(audio)
    subtitle = out.add_mux_stream("subrip")
    subtitle.metadata["language"] = "deu"
    subtitle.disposition = av.stream.Disposition.forced
    subtitle.time_base = MS
    out.add_attachment("font.ttf", "application/x-truetype-font", b"not really a font" * 10)
    out.metadata["title"] = "vfr test"
    out.set_chapters([
        {"id": 1, "start": 0, "end": 200, "time_base": MS, "metadata": {"title": "One"}},
        {"id": 2, "start": 200, "end": 360, "time_base": MS, "metadata": {"title": "Two"}}])
    t = 0
    for i in range(frames):
      frame = _video_frame(i, width, height, "yuv420p")
      frame.pts, frame.time_base = t, MS
      out.mux(video.encode(frame))
      t += VFR_DURATIONS_MS[i % 3]
    out.mux(video.encode())
    for k, audio in enumerate(tracks):
      _audio_packets(out, audio, t / 1000, seed=10 + k)
    for start, text in ((40, "Hallo <i>Welt</i>"), (200, "Zweite Zeile")):
      packet = av.Packet(text.encode())
      packet.stream, packet.time_base = subtitle, MS
      packet.pts = packet.dts = start
      packet.duration = 100
      out.mux(packet)


def hdr10_x265(path, frames: int = 4, width: int = 32, height: int = 24):
  """10-bit HEVC (x265), BT.2020 / PQ / BT.2020 NCL, limited range, top-left chroma siting."""
  with av.open(str(path), "w") as out:
    video = out.add_stream("libx265", rate=24, options={
        "x265-params": "log-level=error:lossless=1", "chroma_sample_location": "topleft"})
    video.width, video.height, video.pix_fmt = width, height, "yuv420p10le"
    cc = video.codec_context
    cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 9, 1, 9, 16
    for i in range(frames):
      frame = _video_frame(i, width, height, "yuv420p10le", colorspace=9)
      frame.pts = i
      out.mux(video.encode(frame))
    out.mux(video.encode())


def ffv1_clip(path, frames: int, width: int, height: int, rate: int = 25,
              pix_fmt: str = "yuv420p"):
  """FFV1 in Matroska (odd sizes allowed), constant rate."""
  with av.open(str(path), "w") as out:
    video = out.add_stream("ffv1", rate=rate)
    video.width, video.height, video.pix_fmt = width, height, pix_fmt
    video.codec_context.colorspace, video.codec_context.color_range = 1, 1
    for i in range(frames):
      frame = _video_frame(i, width, height, pix_fmt)
      frame.pts = i
      out.mux(video.encode(frame))
    out.mux(video.encode())


def corrupt_copy(src, dst, packet_index: int) -> Fraction:
  """Copies a video-only file with the second half of packet `packet_index` zeroed (damage the
  H.264 decoder notices: flipping a few bytes of residual data can decode silently to wrong
  pixels, which no decoder can detect); returns the packet's time."""
  with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
    stream = inp.streams.video[0]
    target = out.add_stream_from_template(stream)
    when = None
    for k, packet in enumerate(p for p in inp.demux(stream) if p.size):
      if k == packet_index:
        data = bytes(packet)
        damaged = av.Packet(data[:len(data) // 2] + bytes(len(data) - len(data) // 2))
        damaged.pts, damaged.dts, damaged.duration = packet.pts, packet.dts, packet.duration
        damaged.time_base, damaged.is_keyframe = packet.time_base, packet.is_keyframe
        packet, when = damaged, packet.pts * packet.time_base
      packet.stream = target
      out.mux(packet)
  return when


def decode(path, index: int = None):
  """(frames, stream) of the first video stream: every decoded av.VideoFrame, in order."""
  container = av.open(str(path))
  stream = container.streams.video[0] if index is None else container.streams[index]
  frames = list(container.decode(stream))
  return frames, stream


def packets(path, index: int) -> list[tuple]:
  """(pts, dts, duration, bytes) of every packet of stream `index`."""
  with av.open(str(path)) as container:
    return [(p.pts, p.dts, p.duration, bytes(p)) for p in container.demux(
        container.streams[index]) if p.size]


def image_path_frames(src, engine, options, tmp_dir, converter=None) -> list:
  """`esrgan-upscale`'s image path on each frame of `src` decoded alone, as RGB arrays.

  Each frame is decoded by a fresh decoder, saved as a PNG (8-bit frames as PyAV's plain rgb24
  conversion gives them; deeper frames as 16-bit RGB from `converter`, whose matrix is checked
  against the ITU formulas in test_video_colour.py), upscaled by `batch.upscale_file` (what
  esrgan-upscale runs for images) and read back.
  """
  frames, _ = decode(src)
  outputs = []
  for i, frame in enumerate(frames):
    png, out = os.path.join(tmp_dir, f"frame{i}.png"), os.path.join(tmp_dir, f"frame{i}_x.png")
    if converter is None:
      Image.fromarray(frame.to_ndarray(format="rgb24")).save(png)
    else:
      with open(png, "wb") as f:
        f.write(image_fixtures.raw_png(converter.to_rgb(frame)))
    batch.upscale_file(png, out, engine, dataclasses.replace(options, overwrite=True))
    loaded = image_io.read_image(out)
    outputs.append(pixels.from_float(loaded.color, loaded.bit_depth))
  return outputs


def tiny_engine():
  """A random-init ×2 RRDBNet (nf 8, 1 block, seed 0) as an engine: the video tests' model."""
  import keras  # pylint: disable=g-import-not-at-top

  from esrgan_tf.inference import engine as engine_lib  # pylint: disable=g-import-not-at-top
  from esrgan_tf.models import RRDBNet  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=2)
  model.build((None, None, None, 3))
  return engine_lib.keras_engine(model, name="tiny RRDBNet x2")
