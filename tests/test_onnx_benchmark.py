"""The benchmark's ONNX Runtime engine and `onnx` section (esrgan_tf.benchmarking)."""

import importlib.util
import math

from esrgan_tf.benchmarking import engines, jobs, onnx_section, sections

TINY_COMPACT = dict(arch="srvgg", num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4,
                    act_type="prelu")


def test_onnx_engine_in_the_inference_job_agrees_with_keras():
  result = jobs.job_inference({
      "arch": TINY_COMPACT, "weights": "", "warmup": 0, "repeats": 1,
      "engine_sizes": {"keras_engine": [16], "onnx_fp32": [16], "onnx_fp16": [16]}})
  rows = {r["engine"]: r for r in result["rows"]}
  assert rows["onnx_fp32"]["median_s"] > 0 and rows["onnx_fp32"]["convert_s"] > 0
  assert rows["onnx_fp16"]["file_mb"] < rows["onnx_fp32"]["file_mb"]
  # float32 engines ≤ 1e-5 apart: equal after uint8 rounding but for rare ties (> 60 dB).
  assert result["psnr"]["onnx_fp32"] > 60
  # float16 weights: measured 71.7 dB on realesr-animevideov3; well above visible error.
  assert 45 < result["psnr"]["onnx_fp16"] < math.inf


def test_missing_packages_names_what_an_engine_needs(monkeypatch):
  assert engines.missing_packages("keras_engine") == []
  assert engines.missing_packages("onnx_fp32") == []  # the onnx extra is installed for tests
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "onnxruntime" else real(name, *a))
  assert engines.missing_packages("onnx_fp32") == ["onnxruntime"]
  assert engines.missing_packages("ncnn_fp32") == []


def test_onnx_section_skips_the_onnx_engines_without_the_extra(monkeypatch):
  monkeypatch.setattr(engines, "missing_packages",
                      lambda engine: ["onnxruntime"] if engine.startswith("onnx_") else [])
  seen = []

  def fake_run_job(job, **kwargs):
    seen.append(job)
    engine = next(iter(job["engine_sizes"]))
    return {"weights": job["weights"] or "random init", "rows": [
        {"engine": engine, "size": 32, "median_s": 0.5, "min_s": 0.4, "runs": 2}]}

  monkeypatch.setattr(jobs, "run_job", fake_run_job)
  rows = sections.SECTIONS["onnx"](quick=True)
  assert len(seen) == 2  # x4plus-like RRDBNet and Compact, one child job each
  for job in seen:
    assert job["intra_op"] == onnx_section.ONNX_THREADS == 2
    assert not [e for e in job["engine_sizes"] if e.startswith("onnx_")]
    assert "saved_model_fp32" in job["engine_sizes"]
  skipped = [r for r in rows if r["value"] == "skipped"]
  assert len(skipped) == 3  # onnx_fp32 twice, onnx_fp16 for Compact
  assert all("pip install 'esrgan_tf[onnx]'" in r["note"] for r in skipped)
  timed = [r for r in rows if r["unit"] == "ms"]
  assert len(timed) == 2 and all(r["value"] == 500 for r in timed)
