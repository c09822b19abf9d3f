"""Multi-head cost: all heads from one trunk pass vs one single-scale model per scale.

`job_multihead` runs in a child (`jobs.run_job`), in one of three modes:
  timing           the shared model (every head from one trunk pass) and the separate models (one
                   RRDBNet per scale, same trunk size) built in one process and timed round-robin
                   (`measure_interleaved`, so that load drifting on a shared machine hits both
                   alike); also one head through `head_fn` vs the single model of that scale. The
                   separate models are the shared model's heads as RRDBNets (`to_rrdbnet`), so
                   the outputs are checked equal: both sides compute the same images.
  memory_shared    only the shared model in a fresh process: its peak RSS and weights.
  memory_separate  only the separate models (all loaded, as one server would hold them).
FLOP counts are the 3×3 convolutions (`measure.rrdbnet_flops_per_pixel`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from esrgan_tf.benchmarking import engines
from esrgan_tf.benchmarking import measure as measure_lib

MODES = ("timing", "memory_shared", "memory_separate")


def trunk_flops_per_pixel(arch: Mapping[str, Any]) -> float:
  """FLOPs per input pixel of the trunk alone (conv_first, the RRDBs, conv_body)."""
  a = {**measure_lib.ARCH_DEFAULTS, **dict(arch)}
  nf, gc = int(a["num_features"]), int(a["growth_channels"])
  conv = measure_lib.conv3x3_flops
  rdb = sum(conv(nf + j * gc, gc) for j in range(4)) + conv(nf + 4 * gc, nf)
  return float(conv(int(a["in_channels"]), nf) + int(a["num_blocks"]) * 3 * rdb + conv(nf, nf))


def flops_per_pixel(arch: Mapping[str, Any], scales: Sequence[int], shared: bool) -> float:
  """FLOPs per input pixel of every scale's image: one trunk + the heads (`shared`), or one
  whole single-scale network per scale."""
  total = sum(measure_lib.rrdbnet_flops_per_pixel({**arch, "scale": s}) for s in scales)
  if shared:
    total -= (len(scales) - 1) * trunk_flops_per_pixel(arch)
  return total


def _current_rss_mb(status_path: str = "/proc/self/status") -> float:
  """VmRSS (MB) now: the baseline before the first call."""
  try:
    with open(status_path, encoding="ascii", errors="replace") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) / 1024
  except (OSError, ValueError, IndexError):
    pass
  return float("nan")


def _shared_model(arch: Mapping[str, Any], scales: Sequence[int], seed: int = 0):
  import keras  # pylint: disable=g-import-not-at-top

  from esrgan_tf.models import MultiHeadRRDBNet  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  model = MultiHeadRRDBNet(**dict(arch), heads=[{"name": f"x{s}", "scale": s} for s in scales])
  model.build()
  return model


def _separate_models(arch: Mapping[str, Any], scales: Sequence[int], seed: int = 0) -> dict:
  return {f"x{s}": engines.build_generator({**arch, "scale": s}, seed=seed + s) for s in scales}


def _all_heads_fn(model):
  """x → [each head's image as numpy], one traced function (one trunk pass)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, model.in_channels],
                                              tf.float32)])
  def run(x):
    return {name: tf.cast(image, tf.float32) for name, image in model(x).items()}

  return lambda x: {name: image.numpy() for name, image in run(x).items()}


def _one_head_fn(model, head: str):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  run = tf.function(model.head_fn(head), input_signature=[
      tf.TensorSpec([None, None, None, model.in_channels], tf.float32)])
  return lambda x: run(x).numpy()


def _separate_fn(models: dict):
  """x → [each model's image], the models called one after the other (one function each)."""
  fns = {name: engines.tf_function_upscaler(model) for name, model in models.items()}
  return lambda x: {name: fn(x) for name, fn in fns.items()}


def job_multihead(job: Mapping[str, Any]) -> dict:
  """See the module docstring.

  Job keys: mode (`MODES`), arch (num_features, num_blocks, growth_channels, upsampler),
  scales (e.g. [2, 4, 8]), size (input side), warmup, repeats, intra_op/inter_op.

  Returns:
    timing: {"rows": {name: Timing.as_dict()} for shared_all, separate_all, shared_one,
      single_one; "one_scale", "max_abs_diff" (shared vs separate outputs), "params_shared",
      "params_separate"}. memory_*: {"median_s", "min_s", "runs", "rss_before_mb", "params"}
      (the child adds "max_rss_mb").
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  mode = job["mode"]
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  engines.set_threads(job)
  arch, scales = dict(job["arch"]), [int(s) for s in job["scales"]]
  x = engines.photo(int(job["size"]))
  warmup, repeats = int(job.get("warmup", 1)), int(job.get("repeats", 3))
  if mode == "timing":
    shared = _shared_model(arch, scales)
    separate = {name: shared.to_rrdbnet(name) for name in shared.head_names}
    one = f"x{scales[len(scales) // 2]}"
    fns = {"shared_all": _all_heads_fn(shared), "separate_all": _separate_fn(separate),
           "shared_one": _one_head_fn(shared, one),
           "single_one": engines.tf_function_upscaler(separate[one])}
    timings = measure_lib.measure_interleaved({k: (lambda f=f: f(x)) for k, f in fns.items()},
                                              warmup=warmup, repeats=repeats)
    outputs_shared, outputs_separate = timings["shared_all"][1], timings["separate_all"][1]
    diff = max(float(np.abs(outputs_shared[k] - outputs_separate[k]).max()) for k in separate)
    return {"rows": {k: t.as_dict() for k, (t, _) in timings.items()}, "one_scale": one,
            "max_abs_diff": diff, "params_shared": int(shared.count_params()),
            "params_separate": int(sum(m.count_params() for m in separate.values()))}
  if mode == "memory_shared":
    model = _shared_model(arch, scales)
    fn, params = _all_heads_fn(model), model.count_params()
  else:
    models = _separate_models(arch, scales)
    fn, params = _separate_fn(models), sum(m.count_params() for m in models.values())
  rss_before = _current_rss_mb()
  timing = measure_lib.measure(lambda: fn(x), warmup=warmup, repeats=repeats)
  return {**timing.as_dict(), "rss_before_mb": rss_before, "params": int(params)}
