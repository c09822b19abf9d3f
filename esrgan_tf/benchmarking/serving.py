"""Serving timings: gRPC round trip vs in-process call, and N-client throughput.

    python -m esrgan_tf.benchmarking.serving --arch=tiny          # random-init nf=8 nb=1 export
    python -m esrgan_tf.benchmarking.serving --export_base=exports/esrgan

`benchmark_serving` returns plain numbers for the harness's serving section (`job_serving`).
The server runs in this process (as in the tests), so the round trip includes serialisation,
the loopback socket and the server's Python layer, sharing the CPU with the client, which is the
worst case for the overhead.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from typing import Any, Mapping, Sequence

from absl import app, flags
import numpy as np

from esrgan_tf.benchmarking import engines, measure


def _define_flags() -> None:
  """The command line's flags; defined only when run as a program (the harness imports this
  module in its children and must not add flags there)."""
  flags.DEFINE_string("export_base", None,
                      "Model base to serve (default: a random-init --arch export).")
  flags.DEFINE_enum("arch", "tiny", ["tiny", "full"], "Random-init network to export.")
  flags.DEFINE_list("sizes", ["64", "256"], "Square input sizes of the latency runs.")
  flags.DEFINE_integer("clients", 8, "Concurrent clients of the throughput run.")
  flags.DEFINE_integer("repeats", 5, "Timed calls per size.")
  flags.DEFINE_float("seconds", 5.0, "Duration of the throughput run.")


def _median_seconds(fns, batch, repeats: int) -> list[tuple[float, float]]:
  """(median, min) wall time of each fn after one warm-up call (channel, allocations); calls are
  interleaved so load drift hits all alike."""
  timed = measure.measure_interleaved({i: (lambda f=fn: f(batch)) for i, fn in enumerate(fns)},
                                      warmup=1, repeats=repeats)
  return [(timed[i][0].median, timed[i][0].min) for i in range(len(fns))]


def benchmark_serving(export_base: str, *, sizes: Sequence[int] = (64, 256), clients: int = 8,
                      repeats: int = 5, throughput_size: int = 64,
                      throughput_seconds: float = 5.0, timeout: float = 600.0) -> dict:
  """Measures an export served by esrgan-serve against calling the SavedModel in-process.

  Args:
    export_base: A model base with at least one version (the latest is used).
    sizes: Square input sizes for the latency comparison (batch of 1, upscale_float).
    clients: Concurrent clients for the throughput run (one channel each); 0 skips it.
    repeats: Timed calls per size (median reported).
    throughput_size: Input size of the throughput run.
    throughput_seconds: Duration of the throughput run.
    timeout: Per-request deadline of the clients.

  Returns:
    {"latency": {size: {"in_process_ms", "grpc_ms", "overhead_pct", and the same from the
                        fastest call: "in_process_min_ms", "grpc_min_ms", "overhead_min_pct"}},
     "throughput": {"clients", "size", "requests_per_s", "in_process_requests_per_s",
                    "failed_requests"}} (throughput empty if clients is 0).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from esrgan_tf.export import saved_model as saved_model_lib  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference import remote as remote_lib  # pylint: disable=g-import-not-at-top
  from esrgan_tf.serving import defaults
  from esrgan_tf.serving import server as server_lib  # pylint: disable=g-import-not-at-top

  version_dir = saved_model_lib.resolve_version_dir(export_base)
  direct_fn = tf.saved_model.load(version_dir).signatures["upscale_float"]

  def direct(batch):
    return direct_fn(images=tf.constant(batch))["upscaled"].numpy()

  results = {"latency": {}, "throughput": {}}
  with server_lib.ModelServer(export_base, port=0, host="127.0.0.1",
                              file_system_poll_wait_seconds=0,
                              limits=defaults.ServerLimits(max_inflight=max(16, clients))
                              ) as srv:
    address = f"127.0.0.1:{srv.port}"
    remote = remote_lib.remote_engine(address, timeout=timeout)
    rng = np.random.default_rng(0)
    for size in sizes:
      batch = rng.random((1, size, size, 3), np.float32)
      (local_s, local_min), (remote_s, remote_min) = _median_seconds([direct, remote], batch,
                                                                     repeats)
      results["latency"][size] = {
          "in_process_ms": round(local_s * 1e3, 2), "grpc_ms": round(remote_s * 1e3, 2),
          "overhead_pct": round(100.0 * (remote_s - local_s) / local_s, 1),
          # Minima: the least disturbed calls, the better estimate on a shared machine.
          "in_process_min_ms": round(local_min * 1e3, 2), "grpc_min_ms": round(remote_min * 1e3, 2),
          "overhead_min_pct": round(100.0 * (remote_min - local_min) / local_min, 1)}

    if clients < 1:
      return results
    batch = rng.random((1, throughput_size, throughput_size, 3), np.float32)
    upscalers = [remote_lib.remote_engine(address, timeout=timeout) for _ in range(clients)]
    counts = [0] * clients
    failures = []
    stop = threading.Event()

    def loop(index):
      while not stop.is_set():
        try:
          upscalers[index](batch)
        except remote_lib.RemoteError as e:
          failures.append(str(e))
          return
        counts[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
      thread.start()
    time.sleep(throughput_seconds)
    stop.set()
    for thread in threads:
      thread.join()
    elapsed = time.perf_counter() - start
    (single, _), = _median_seconds([direct], batch, repeats)
    results["throughput"] = {
        "clients": clients, "size": throughput_size,
        "requests_per_s": round(sum(counts) / elapsed, 2),
        "in_process_requests_per_s": round(1.0 / single, 2),
        "failed_requests": len(failures)}
  return results


def job_serving(job: Mapping[str, Any]) -> dict:
  """gRPC vs in-process latency and N-client throughput (`benchmark_serving`), in a child.

  Job keys: arch, weights ("auto" or ""), runs: a list of `benchmark_serving` keyword dicts
  (sizes, clients, repeats, throughput_size, throughput_seconds), all against one export.

  Returns:
    {"weights", "latency": {str(size): ...}, "throughput": {...} (of the last run with clients)}.
  """
  from esrgan_tf.export import saved_model as saved_model_lib  # pylint: disable=g-import-not-at-top
  weights = engines.resolve_weights(job)
  model = engines.build_generator(job["arch"], weights)
  merged = {"weights": weights or "random init (seed 0)", "latency": {}, "throughput": {}}
  with tempfile.TemporaryDirectory(prefix="esrgan_bench_") as tmp:
    base = os.path.join(tmp, "esrgan")
    saved_model_lib.export_saved_model(model, base, source="benchmark")
    for run in job["runs"]:
      result = benchmark_serving(base, **run)
      merged["latency"].update({str(k): v for k, v in result["latency"].items()})
      merged["throughput"] = result["throughput"] or merged["throughput"]
  return merged


def main(argv) -> None:
  opts = flags.FLAGS
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    sizes = [int(s) for s in opts.sizes]
  except ValueError:
    raise app.UsageError(f"--sizes must be integers, got {opts.sizes}")
  with tempfile.TemporaryDirectory() as tmp:
    base = opts.export_base
    if not base:
      from esrgan_tf.export import saved_model as saved_model_lib  # pylint: disable=g-import-not-at-top
      base = os.path.join(tmp, "esrgan")
      arch = (dict(num_features=8, num_blocks=1, growth_channels=4) if opts.arch == "tiny"
              else {})
      saved_model_lib.export_saved_model(engines.build_generator(arch), base,
                                source=f"random {opts.arch}")
    print(json.dumps(benchmark_serving(base, sizes=sizes, clients=opts.clients,
                                       repeats=opts.repeats, throughput_seconds=opts.seconds),
                     indent=2))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
