"""Tests for esrgan_tf.core.precision: --precision=auto by CPU flags (fake cpuinfo), logged once."""

from absl import logging
import pytest

from esrgan_tf.core import precision


@pytest.fixture
def cpuinfo(tmp_path):
  def make(flags):
    path = tmp_path / f"cpuinfo_{len(flags)}_{abs(hash(flags))}"
    path.write_text(f"processor : 0\nmodel name : Test CPU\nflags : {flags}\n")
    return str(path)
  return make


def test_auto_picks_bf16_only_with_native_bf16(cpuinfo):
  assert precision.resolve_precision("auto", cpuinfo_path=cpuinfo("fpu avx2 avx512f")) == "float32"
  assert precision.resolve_precision(
      "auto", cpuinfo_path=cpuinfo("avx512f avx512_bf16")) == "bfloat16"
  assert precision.resolve_precision(
      "auto", cpuinfo_path=cpuinfo("avx512f amx_tile amx_bf16")) == "bfloat16"
  # An unreadable cpuinfo (non-Linux) is "no native bf16".
  assert precision.resolve_precision("auto", cpuinfo_path="/nonexistent/cpuinfo") == "float32"


def test_explicit_precisions(cpuinfo):
  plain, bf16 = cpuinfo("fpu avx2"), cpuinfo("avx512_bf16")
  assert precision.resolve_precision("bfloat16", cpuinfo_path=plain) == "float32"
  assert precision.resolve_precision("bfloat16", cpuinfo_path=bf16) == "bfloat16"
  assert precision.resolve_precision("float32", cpuinfo_path=bf16) == "float32"
  with pytest.raises(ValueError, match="precision must be one of"):
    precision.resolve_precision("fp8", cpuinfo_path=bf16)


def test_auto_choice_is_logged_once(cpuinfo, monkeypatch):
  messages = []
  monkeypatch.setattr(logging, "info", lambda msg, *args: messages.append(msg % args))
  monkeypatch.setattr(precision, "_announced", set())
  path = cpuinfo("avx512f avx512_bf16 amx_bf16")
  for _ in range(3):
    assert precision.resolve_precision("auto", cpuinfo_path=path) == "bfloat16"
  assert messages == ["--precision=auto: bfloat16 (this CPU has avx512_bf16, amx_bf16)"]


def test_this_machine_matches_its_cpuinfo():
  # Independent reading of /proc/cpuinfo: the first "flags" line.
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      flags = next(line for line in f if line.startswith("flags")).split(":", 1)[1].split()
  except (OSError, StopIteration):
    flags = []
  native = "avx512_bf16" in flags or "amx_bf16" in flags
  assert precision.resolve_precision("auto") == ("bfloat16" if native else "float32")
