"""Tests for esrgan_tf.core.cpu: the /proc/cpuinfo parser, on fake files."""

from esrgan_tf.core import cpu

# Two processors, as Linux lists them; only the first block is read.
_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 sse4_2 avx avx2 fma f16c avx512f avx512_bf16 avx512_vnni clzero
bugs\t\t: sysret_ss_attrs

processor\t: 1
model name\t: Other CPU
flags\t\t: fpu amx_bf16
"""


def test_model_simd_and_bf16_flags(tmp_path):
  path = tmp_path / "cpuinfo"
  path.write_text(_CPUINFO)
  info = cpu.read_cpuinfo(str(path))
  assert info.model == "AMD EPYC 9R14 96-Core Processor"
  assert info.simd_flags == ["avx", "avx2", "avx512_bf16", "avx512_vnni", "avx512f", "f16c",
                             "fma", "sse4_2"]
  assert info.bf16_flags == ("avx512_bf16",)  # amx_bf16 belongs to processor 1's block.


def test_amx_and_no_bf16(tmp_path):
  amx = tmp_path / "amx"
  amx.write_text("model name : Xeon\nflags : avx512f amx_tile amx_bf16 amx_int8\n")
  assert cpu.read_cpuinfo(str(amx)).bf16_flags == ("amx_bf16",)
  plain = tmp_path / "plain"
  plain.write_text("model name : Old\nflags : sse2 avx2 fma\n")
  assert cpu.read_cpuinfo(str(plain)).bf16_flags == ()


def test_missing_file_means_unknown_and_no_flags(tmp_path):
  info = cpu.read_cpuinfo(str(tmp_path / "missing"))
  assert info.model == "unknown" and info.flags == frozenset() and info.bf16_flags == ()
