r"""BasicSR 1.4.2's own training step, timed the way `training.step_time` times ours.

Run by a separate interpreter that has torch + basicsr (the optional `benchmark` extra, kept
apart from the TF environment: BasicSR's requirements pull `tb-nightly`, which would replace
TensorFlow's `tensorboard`):

  PYTHONPATH=<checkout> $BASICSR_PYTHON -m esrgan_tf.benchmarking.basicsr_steps \
      '{"phase": "gan", "batch_size": 4, "gt_size": 128, "threads": 2, "steps": 3, "warmup": 1}'

prints one JSON line (the result of `run`). The interpreter this was measured with (Python 3.11):

  python -m venv /work/torchvenv && /work/torchvenv/bin/pip install torch==2.13.0+cpu  # a wheel
  /work/torchvenv/bin/pip install "torchvision==0.28.*"   # PyPI's build (see below)
  /work/torchvenv/bin/pip install --no-build-isolation --no-deps basicsr==1.4.2
  /work/torchvenv/bin/pip install opencv-python-headless pyyaml scipy tqdm

(`--no-deps` keeps out basicsr's unused requirements: tb-nightly, lmdb, scikit-image, yapf, ...).

This module imports only the standard library at module level, and torch / torchvision /
basicsr inside functions: no TensorFlow and no other `esrgan_tf` module (the package's
`__init__` imports nothing either).

What is timed: `model.feed_data({"lq", "gt"})` + `model.optimize_parameters(step)` of BasicSR's
`SRModel` (PSNR phase, L1) or `ESRGANModel` (GAN phase: L1 1e-2 + VGG19 conv5_4 perceptual 1.0 +
relativistic vanilla GAN 5e-3, VGGStyleDiscriminator), built from an option dict equal to
BasicSR's options/train/ESRGAN/train_RRDBNet_PSNR_x4.yml / train_ESRGAN_x4.yml with num_gpu 0,
on one random batch (the step, not the data loader). Each step is timed on its own; the result is
the median after the warm-up steps. Start-up = model build + the first step.

VGG19 without a download: BasicSR's `VGGFeatureExtractor` (archs/vgg_arch.py) loads
`VGG_PRETRAIN_PATH` ('experiments/pretrained_models/vgg19-dcbb9e9d.pth', relative to the working
directory) when that file exists and only otherwise asks torchvision for the ImageNet weights
(`pretrained=True`, a download). So a GAN job first writes a random-init torchvision VGG19 state
dict there, in a separate process (its memory stays out of this one's peak RSS), and builds the
model with that temporary directory as working directory. Random weights cost what ImageNet's
cost; loading the full 548 MB file (classifier included, then cut at conv5_4) is what BasicSR
does in real training too. `use_input_norm` stays true as in the yml.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from typing import Any, Mapping

# Job keys and defaults; the required ones have None.
JOB_KEYS = {"phase": None, "batch_size": None, "gt_size": None, "threads": None, "steps": None,
            "warmup": None, "num_block": 23, "ema_decay": 0.999, "seed": 0}
# BasicSR's VGGStyleDiscriminator (archs/discriminator_arch.py) accepts only these input sizes.
DISCRIMINATOR_SIZES = (128, 256)
# The PyPI torchvision wheel is built against CUDA libtorch; next to a +cpu torch its C ops
# library cannot load, and torchvision/_meta_registrations.py then registers fake kernels for
# two ops that were never defined. Defining their schemas (from torchvision's csrc/ops/nms.cpp,
# quantized/cpu/qnms_kernel.cpp) lets the pure-Python parts import; BasicSR uses only
# torchvision.models.vgg here.
_TORCHVISION_OP_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_KEEP_ALIVE: list = []
# This module as `python -m` runs it (`__name__` is "__main__" there).
_MODULE = "esrgan_tf.benchmarking.basicsr_steps"


def parse_job(job: Mapping[str, Any]) -> dict:
  """Validates a job and fills the defaults.

  Args:
    job: {"phase": "psnr" | "gan", "batch_size", "gt_size", "threads", "steps" (timed, ≥ 1),
      "warmup" (untimed, ≥ 1: the first step is start-up), optional "num_block" (23),
      "ema_decay" (0.999), "seed" (0)}.

  Returns:
    The job with ints/floats converted and defaults filled in.

  Raises:
    ValueError: A missing or unknown key, or a value out of range.
  """
  unknown = sorted(set(job) - set(JOB_KEYS))
  missing = sorted(k for k, v in JOB_KEYS.items() if v is None and k not in job)
  if unknown or missing:
    raise ValueError(f"basicsr_steps job: unknown keys {unknown}, missing keys {missing}")
  out = {**{k: v for k, v in JOB_KEYS.items() if v is not None}, **job}
  if out["phase"] not in ("psnr", "gan"):
    raise ValueError(f"basicsr_steps job: phase must be 'psnr' or 'gan', got {out['phase']!r}")
  for key in ("batch_size", "gt_size", "threads", "steps", "warmup", "num_block", "seed"):
    out[key] = int(out[key])
  out["ema_decay"] = float(out["ema_decay"])
  for key in ("batch_size", "gt_size", "threads", "steps", "warmup", "num_block"):
    if out[key] < 1:
      raise ValueError(f"basicsr_steps job: {key} must be ≥ 1, got {out[key]}")
  if out["gt_size"] % 4:
    raise ValueError(f"basicsr_steps job: gt_size {out['gt_size']} is not a multiple of the x4 "
                     "scale")
  if out["phase"] == "gan" and out["gt_size"] not in DISCRIMINATOR_SIZES:
    raise ValueError(f"basicsr_steps job: BasicSR's VGGStyleDiscriminator takes "
                     f"{DISCRIMINATOR_SIZES} inputs, not gt_size {out['gt_size']}")
  return out


def make_opt(job: Mapping[str, Any]) -> dict:
  """BasicSR's option dict for a parsed job: the yml files of options/train/ESRGAN/ on CPU.

  Values from train_RRDBNet_PSNR_x4.yml (PSNR) and train_ESRGAN_x4.yml (GAN) of BasicSR 1.4.2.
  One deliberate change: `ema_decay` (0.999 by default, as in our configs) also in the PSNR
  phase, whose yml has no EMA, so that both sides do the same work per step.
  """
  network_g = {"type": "RRDBNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64,
               "num_block": job["num_block"], "num_grow_ch": 32, "scale": 4}
  adam = {"type": "Adam", "weight_decay": 0, "betas": [0.9, 0.99]}
  train = {"ema_decay": job["ema_decay"]}
  if job["phase"] == "psnr":
    train.update(
        optim_g={**adam, "lr": 2e-4},
        scheduler={"type": "CosineAnnealingRestartLR", "periods": [250000] * 4,
                   "restart_weights": [1] * 4, "eta_min": 1e-7},
        pixel_opt={"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"})
    model_type, extra = "SRModel", {}
  else:
    train.update(
        optim_g={**adam, "lr": 1e-4}, optim_d={**adam, "lr": 1e-4},
        scheduler={"type": "MultiStepLR", "milestones": [50000, 100000, 200000, 300000],
                   "gamma": 0.5},
        pixel_opt={"type": "L1Loss", "loss_weight": 1e-2, "reduction": "mean"},
        perceptual_opt={"type": "PerceptualLoss", "layer_weights": {"conv5_4": 1},
                        "vgg_type": "vgg19", "use_input_norm": True, "range_norm": False,
                        "perceptual_weight": 1.0, "style_weight": 0, "criterion": "l1"},
        gan_opt={"type": "GANLoss", "gan_type": "vanilla", "real_label_val": 1.0,
                 "fake_label_val": 0.0, "loss_weight": 5e-3},
        net_d_iters=1, net_d_init_iters=0)
    model_type = "ESRGANModel"
    extra = {"network_d": {"type": "VGGStyleDiscriminator", "num_in_ch": 3, "num_feat": 64,
                           "input_size": job["gt_size"]}}
  return {"name": f"bench_{job['phase']}", "model_type": model_type, "scale": 4, "num_gpu": 0,
          "manual_seed": job["seed"], "is_train": True, "dist": False, "rank": 0,
          "world_size": 1, "network_g": network_g, **extra,
          "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
          "train": train}


def summarize(times: list, startup_s: float, build_s: float) -> dict:
  """Step-time statistics in the shape `training.step_time` returns.

  Raises:
    ValueError: No timed step.
  """
  if not times:
    raise ValueError("no timed step")
  return {"step_time_s": statistics.median(times), "min_step_s": min(times),
          "step_times_s": list(times), "startup_s": startup_s, "build_s": build_s}


def install_import_shims() -> dict:
  """Makes BasicSR 1.4.2 importable next to a current torchvision, without touching it.

  1. basicsr/data/degradations.py imports `torchvision.transforms.functional_tensor`, removed in
     torchvision 0.17; its one use (`rgb_to_grayscale`) is `transforms.functional`'s today.
  2. See `_TORCHVISION_OP_SCHEMAS` (only when torchvision's C ops library does not load).

  Returns:
    {"torchvision_ops": whether torchvision's own C ops loaded, "functional_tensor_shim": bool}.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top

  import torch  # pylint: disable=g-import-not-at-top
  info = {"torchvision_ops": True, "functional_tensor_shim": False}
  spec = importlib.util.find_spec("torchvision")
  if spec is None:
    raise ImportError("torchvision is not installed (BasicSR's VGG19 needs it)")
  if "torchvision" not in sys.modules:
    folder = list(spec.submodule_search_locations)[0]
    library = [f for f in os.listdir(folder) if f.startswith("_C") and f.endswith(".so")]
    try:
      torch.ops.load_library(os.path.join(folder, library[0]))
    except (IndexError, OSError):
      info["torchvision_ops"] = False
      placeholder = torch.library.Library("torchvision", "DEF")
      for schema in _TORCHVISION_OP_SCHEMAS:
        placeholder.define(schema)
      _KEEP_ALIVE.append(placeholder)  # Its destructor would remove the definitions.
  name = "torchvision.transforms.functional_tensor"
  if importlib.util.find_spec("torchvision.transforms") is not None:
    try:
      importlib.import_module(name)
    except ImportError:
      from torchvision.transforms import functional  # pylint: disable=g-import-not-at-top
      shim = types.ModuleType(name)
      shim.rgb_to_grayscale = functional.rgb_to_grayscale
      sys.modules[name] = shim
      info["functional_tensor_shim"] = True
  return info


def write_random_vgg19(path: str) -> None:
  """Saves a random-init torchvision VGG19 state dict (the layout of BasicSR's vgg19 file)."""
  import torch  # pylint: disable=g-import-not-at-top
  install_import_shims()
  from torchvision.models import vgg  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  torch.save(vgg.vgg19(weights=None).state_dict(), path)


def run(job: Mapping[str, Any]) -> dict:
  """Builds BasicSR's model for `job` (see `parse_job`) and times its steps.

  Returns:
    {**job, "step_time_s" (median), "min_step_s", "step_times_s", "step_cpu_s" (median CPU
     time of all threads per step), "startup_s", "build_s",
     "import_s", "images_per_s", "max_rss_mb" (peak RSS, MiB), "torch", "basicsr",
     "torchvision_ops", "functional_tensor_shim"}.
  """
  job = parse_job(job)
  import_start = time.perf_counter()
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(job["threads"])
  info = install_import_shims()
  import basicsr  # pylint: disable=g-import-not-at-top
  from basicsr.archs import vgg_arch  # pylint: disable=g-import-not-at-top
  from basicsr.models import build_model  # pylint: disable=g-import-not-at-top
  from basicsr.utils import get_root_logger  # pylint: disable=g-import-not-at-top
  import_s = time.perf_counter() - import_start
  import logging  # pylint: disable=g-import-not-at-top
  get_root_logger(log_level=logging.WARNING)  # print_network still formats; it just stays quiet.
  torch.manual_seed(job["seed"])
  gt = torch.rand(job["batch_size"], 3, job["gt_size"], job["gt_size"])
  lq = torch.rand(job["batch_size"], 3, job["gt_size"] // 4, job["gt_size"] // 4)
  cwd = os.getcwd()
  with tempfile.TemporaryDirectory(prefix="basicsr_bench_") as tmp:
    if job["phase"] == "gan":
      vgg_file = os.path.join(tmp, vgg_arch.VGG_PRETRAIN_PATH)
      subprocess.run([sys.executable, "-m", _MODULE, "--write-random-vgg19", vgg_file],
                     check=True, env={**os.environ, "TORCH_HOME": tmp})
    build_start = time.perf_counter()
    os.chdir(tmp)  # VGG_PRETRAIN_PATH is relative to the working directory.
    try:
      model = build_model(make_opt(job))
    finally:
      os.chdir(cwd)
    build_s = time.perf_counter() - build_start
    step = 1  # ESRGANModel updates G only when step > net_d_init_iters (0).
    model.feed_data({"lq": lq, "gt": gt})
    model.optimize_parameters(step)
    startup_s = time.perf_counter() - build_start
    for step in range(2, job["warmup"] + 1):
      model.feed_data({"lq": lq, "gt": gt})
      model.optimize_parameters(step)
    times, cpu_times = [], []
    for step in range(job["warmup"] + 1, job["warmup"] + job["steps"] + 1):
      start, cpu_start = time.perf_counter(), time.process_time()
      model.feed_data({"lq": lq, "gt": gt})
      model.optimize_parameters(step)
      times.append(time.perf_counter() - start)
      cpu_times.append(time.process_time() - cpu_start)
  result = {**job, **summarize(times, startup_s, build_s), "import_s": import_s,
            "step_cpu_s": statistics.median(cpu_times),
            "torch": torch.__version__, "basicsr": basicsr.__version__, **info}
  result["images_per_s"] = job["batch_size"] / result["step_time_s"]
  # ru_maxrss is KiB on Linux: MiB like `measure.peak_rss_mb` (VmHWM) on our side.
  result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return result


def main(argv: list) -> None:
  if len(argv) == 3 and argv[1] == "--write-random-vgg19":
    write_random_vgg19(argv[2])
    return
  if len(argv) != 2:
    raise SystemExit(f"usage: python -m {_MODULE} '<json job>'  (keys: {sorted(JOB_KEYS)})")
  sys.stdout.write("\n" + json.dumps(run(json.loads(argv[1]))) + "\n")


if __name__ == "__main__":
  main(sys.argv)
