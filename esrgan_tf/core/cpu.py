"""The CPU model and its SIMD/matrix instruction flags: the one /proc/cpuinfo parser.

A bottom-layer module (standard library only): `esrgan_tf.core.precision` asks it whether bf16 is
native, the benchmark harness writes its flags into the report header.
"""

from __future__ import annotations

import dataclasses
import functools

CPUINFO = "/proc/cpuinfo"
# Prefixes of the flags that decide which kernels oneDNN and XNNPACK pick (AVX/AVX-512 widths,
# FMA, F16C, VNNI int8 dot products, AMX tiles, VAES for nothing but completeness of the report).
_SIMD_PREFIXES = ("avx", "amx", "fma", "f16c", "sse4", "vnni", "vaes")
# x86 flags of native bf16 matmul/conv (Linux names): AVX512-BF16 (Cooper Lake, Zen 4 and later)
# and AMX-BF16 (Sapphire Rapids and later). Without them oneDNN emulates bf16, slower than fp32.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclasses.dataclass(frozen=True)
class CpuInfo:
  """The first processor entry of /proc/cpuinfo (all cores of a machine report the same)."""

  model: str
  flags: frozenset

  @property
  def simd_flags(self) -> list[str]:
    """The flags relevant to TF/oneDNN/XNNPACK kernel choice, sorted."""
    return sorted(f for f in self.flags if f.startswith(_SIMD_PREFIXES))

  @property
  def bf16_flags(self) -> tuple[str, ...]:
    """The native-bf16 flags present (empty: bf16 would be emulated)."""
    return tuple(f for f in BF16_FLAGS if f in self.flags)


@functools.lru_cache(maxsize=8)
def read_cpuinfo(path: str = CPUINFO) -> CpuInfo:
  """Parses the `model name` and `flags` lines of the first processor in a cpuinfo file.

  Args:
    path: /proc/cpuinfo, or a fake one in tests.

  Returns:
    A `CpuInfo`; model "unknown" and no flags when the file is missing or unreadable (non-Linux),
    which callers treat as "no special instructions".
  """
  model, flags = "unknown", frozenset()
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
          model = value.strip()
        elif key == "flags":
          flags = frozenset(value.split())
          break  # The first processor's block is complete once its flags are read.
  except OSError:
    pass
  return CpuInfo(model=model, flags=flags)
