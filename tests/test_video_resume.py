"""Resuming a video after its process was killed (SIGKILL) or terminated (SIGTERM).

A real child process upscales a clip with a model slowed down to 0.1 s per frame (so that it is
still running when killed); once its manifest lists two finished segments it is killed. The
resumed run must produce exactly the file an uninterrupted run produces (lossless FFV1: same
frames, same timestamps), and a rerun with other settings must be refused.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import video_clips

from esrgan_tf.inference import batch, tiling
from esrgan_tf.inference.video import encoding, segments
from esrgan_tf.inference.video.errors import VideoError
from esrgan_tf.inference.video.options import VideoOptions
from esrgan_tf.inference.video.upscale import upscale_video

TILES = batch.Options(tiles=tiling.TileSpec(tile=16, overlap=4, pre_pad=2))
OPTIONS = VideoOptions(encode=encoding.EncodeSettings(codec="ffv1"), checkpoint_seconds=0,
                       min_segment_seconds=0.1)
FRAMES = 30

CHILD = textwrap.dedent("""
    import sys, time
    import keras
    from esrgan_tf.inference import batch, tiling
    from esrgan_tf.inference import engine as engine_lib
    from esrgan_tf.cli import video_flags
    from esrgan_tf.inference.video import encoding
    from esrgan_tf.inference.video.options import VideoOptions
    from esrgan_tf.inference.video.upscale import upscale_video
    from esrgan_tf.models import RRDBNet

    keras.utils.set_random_seed(0)
    model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=2)
    model.build((None, None, None, 3))
    engine = engine_lib.keras_engine(model, name="tiny RRDBNet x2")
    fast = engine.fn

    def slow(images):
      time.sleep(0.1)
      return fast(images)

    engine.fn = slow
    video_flags._sigterm_as_interrupt()  # what esrgan-upscale does: SIGTERM → KeyboardInterrupt
    options = VideoOptions(encode=encoding.EncodeSettings(codec="ffv1"), checkpoint_seconds=0,
                           min_segment_seconds=0.1)
    try:
      upscale_video(sys.argv[1], sys.argv[2], engine,
                    batch.Options(tiles=tiling.TileSpec(tile=16, overlap=4, pre_pad=2)), options)
    except KeyboardInterrupt:
      sys.exit(130)
    """)


@pytest.fixture(scope="module")
def engine():
  return video_clips.tiny_engine()


def _finished_segments(dst) -> int:
  try:
    with open(os.path.join(segments.workdir_for(str(dst)), segments.MANIFEST)) as f:
      return len(json.load(f)["segments"])
  except (OSError, ValueError):
    return 0


def _kill_after_two_segments(tmp_path, src, dst, sig):
  script = tmp_path / "child.py"
  script.write_text(CHILD)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  child = subprocess.Popen([sys.executable, str(script), str(src), str(dst)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 240
  while _finished_segments(dst) < 2:
    assert child.poll() is None, child.communicate()
    assert time.monotonic() < deadline, "the child made no segments"
    time.sleep(0.05)
  child.send_signal(sig)
  _, stderr = child.communicate(timeout=60)
  return child.returncode, stderr


def _decoded(path):
  frames, stream = video_clips.decode(path)
  return [f.pts * stream.time_base for f in frames], [f.to_ndarray() for f in frames]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_the_same_file(tmp_path, engine, sig):
  src, dst = tmp_path / "clip.mkv", tmp_path / "out.mkv"
  video_clips.ffv1_clip(src, frames=FRAMES, width=24, height=16)

  code, stderr = _kill_after_two_segments(tmp_path, src, dst, sig)

  assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130), stderr
  assert not dst.exists()  # nothing half-written under the final name
  done = _finished_segments(dst)
  assert 2 <= done
  work = segments.workdir_for(str(dst))
  names = sorted(os.listdir(work))
  if sig == signal.SIGTERM:  # the segment in progress was removed on the way out
    assert not [n for n in names if n.endswith(".tmp")]

  # Another setting (the tile size) is refused, naming what differs; the work is left alone.
  with pytest.raises(VideoError, match=r"cannot resume.*differs: tiles\.tile"):
    upscale_video(str(src), str(dst), engine,
                  batch.Options(tiles=tiling.TileSpec(tile=12, overlap=4, pre_pad=2)),
                  OPTIONS)
  assert _finished_segments(dst) == done

  resumed = upscale_video(str(src), str(dst), engine, TILES, OPTIONS)
  whole = upscale_video(str(src), str(tmp_path / "whole.mkv"), engine, TILES, OPTIONS)

  assert 0 < resumed.resumed_frames < FRAMES and resumed.frames == FRAMES
  assert whole.resumed_frames == 0
  times, pixels = _decoded(dst)
  whole_times, whole_pixels = _decoded(tmp_path / "whole.mkv")
  assert times == whole_times == _decoded(src)[0]
  for a, b in zip(pixels, whole_pixels):
    np.testing.assert_array_equal(a, b)
  assert not os.path.exists(work)


def test_a_changed_input_is_refused(tmp_path, engine):
  src, dst = tmp_path / "clip.mkv", tmp_path / "out.mkv"
  video_clips.ffv1_clip(src, frames=3, width=16, height=16)
  work = segments.Workdir.open(str(dst), {"input": {"size": 1}, "settings": {}})
  work.progress.segments.append(segments.Segment("seg_00000.mp4", 1, 0, 0))
  work.save()
  with pytest.raises(VideoError, match=r"differs: .*input\.path"):
    upscale_video(str(src), str(dst), engine, TILES, OPTIONS)
  result = upscale_video(str(src), str(dst), engine, TILES,
                         VideoOptions(**{**OPTIONS.__dict__, "overwrite": True}))
  assert result.frames == 3 and result.resumed_frames == 0
