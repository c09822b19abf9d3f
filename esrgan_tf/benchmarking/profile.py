"""Where the fp32 time goes: per-op time of one forward pass, at two levels, for the report.

TF level: one call of `engines.tf_function_upscaler` (the graph users run, after Grappler's
oneDNN rewrites: conv + bias + LeakyReLU and conv + residual-add fusions) under the TF profiler;
op durations are summed by op type. With 2 inter-op threads ops can overlap, so the shares are of
the summed op time, not of the wall time.

oneDNN level: with `ONEDNN_VERBOSE=1` in the child's environment oneDNN prints one line per
primitive execution (`onednn_verbose,...,exec,cpu,<kind>,<impl>,...,<ms>`); one call's lines are
captured from file descriptor 1 and summed by primitive kind (convolution, reorder, eltwise, ...).
Reorders are the layout conversions between TF's NHWC and oneDNN's blocked formats.
"""

from __future__ import annotations

import collections
import ctypes
import glob
import os
import re
import sys
import tempfile
from typing import Any, Callable, Mapping

from esrgan_tf.benchmarking import engines, measure

# TF op type → report category (first match wins).
_CATEGORIES = (
    ("conv (incl. fused bias/LeakyReLU/add)", ("Conv2D",)),
    ("concat (dense-block inputs)", ("Concat",)),
    ("LeakyReLU (unfused)", ("LeakyRelu",)),
    ("residual scaling ×0.2 (Mul)", ("Mul",)),
    ("residual add (unfused)", ("AddV2", "Add", "AddN")),
    ("nearest upsampling", ("Resize",)),
    ("layout / transpose", ("Transpose", "ToTf", "Reorder", "Reshape")),
)


def categorize(op_type: str) -> str:
  """The report category of a TF op type (e.g. "_MklNativeFusedConv2D" → conv)."""
  for name, keys in _CATEGORIES:
    if any(key in op_type for key in keys):
      return name
  return "other (" + op_type + ")"


def parse_onednn_verbose(text: str) -> dict:
  """Sums `onednn_verbose` exec lines by primitive kind.

  Args:
    text: Captured stdout with lines like
      `onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core,...,0.0700684`
      (oneDNN ≥ 3.1; older versions omit the `v1,primitive` fields).

  Returns:
    {kind: {"ms": summed time, "count": executions}}, plus for convolutions "fused_eltwise" and
    "fused_sum" counts (post-ops LeakyReLU / residual add done inside the conv).
  """
  out = collections.defaultdict(lambda: {"ms": 0.0, "count": 0})
  for line in text.splitlines():
    fields = line.strip().split(",")
    if not fields or fields[0] != "onednn_verbose" or "exec" not in fields[:4]:
      continue
    kind = fields[fields.index("exec") + 2]  # exec, engine (cpu), kind
    try:
      ms = float(fields[-1])
    except ValueError:
      continue
    out[kind]["ms"] += ms
    out[kind]["count"] += 1
    if kind == "convolution":  # e.g. "attr-post-ops:sum+eltwise_relu:0.2"
      post = re.search(r"attr-post-ops:(\S+)", line)
      post = post.group(1) if post else ""
      out[kind]["fused_eltwise"] = out[kind].get("fused_eltwise", 0) + ("eltwise" in post)
      out[kind]["fused_sum"] = out[kind].get("fused_sum", 0) + ("sum" in post)
  return {k: dict(v) for k, v in out.items()}


def _capture_fd1(fn: Callable[[], Any]) -> str:
  """Runs `fn` with file descriptor 1 (C stdout, where oneDNN prints) sent to a temporary file."""
  libc = ctypes.CDLL(None)
  sys.stdout.flush()
  libc.fflush(None)
  saved = os.dup(1)
  with tempfile.TemporaryFile() as f:
    os.dup2(f.fileno(), 1)
    try:
      fn()
      libc.fflush(None)
    finally:
      os.dup2(saved, 1)
      os.close(saved)
    f.seek(0)
    return f.read().decode("utf-8", errors="replace")


