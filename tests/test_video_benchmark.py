"""The video section's job (scripts/benchmark.py --sections=video) on a tiny clip.

Runs in this process with the real realesr-animevideov3 weights (the `reference` extra's ncnn
files) on a 48x32 clip: the job's three timings exist, and the clip it makes is what it says.
"""

import av

from esrgan_tf.benchmarking import video as video_bench


def test_make_clip_is_an_h264_clip_of_the_size_and_length(tmp_path):
  path = str(tmp_path / "clip.mp4")
  video_bench.make_clip(path, (40, 24), frames=5)
  with av.open(path) as container:
    frames = list(container.decode(video=0))
  assert len(frames) == 5 and (frames[0].width, frames[0].height) == (40, 24)
  assert frames[0].colorspace == 1  # tagged BT.709 like HD sources


def test_video_job_times_end_to_end_model_only_and_ncnn():
  result = video_bench.job_video({"model": "REALESRGAN_ANIMAVIDEOV3_UP4X", "width": 48,
                                  "height": 32, "frames": 2})
  assert result["output"] == [192, 128] and result["frames"] == 2
  for key in ("e2e_s", "model_only_s", "ncnn_s"):
    assert result[key] > 0, key
  # The model calls are part of each run (and all of the model-only run's engine time).
  assert 0 < result["e2e_model_s"] < result["e2e_s"]
  assert 0 < result["engine_s"] <= result["model_only_s"]
