"""Inference precision: which CPUs run bfloat16 natively, and what `--precision` resolves to."""

from __future__ import annotations

import functools

from absl import logging

# What inference (`esrgan-upscale --precision`, `esrgan-export --precision`) computes in. Not
# the training policies (`train.POLICIES`).
INFERENCE_PRECISIONS = ("float32", "bfloat16")
# x86 flags of native bf16 matmul/conv support (Linux /proc/cpuinfo names): AVX512-BF16 (Cooper
# Lake, Zen 4+) and AMX-BF16 (Sapphire Rapids). Without them oneDNN emulates bf16 and it is slower
# than float32.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=8)
def cpu_bf16_flags(cpuinfo_path: str = "/proc/cpuinfo") -> tuple[str, ...]:
  """The native-bf16 CPU flags this machine reports (empty if none or unknown)."""
  try:
    with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
      for line in f:
        if line.startswith("flags"):
          flags = set(line.split(":", 1)[1].split())
          return tuple(flag for flag in _BF16_FLAGS if flag in flags)
  except OSError:
    pass
  return ()


def resolve_precision(requested: str, *, cpuinfo_path: str = "/proc/cpuinfo") -> str:
  """What a user's `--precision` becomes on this machine.

  Args:
    requested: "float32" or "bfloat16".
    cpuinfo_path: For tests.

  Returns:
    `requested`, except "bfloat16" on a CPU without native bf16, which falls back to "float32"
    with a warning (emulated bf16 is slower than float32 and less accurate).

  Raises:
    ValueError: An unknown precision.
  """
  if requested not in INFERENCE_PRECISIONS:
    raise ValueError(f"precision must be one of {INFERENCE_PRECISIONS}, got {requested!r}")
  if requested == "bfloat16":
    if not cpu_bf16_flags(cpuinfo_path):
      logging.warning("--precision=bfloat16: this CPU has no native bf16 (%s); using float32.",
                      " / ".join(_BF16_FLAGS))
      return "float32"
  return requested