def _tf_op_times(fn: Callable[[], Any]) -> dict:
  """{op type: summed µs} of one call of `fn` under the TF profiler (`tf.profiler.experimental`).

  The trace (an XSpace protobuf, `*.xplane.pb`) has one event per executed op on the host's
  `tf_Compute` lines, named "<node name>:<op type>"; other events (executor bookkeeping) are
  named "Class::Method" and are skipped.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-direct-tensorflow-import
  times = collections.Counter()
  with tempfile.TemporaryDirectory(prefix="esrgan_profile_") as logdir:
    tf.profiler.experimental.start(logdir)
    try:
      fn()
    finally:
      tf.profiler.experimental.stop()
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
      raise RuntimeError(f"the TF profiler wrote no trace under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[0], "rb") as f:
      space.ParseFromString(f.read())
  for plane in space.planes:
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):
        continue
      for event in line.events:
        match = re.match(r"^[^:]+:(\w+)$", plane.event_metadata[event.metadata_id].name)
        if match:
          times[match.group(1)] += event.duration_ps / 1e6
  return dict(times)


def job_profile(job: Mapping[str, Any]) -> dict:
  """fp32 per-op breakdown of one forward pass (run with ONEDNN_VERBOSE=1 in the environment).

  Job keys: arch, weights ("auto" / "" / a path), size, repeats.

  Returns:
    {"weights", "wall": `Timing.as_dict()` of the tf.function, "tf_ops": {op type: µs},
     "onednn": `parse_onednn_verbose` of one call}.
  """
  engines.set_threads(job)
  weights = engines.resolve_weights(job)
  model = engines.build_generator(job["arch"], weights)
  fn = engines.tf_function_upscaler(model)
  x = engines.photo(int(job["size"]))
  result = {"weights": weights or "random init (seed 0)"}
  fn(x)  # Warm-up (tracing, primitive creation) outside the capture.
  # Timed with verbose output going to a file (printing ~400 short lines costs < 1 ms).
  wall, calls = {}, int(job.get("repeats", 3))
  result["onednn"] = parse_onednn_verbose(_capture_fd1(lambda: wall.update(
      timing=measure.measure(lambda: fn(x), warmup=0, repeats=calls))))
  result["wall"] = wall["timing"].as_dict()
  for kind in result["onednn"].values():
    for key in kind:
      kind[key] /= calls
  result["tf_ops"] = _tf_op_times(lambda: fn(x))
  return result


def profile_rows(result: Mapping[str, Any], where: str, flops: float) -> list[dict]:
  """Report rows of a `job_profile` result (see `sections.section_profile`).

  Args:
    result: `job_profile`'s return value.
    where: Model and input description for the notes.
    flops: FLOPs of one forward pass (for oneDNN's achieved GFLOP/s).

  Returns:
    Rows {"metric", "value", "unit", "goal", "note"}.
  """
  wall_ms = 1e3 * result["wall"]["median_s"]
  rows = [{"metric": "profile fp32: wall per call", "value": wall_ms, "unit": "ms", "goal": "",
           "note": f"{where}; median of {result['wall']['runs']}"}]
  by_category = collections.Counter()
  for op_type, us in result["tf_ops"].items():
    by_category[categorize(op_type)] += us
  total = sum(by_category.values()) or 1.0
  for name, us in by_category.most_common():
    if us / total < 0.001:
      continue
    ops = sorted(t for t in result["tf_ops"] if categorize(t) == name)
    rows.append({"metric": f"profile fp32: {name}", "value": 100 * us / total, "unit": "%",
                 "goal": "", "note": f"{us / 1e3:.1f} ms of {total / 1e3:.1f} ms summed TF op "
                 f"time (one call, TF profiler); ops {', '.join(ops)}"})
  conv = result["onednn"].get("convolution")
  tf_conv_us = sum(us for t, us in result["tf_ops"].items() if "Conv2D" in t)
  if conv:
    rows.append({"metric": "profile fp32: oneDNN convolution compute", "value": conv["ms"],
                 "unit": "ms", "goal": "",
                 "note": f"{conv['count']:.0f} convs per call, {conv.get('fused_eltwise', 0):.0f} "
                 f"with LeakyReLU fused, {conv.get('fused_sum', 0):.0f} with the add fused; "
                 f"{flops / conv['ms'] / 1e6:.0f} GFLOP/s inside oneDNN; TF's conv kernels "
                 f"took {tf_conv_us / 1e3:.1f} ms (the difference is TF-side work around the "
                 f"primitive); ONEDNN_VERBOSE, mean of {result['wall']['runs']} calls"})
  for kind, v in sorted(result["onednn"].items()):
    if kind != "convolution":
      rows.append({"metric": f"profile fp32: oneDNN {kind}", "value": v["ms"], "unit": "ms",
                   "goal": "", "note": f"{v['count']:.0f} executions per call"
                   + ("; layout conversions NHWC ↔ blocked" if kind == "reorder" else "")})
  if not result["onednn"]:
    rows.append({"metric": "profile fp32: oneDNN", "value": "not used", "unit": "", "goal": "",
                 "note": "no oneDNN primitive ran: TensorFlow turns its oneDNN ops on by default "
                 "only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX (TF 2.9 release "
                 "notes; TF_ENABLE_ONEDNN_OPTS=1 forces them), so convolutions ran on Eigen's "
                 "kernels; see docs/performance.md for what forcing oneDNN costs on AVX2"})
  elif "reorder" not in result["onednn"]:
    rows.append({"metric": "profile fp32: oneDNN reorder", "value": 0.0, "unit": "ms",
                 "goal": "", "note": "no reorder primitive ran: TF 2.21's oneDNN convs run "
                 "directly on NHWC (acdb) tensors, so there are no layout conversions to remove"})
  return rows
