"""esrgan-upscale with videos (subprocess, real exit codes), mixed with images in one batch.

The frames of the decoded clip are saved as PNGs in the same input directory, so one run of the
command also makes the reference: every upscaled video frame must equal the command's own PNG
output for that frame (x264 at qp 0 is lossless), converted to Y'CbCr by swscale with the clip's
BT.709 tags.
"""

import os
import subprocess
import sys

import av
import numpy as np
from PIL import Image
import pytest
import video_clips


def _cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "esrgan_tf.cli.upscale", *args],
                        capture_output=True, text=True, env=env, timeout=600, check=False)


@pytest.mark.slow
def test_mixed_batch_with_a_good_clip_a_corrupt_clip_and_images(tmp_path, tiny_keras_model):
  inputs, out = tmp_path / "in", tmp_path / "out"
  inputs.mkdir()
  clip = inputs / "clip.mp4"
  video_clips.cfr_h264_aac(clip, frames=6)
  when = video_clips.corrupt_copy(clip, tmp_path / "bad.mp4", packet_index=3)
  # A video by its content, not its name (and its output goes in the demuxer's container, MP4).
  os.rename(tmp_path / "bad.mp4", inputs / "bad.dat")
  frames, _ = video_clips.decode(clip)
  for i, frame in enumerate(frames):
    Image.fromarray(frame.to_ndarray(format="rgb24")).save(inputs / f"frame{i}.png")

  result = _cli(f"--model={tiny_keras_model(2)}", f"--input={inputs}",
                f"--input={inputs / 'bad.dat'}", f"--output={out}", "--codec=libx264",
                "--encoder_option=qp=0", "--tile=16", "--tile_overlap=4", "--pre_pad=2",
                "--checkpoint_seconds=0")

  assert result.returncode == 1, result.stderr
  assert "7 upscaled, 1 failed" in result.stdout
  failed = [line for line in result.stderr.splitlines() if line.startswith("FAILED")]
  assert len(failed) == 1 and "bad.dat" in failed[0], result.stderr
  assert f"at 00:00:00.{round(1000 * when):03d}: corrupt video data" in failed[0]
  assert "finished segments kept" in failed[0]
  assert sorted(os.listdir(out)) == sorted(
      [".bad_out.mp4.parts", "clip_out.mp4"] + [f"frame{i}_out.png" for i in range(6)])

  upscaled, stream = video_clips.decode(out / "clip_out.mp4")
  _, source = video_clips.decode(clip)
  assert [f.pts * stream.time_base for f in upscaled] == [f.pts * source.time_base
                                                          for f in frames]
  for i, frame in enumerate(upscaled):
    reference = np.asarray(Image.open(out / f"frame{i}_out.png").convert("RGB"))
    expected = av.VideoFrame.from_ndarray(reference, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=1, dst_color_range=1)
    np.testing.assert_array_equal(frame.to_ndarray(), expected.to_ndarray())
  assert (frame.colorspace, frame.color_range, frame.color_primaries, frame.color_trc) == (
      1, 1, 1, 1)
  assert video_clips.packets(out / "clip_out.mp4", 1) == video_clips.packets(clip, 1)


def test_list_encoders_and_image_batches_do_not_need_a_video(tmp_path):
  listing = _cli("--list_encoders")
  assert listing.returncode == 0, listing.stderr
  assert "libx264" in listing.stdout and "ffv1" in listing.stdout
  # An image batch plans without importing PyAV.
  code = ("import sys; from esrgan_tf.inference import batch; "
          "from esrgan_tf.cli import video_flags; "
          f"sources, _ = batch.expand_inputs([{str(tmp_path)!r}], "
          "extensions=video_flags.media_extensions()); "
          "images, videos, _ = video_flags.split_sources(sources); "
          "assert [len(images), len(videos)] == [1, 0]; assert 'av' not in sys.modules")
  Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
  check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
  assert check.returncode == 0, check.stderr


def test_a_file_named_like_a_video_that_is_none_is_reported_as_such(tmp_path):
  from esrgan_tf.inference.video import outputs  # pylint: disable=g-import-not-at-top
  junk, text, clip = tmp_path / "junk.mkv", tmp_path / "notes.mp4", tmp_path / "clip.mp4"
  junk.write_bytes(bytes(range(256)) * 12)
  text.write_text("not a video")
  video_clips.cfr_h264_aac(clip, frames=2)
  for path in (junk, text):
    assert not outputs.is_video(str(path))
    assert outputs.video_name_problem(str(path)).startswith("not a video FFmpeg can read")
  assert outputs.is_video(str(clip))
  assert outputs.video_name_problem(str(tmp_path / "photo.dat")) == ""
