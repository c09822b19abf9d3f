"""Serving benchmarks (issue 4 §4): gRPC round trip vs in-process call, and 8-client throughput.

    python -m esrgan_tf.serving.bench --arch=tiny          # random-init nf=8 nb=1 export
    python -m esrgan_tf.serving.bench --export_base=exports/esrgan

`benchmark_serving` returns plain numbers for scripts/benchmark.py. The server runs in this
process (as in the tests), so the round trip includes serialisation, the loopback socket and the
server's Python layer, sharing the CPU with the client, which is the worst case for the overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from typing import Sequence

import numpy as np


def _median_seconds(fns, batch, repeats: int) -> list[tuple[float, float]]:
  """(median, min) wall time of each fn; calls are interleaved so load drift hits all alike."""
  for fn in fns:
    fn(batch)  # Warm-up (channel, allocations).
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, spent in zip(fns, times):
      start = time.perf_counter()
      fn(batch)
      spent.append(time.perf_counter() - start)
  return [(statistics.median(t), min(t)) for t in times]


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

  from esrgan_tf import export  # pylint: disable=g-import-not-at-top
  from esrgan_tf.serving import client  # pylint: disable=g-import-not-at-top
  from esrgan_tf.serving import server as server_lib  # pylint: disable=g-import-not-at-top

  version_dir = export.resolve_version_dir(export_base)
  direct_fn = tf.saved_model.load(version_dir).signatures["upscale_float"]

  def direct(batch):
    return direct_fn(images=tf.constant(batch))["upscaled"].numpy()

  results = {"latency": {}, "throughput": {}}
  with server_lib.ModelServer(export_base, port=0, host="127.0.0.1",
                              file_system_poll_wait_seconds=0,
                              max_inflight=max(16, clients)) as srv:
    address = f"127.0.0.1:{srv.port}"
    remote = client.remote_upscaler(address, timeout=timeout)
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
    upscalers = [client.remote_upscaler(address, timeout=timeout) for _ in range(clients)]
    counts = [0] * clients
    failures = []
    stop = threading.Event()

    def loop(index):
      while not stop.is_set():
        try:
          upscalers[index](batch)
        except client.RemoteError as e:
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


def _export_random(arch: str, base: str) -> None:
  from esrgan_tf import export  # pylint: disable=g-import-not-at-top
  from esrgan_tf.models import RRDBNet  # pylint: disable=g-import-not-at-top

  kwargs = dict(num_features=8, num_blocks=1, growth_channels=4) if arch == "tiny" else {}
  model = RRDBNet(**kwargs)
  model.build((None, None, None, 3))
  export.export_saved_model(model, base, source=f"random {arch}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--export_base", help="Model base to serve (default: export --arch).")
  parser.add_argument("--arch", choices=["tiny", "full"], default="tiny")
  parser.add_argument("--sizes", default="64,256")
  parser.add_argument("--clients", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--seconds", type=float, default=5.0)
  args = parser.parse_args(argv)
  sizes = [int(s) for s in args.sizes.split(",")]
  with tempfile.TemporaryDirectory() as tmp:
    base = args.export_base
    if not base:
      base = os.path.join(tmp, "esrgan")
      _export_random(args.arch, base)
    print(json.dumps(benchmark_serving(base, sizes=sizes, clients=args.clients,
                                       repeats=args.repeats, throughput_seconds=args.seconds),
                     indent=2))


if __name__ == "__main__":
  main()
