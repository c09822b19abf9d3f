"""Inference precision: which CPUs run bf16 natively, and what a `--precision` flag resolves to."""

from __future__ import annotations

from absl import logging

from esrgan_tf.core import cpu

# What a model computes in (inference.engine, export.saved_model). Not the
# training policies (`train_state.TRAIN_PRECISIONS`).
INFERENCE_PRECISIONS = ("float32", "bfloat16")
# What `--precision` of esrgan-upscale / esrgan-eval accepts: "auto" picks by CPU at run time.
PRECISION_FLAG_VALUES = ("auto",) + INFERENCE_PRECISIONS
_BF16_FLAGS = cpu.BF16_FLAGS
# Which CPUs have the flags above (vendor documentation: Intel ark "Intel AVX-512 BF16" / "Intel
# AMX"; AMD Zen 4 ISA additions). Printed by esrgan-export for bf16 exports.
BF16_CPUS = ("Intel Xeon Cooper Lake (AVX512_BF16), Sapphire Rapids and later (AMX-BF16); "
             "AMD Zen 4 and later (EPYC 9004, Ryzen 7000; AVX512_BF16)")
_announced: set = set()


def cpu_bf16_flags(cpuinfo_path: str = cpu.CPUINFO) -> tuple[str, ...]:
  """The native-bf16 CPU flags this machine reports (empty if none or unknown)."""
  return cpu.read_cpuinfo(cpuinfo_path).bf16_flags


def _announce(message: str, *args) -> None:
  """Logs a precision choice once per process (a CLI resolves once, a library may resolve often)."""
  key = message % args
  if key not in _announced:
    _announced.add(key)
    logging.info(message, *args)


def resolve_precision(requested: str, *, cpuinfo_path: str = cpu.CPUINFO) -> str:
  """What a user's `--precision` becomes on this machine.

  Args:
    requested: "auto", "float32" or "bfloat16".
    cpuinfo_path: For tests.

  Returns:
    "auto": "bfloat16" on a CPU with native bf16 (AVX512_BF16 or AMX-BF16, detected now), else
    "float32"; the choice is logged once. "bfloat16" on a CPU without native bf16 falls back to
    "float32" with a warning (emulated bf16 is slower than float32 and less accurate). Otherwise
    `requested`.

  Raises:
    ValueError: An unknown precision.
  """
  if requested not in PRECISION_FLAG_VALUES:
    raise ValueError(f"precision must be one of {PRECISION_FLAG_VALUES}, got {requested!r}")
  native = cpu_bf16_flags(cpuinfo_path)
  if requested == "auto":
    if native:
      _announce("--precision=auto: bfloat16 (this CPU has %s)", ", ".join(native))
      return "bfloat16"
    _announce("--precision=auto: float32 (no native bf16: %s)", " / ".join(_BF16_FLAGS))
    return "float32"
  if requested == "bfloat16" and not native:
    logging.warning("--precision=bfloat16: this CPU has no native bf16 (%s); using float32.",
                    " / ".join(_BF16_FLAGS))
    return "float32"
  return requested
