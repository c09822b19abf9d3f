r"""Compares esrgan_tf with BasicSR 1.4.2's and Real-ESRGAN 0.3.0's own code, on the same inputs.

Run it with an interpreter that has torch + basicsr (+ realesrgan 0.3.0) (the `benchmark` extra);
the training steps also need this checkout's TF environment, whose interpreter runs our side:

  /path/to/torch-venv/bin/python scripts/check_basicsr_parity.py \
      --tf_python=/path/to/tf-venv/bin/python [--sections=degradations,steps,niqe]

Sections:
* degradations: the largest absolute difference per function (kernels over random shapes at sizes
  7 and 21, sinc kernels over cutoffs π/3..π with and without pad_to, USM sharpening and JPEG
  on samples/val/chelsea.png). The random parts (kernel and noise draws) use different
  generators on the two sides and are not compared here; their distributions are tested in
  tests/test_degradations.py. Needs only numpy and Pillow on our side.
* steps: one and five `optimize_parameters` steps of BasicSR's SRModel (configs/psnr_x4.py),
  ESRGANModel (configs/esrgan_x4.py) and Real-ESRGAN's RealESRGANModel
  (configs/realesrgan_x4plus.py) against ours (`esrgan_tf.benchmarking.train_parity`, run by
  --tf_python): small networks, the same initial weights (BasicSR's random init, handed over as
  .pth files our readers load), a fixed batch of crops of the bundled photos, random VGG19
  weights written in torchvision's layout; BasicSR's data feeding and `.cuda()` calls bypassed.
  Per loss term (each step) and per weight tensor (the update after steps 1 and 5, relative L2:
  ‖Δa − Δb‖/‖Δb‖), ours vs BasicSR float32, and BasicSR float32 vs float64 (the float32 noise
  floor).
* niqe: `esrgan_tf.evaluation.niqe.niqe` against BasicSR's `calculate_niqe` on the bundled
  photos and their ×4 bicubic upscales.
Exits 1 if a difference exceeds its limit (see --help).

argparse, not absl: this runs in BasicSR's interpreter, which the `benchmark` extra does not give
absl (as `esrgan_tf.benchmarking.basicsr_steps`).
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("degradations", "steps", "niqe")
def _pairs(ours, theirs, rng):
  """Yields (name, our output, BasicSR's output) for every deterministic primitive."""
  for size in (7, 21):
    for _ in range(20):
      sx, sy = rng.uniform(0.2, 3, size=2)
      theta, beta_g, beta_p = rng.uniform(-np.pi, np.pi), rng.uniform(0.5, 4), rng.uniform(1, 2)
      for iso in (True, False):
        yield ("bivariate_gaussian", ours.bivariate_gaussian(size, sx, sy, theta, isotropic=iso),
               theirs.bivariate_Gaussian(size, sx, sy, theta, isotropic=iso))
        yield ("bivariate_generalized_gaussian",
               ours.bivariate_generalized_gaussian(size, sx, sy, theta, beta_g, isotropic=iso),
               theirs.bivariate_generalized_Gaussian(size, sx, sy, theta, beta_g, isotropic=iso))
        yield ("bivariate_plateau",
               ours.bivariate_plateau(size, sx, sy, theta, beta_p, isotropic=iso),
               theirs.bivariate_plateau(size, sx, sy, theta, beta_p, isotropic=iso))
    for cutoff in np.linspace(np.pi / 3, np.pi, 7):
      for pad_to in (0, 21):
        yield ("circular_lowpass_kernel", ours.circular_lowpass_kernel(cutoff, size, pad_to),
               theirs.circular_lowpass_kernel(cutoff, size, pad_to=pad_to))


def check_degradations(args) -> list:
  """Prints the degradation table; returns the names beyond their limit."""
  from basicsr.data import degradations as theirs  # pylint: disable=g-import-not-at-top
  from basicsr.utils import img_process_util  # pylint: disable=g-import-not-at-top

  from esrgan_tf import SAMPLES_DIR  # pylint: disable=g-import-not-at-top
  from esrgan_tf.data import degradations as ours  # pylint: disable=g-import-not-at-top
  worst = {}
  for name, a, b in _pairs(ours, theirs, np.random.default_rng(0)):
    worst[name] = max(worst.get(name, 0.0), float(np.max(np.abs(np.float64(a) - b))))
  img = np.asarray(Image.open(os.path.join(SAMPLES_DIR, "val", "chelsea.png")).convert("RGB"),
                   np.float32) / 255
  bgr = img[..., ::-1].copy()  # BasicSR's image functions take cv2's BGR.
  for weight, radius, threshold in ((0.5, 50, 10), (0.8, 21, 5)):
    theirs_usm = img_process_util.usm_sharp(bgr, weight, radius, threshold)[..., ::-1]
    diff = np.max(np.abs(ours.usm_sharp(img, weight, radius, threshold) - theirs_usm))
    worst["usm_sharp"] = max(worst.get("usm_sharp", 0.0), float(diff))
  for quality in (30, 60, 95):
    theirs_jpeg = theirs.add_jpg_compression(bgr, quality)[..., ::-1]
    diff = np.max(np.abs(ours.jpeg_compress(img, quality) - theirs_jpeg))
    worst["jpeg_compress"] = max(worst.get("jpeg_compress", 0.0), float(diff))
  failed = []
  print("## degradations")
  for name, diff in worst.items():
    limit = args.jpeg_tolerance if name == "jpeg_compress" else args.tolerance
    print(f"{name:32s} max |ours − BasicSR| {diff:.3g}  (limit {limit:.3g})")
    if diff > limit:
      failed.append(name)
  return failed


# --- training steps ------------------------------------------------------------------------------

# The three cases: BasicSR model type, our config, and the small networks both sides build.
# gt 128: BasicSR's VGGStyleDiscriminator accepts 128 or 256 only.
G_ARCH = {"num_feat": 16, "num_block": 1, "num_grow_ch": 8}
OUR_G_ARCH = {"num_features": 16, "num_blocks": 1, "growth_channels": 8}
D_FEATURES = 8
GT_SIZE, BATCH = 128, 2
CASES = {
    "SRModel": {"config": "configs/psnr_x4.py"},
    "ESRGANModel": {"config": "configs/esrgan_x4.py"},
    "RealESRGANModel": {"config": "configs/realesrgan_x4plus.py"},
}
LOSS_NAMES = {  # BasicSR log_dict key(s) → our metric name (summed when several).
    "SRModel": {"l_pix": ("l_pix",)},
    "ESRGANModel": {"l_pix": ("l_g_pix",), "l_percep": ("l_g_percep",), "l_g_gan": ("l_g_gan",),
                    "d_loss": ("l_d_real", "l_d_fake"), "d_real": ("out_d_real",),
                    "d_fake": ("out_d_fake",)},
}
LOSS_NAMES["RealESRGANModel"] = LOSS_NAMES["ESRGANModel"]
SAVED_STEPS = (1, 5)


def basicsr_opt(case: str) -> dict:
  """BasicSR's option dict for a case: the yml files' losses and optimizers, small networks."""
  from esrgan_tf.benchmarking import basicsr_steps  # pylint: disable=g-import-not-at-top
  phase = "psnr" if case == "SRModel" else "gan"
  opt = basicsr_steps.make_opt({"phase": phase, "batch_size": BATCH, "gt_size": GT_SIZE,
                                "num_block": G_ARCH["num_block"], "ema_decay": 0.999,
                                "seed": 0})
  opt["network_g"].update(G_ARCH)
  opt["model_type"] = case
  if case == "ESRGANModel":
    opt["network_d"]["num_feat"] = D_FEATURES
  if case == "RealESRGANModel":
    # Real-ESRGAN 0.3.0 options/train_realesrgan_x4plus.yml.
    train = opt["train"]
    train["pixel_opt"]["loss_weight"] = 1.0
    train["perceptual_opt"]["layer_weights"] = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1,
                                                "conv4_4": 1, "conv5_4": 1}
    train["gan_opt"]["loss_weight"] = 0.1
    train["scheduler"] = {"type": "MultiStepLR", "milestones": [400000], "gamma": 0.5}
    opt["network_d"] = {"type": "UNetDiscriminatorSN", "num_in_ch": 3, "num_feat": D_FEATURES,
                        "skip_connection": True}
    opt.update(queue_size=180, l1_gt_usm=True, percep_gt_usm=True, gan_gt_usm=False)
  return opt


def fixed_batch() -> dict:
  """Two 128² HR crops of the bundled training photos, their 4×4-box LR and USM-sharpened HR."""
  from esrgan_tf import SAMPLES_DIR
  from esrgan_tf.data import degradations
  crops = []
  for name, (top, left) in (("astronaut.png", (40, 70)), ("coffee.png", (100, 20))):
    image = np.asarray(Image.open(os.path.join(SAMPLES_DIR, "train", name)).convert("RGB"))
    crops.append(image[top:top + GT_SIZE, left:left + GT_SIZE].astype(np.float32) / 255)
  gt = np.stack(crops)
  lq = gt.reshape(BATCH, GT_SIZE // 4, 4, GT_SIZE // 4, 4, 3).mean(axis=(2, 4))
  gt_usm = np.stack([degradations.usm_sharp(x) for x in gt]).astype(np.float32)
  return {"lq": lq.astype(np.float32), "gt": gt, "gt_usm": gt_usm}


@contextlib.contextmanager
def _cpu_only_cuda():
  """`.cuda()` returns the module/tensor itself (RealESRGANModel.__init__ moves helpers there)."""
  import torch  # pylint: disable=g-import-not-at-top
  saved = torch.nn.Module.cuda, torch.Tensor.cuda
  torch.nn.Module.cuda = lambda self, *args, **kwargs: self
  torch.Tensor.cuda = lambda self, *args, **kwargs: self
  try:
    yield
  finally:
    torch.nn.Module.cuda, torch.Tensor.cuda = saved


def _state(module) -> dict:
  """A copy (float64 tensors' .numpy() would share memory with the training weights)."""
  return {k: np.array(v.detach().cpu().numpy(), np.float64, copy=True)
          for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}


def run_basicsr(case: str, workdir: str, dtype: str, steps: int) -> dict:
  """BasicSR's `steps` steps on `fixed_batch()`; {"init": {...}, k: {...}, "loss": {...}}.

  The networks are built from the same seed for both dtypes; float64 converts them (and the
  perceptual loss's VGG) after building, before any step.
  """
  from basicsr.models import build_model  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  if case == "RealESRGANModel":
    import realesrgan.models  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  torch.manual_seed(0)
  cwd = os.getcwd()
  os.chdir(workdir)  # BasicSR loads experiments/pretrained_models/vgg19-dcbb9e9d.pth from here.
  try:
    with _cpu_only_cuda():
      model = build_model(basicsr_opt(case))
  finally:
    os.chdir(cwd)
  torch_dtype = torch.float64 if dtype == "float64" else torch.float32
  nets = {"g": model.net_g, "ema": model.net_g_ema}
  if hasattr(model, "net_d"):
    nets["d"] = model.net_d
  for module in list(nets.values()) + [getattr(model, "cri_perceptual", None)]:
    if module is not None:
      module.to(torch_dtype)
  batch = {k: torch.from_numpy(v.transpose(0, 3, 1, 2).copy()).to(torch_dtype)
           for k, v in fixed_batch().items()}
  out = {"init": {f"{n}/{k}": v for n, net in nets.items() for k, v in _state(net).items()},
         "loss": {}}
  for step in range(1, steps + 1):
    model.lq, model.gt = batch["lq"], batch["gt"]
    if case == "RealESRGANModel":
      model.gt_usm = batch["gt_usm"]
    model.optimize_parameters(step)
    for name, value in model.log_dict.items():
      out["loss"].setdefault(name, []).append(float(value))
    if step in SAVED_STEPS:
      out[step] = {f"{n}/{k}": v for n, net in nets.items() for k, v in _state(net).items()}
  return out


def write_inputs(case: str, basicsr: dict, workdir: str) -> dict:
  """The initial G, D and the batch as files for our side; returns its job."""
  import torch  # pylint: disable=g-import-not-at-top

  def save(prefix, path):
    state = {k[len(prefix) + 1:]: torch.from_numpy(v.astype(np.float32))
             for k, v in basicsr["init"].items() if k.startswith(prefix + "/")}
    torch.save({"params": state}, path)
    return path

  np.savez(os.path.join(workdir, "batch.npz"), **fixed_batch())
  job = {"config": os.path.join(REPO, CASES[case]["config"]),
         "model": {**OUR_G_ARCH, "upsampler": "nearest"}, "gt_size": GT_SIZE,
         "discriminator_features": D_FEATURES,
         "g": save("g", os.path.join(workdir, "g.pth")),
         "d": save("d", os.path.join(workdir, "d.pth")) if case != "SRModel" else None,
         "vgg": os.path.join(workdir, "experiments", "pretrained_models", "vgg19-dcbb9e9d.pth"),
         "batch": os.path.join(workdir, "batch.npz"), "steps": list(SAVED_STEPS),
         "out": os.path.join(workdir, "ours.npz")}
  return job


def run_ours(job: dict, tf_python: str, workdir: str) -> dict:
  """Our side in the TF interpreter; {"loss": {name: [per step]}, k: {name: array}}."""
  path = os.path.join(workdir, "job.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(job, f)
  env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
  subprocess.run([tf_python, "-m", "esrgan_tf.benchmarking.train_parity", path], check=True,
                 env=env)
  out = {"loss": {}}
  with np.load(job["out"]) as saved:
    for key in saved.files:
      head, _, rest = key.partition("/")
      if head == "loss":
        out["loss"][rest] = saved[key].astype(np.float64)
      else:
        out.setdefault(int(head), {})[rest] = saved[key].astype(np.float64)
  return out


def relative(a, b, init=None) -> float:
  """‖a − b‖/‖b‖, of the updates a − init, b − init when init is given."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if init is not None:
    a, b = a - init, b - init
  norm = np.linalg.norm(b)
  return float(np.linalg.norm(a - b) / norm) if norm else float(np.linalg.norm(a - b))


def _group(name: str) -> str:
  """Report row of a weight: g, ema, d, and D's batch-norm/spectral-norm state apart."""
  net, key = name.split("/", 1)
  if net == "d" and key.endswith(("running_mean", "running_var")):
    return "d batch-norm statistics"
  if net == "d" and key.endswith(("weight_u", "weight_v")):
    return "d spectral-norm u, v"
  return {"g": "G weights", "ema": "EMA G weights", "d": "D weights"}[net]


def compare_case(case: str, ours: dict, t32: dict, t64: dict) -> list:
  """Rows (case, step, item, ours vs BasicSR f32, ours vs f64, f32 vs f64) of the worst
  relative differences: each loss term at steps 1 and 5, each weight group after them."""
  rows = []
  for ours_name, theirs_names in LOSS_NAMES[case].items():
    def loss(run, names=theirs_names):
      return np.sum([run["loss"][n] for n in names], axis=0)
    for step in SAVED_STEPS:
      i = step - 1
      rows.append((case, step, f"{ours_name} step {step}",
                   relative(ours["loss"][ours_name][i], loss(t32)[i]),
                   relative(ours["loss"][ours_name][i], loss(t64)[i]),
                   relative(loss(t32)[i], loss(t64)[i])))
  for step in SAVED_STEPS:
    worst = {}
    for name, init in t32["init"].items():
      if name not in ours[step]:
        raise KeyError(f"{case}: our side has no {name}")
      if name in t64[step] and np.allclose(t64[step][name], init, rtol=0, atol=0):
        continue  # Unchanged by the step on both sides (e.g. an unused buffer).
      diffs = (relative(ours[step][name], t32[step][name], init),
               relative(ours[step][name], t64[step][name], init),
               relative(t32[step][name], t64[step][name], init))
      group = _group(name)
      if group not in worst or diffs[0] > worst[group][0][0]:
        worst[group] = (diffs, name)
    for group, (diffs, name) in sorted(worst.items()):
      rows.append((case, step, f"{group} after step {step} (worst: {name.split('/', 1)[1]})",
                   *diffs))
  return rows


def _kind(item: str) -> str:
  return "weights" if " after step " in item else "losses"


def over_limit(rows: list, factor: float, tolerance: float) -> list:
  """Rows whose ours-vs-BasicSR-f32 difference exceeds `factor` × the float32 noise floor of
  their case, step and kind (losses or weights: the largest f32-vs-f64 difference among them;
  one f32/f64 pair is a single sample of the noise, small by chance on some items) or
  `tolerance`."""
  floor = {}
  for case, step, item, _, _, f32_vs_f64 in rows:
    key = (case, step, _kind(item))
    floor[key] = max(floor.get(key, 0.0), f32_vs_f64)
  return [f"{case} {item}" for case, step, item, ours_vs_f32, _, _ in rows
          if ours_vs_f32 > max(factor * floor[case, step, _kind(item)], tolerance)]


def check_steps(args) -> list:
  """Runs the three cases; prints the table; returns the rows beyond the limit."""
  from esrgan_tf.benchmarking import basicsr_steps  # pylint: disable=g-import-not-at-top
  if not args.tf_python:
    sys.exit("error: the steps section needs --tf_python (or $ESRGAN_TF_PYTHON): the "
             "interpreter of this checkout's TF environment, which runs our side")
  rows = []
  for case in args.cases.split(","):
    with tempfile.TemporaryDirectory(prefix="basicsr_parity_") as tmp:
      vgg = os.path.join(tmp, "experiments", "pretrained_models", "vgg19-dcbb9e9d.pth")
      basicsr_steps.write_random_vgg19(vgg)  # torchvision's layout, random (seeded) weights.
      t32 = run_basicsr(case, tmp, "float32", max(SAVED_STEPS))
      t64 = run_basicsr(case, tmp, "float64", max(SAVED_STEPS))
      job = write_inputs(case, t32, tmp)
      job["overrides"] = dict(item.split("=", 1) for item in args.override)
      ours = run_ours(job, args.tf_python, tmp)
      rows += compare_case(case, ours, t32, t64)
  print("## training steps: relative differences (BasicSR f32 vs f64 is the float32 noise floor)")
  print("| model | item | ours vs BasicSR f32 | ours vs BasicSR f64 | BasicSR f32 vs f64 |")
  print("|---|---|---:|---:|---:|")
  for case, _, item, ours_vs_f32, ours_vs_f64, f32_vs_f64 in rows:
    print(f"| {case} | {item} | {ours_vs_f32:.2e} | {ours_vs_f64:.2e} | {f32_vs_f64:.2e} |")
  return over_limit(rows, args.steps_factor, args.steps_tolerance)


# --- NIQE --------------------------------------------------------------------------------------


def _niqe_images():
  """(name, uint8 RGB) of the bundled photos and their ×4 bicubic upscales (Pillow)."""
  from esrgan_tf import SAMPLES_DIR  # pylint: disable=g-import-not-at-top
  for folder in ("train", "val", "heldout"):
    for name in sorted(os.listdir(os.path.join(SAMPLES_DIR, folder))):
      if not name.endswith(".png"):
        continue
      image = Image.open(os.path.join(SAMPLES_DIR, folder, name)).convert("RGB")
      yield f"{folder}/{name}", np.asarray(image)
      width, height = image.size
      small = image.resize((width // 4, height // 4), Image.BICUBIC)
      yield f"{folder}/{name} ×4 bicubic", np.asarray(small.resize((width, height),
                                                                  Image.BICUBIC))


@contextlib.contextmanager
def _basicsr_resize_in_float64():
  """BasicSR's NIQE with its ×1/2 resize summed in float64 (then float32): how far its own value
  moves with the float32 rounding of its BLAS kernel (the noise floor of the comparison)."""
  from basicsr.metrics import niqe as basicsr_niqe  # pylint: disable=g-import-not-at-top
  from basicsr.utils import matlab_functions  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  original = basicsr_niqe.imresize

  def imresize64(img, scale, antialiasing=True):
    saved = torch.FloatTensor, torch.get_default_dtype()
    torch.FloatTensor = torch.DoubleTensor  # Its work buffers; its weights follow the default.
    torch.set_default_dtype(torch.float64)
    try:
      out = matlab_functions.imresize(torch.from_numpy(np.float64(img))[None], scale,
                                      antialiasing)
    finally:
      torch.FloatTensor = saved[0]
      torch.set_default_dtype(saved[1])
    return out[0].numpy().astype(np.float32)

  basicsr_niqe.imresize = imresize64
  try:
    yield
  finally:
    basicsr_niqe.imresize = original


def check_niqe(args) -> list:
  """Prints ours vs BasicSR's calculate_niqe per image; returns the images beyond the limit."""
  from basicsr.metrics.niqe import calculate_niqe  # pylint: disable=g-import-not-at-top

  from esrgan_tf.evaluation import niqe  # pylint: disable=g-import-not-at-top
  print("## NIQE (crop_border 0, Y channel): ours vs BasicSR calculate_niqe; noise floor: "
        "BasicSR with its ×1/2 resize summed in float64")
  print("| image | size | BasicSR | ours | |ours − BasicSR| | noise floor |")
  print("|---|---|---:|---:|---:|---:|")
  failed = []
  for name, rgb in _niqe_images():
    if min(rgb.shape[:2]) < 96:  # NIQE's 96² blocks: BasicSR fails on smaller images.
      continue
    theirs = calculate_niqe(rgb[..., ::-1], crop_border=0)  # BasicSR takes cv2's BGR order.
    with _basicsr_resize_in_float64():
      exact = calculate_niqe(rgb[..., ::-1], crop_border=0)
    ours = niqe.niqe(rgb)
    diff = abs(ours - theirs)
    print(f"| {name} | {rgb.shape[1]}×{rgb.shape[0]} | {theirs:.6f} | {ours:.6f} | {diff:.2e} | "
          f"{abs(exact - theirs):.2e} |")
    if diff > args.niqe_tolerance:
      failed.append(f"niqe {name}")
  return failed

def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--sections", default=",".join(SECTIONS),
                      help=f"comma-separated, of {SECTIONS}")
  parser.add_argument("--tolerance", type=float, default=1e-6,
                      help="degradations: largest accepted |ours − BasicSR| (default 1e-6)")
  parser.add_argument("--jpeg_tolerance", type=float, default=1 / 255,
                      help="degradations: largest accepted JPEG difference (one 8-bit level)")
  parser.add_argument("--tf_python", default=os.environ.get("ESRGAN_TF_PYTHON", ""),
                      help="steps: the TF environment's interpreter (default $ESRGAN_TF_PYTHON)")
  parser.add_argument("--cases", default=",".join(CASES),
                      help=f"steps: comma-separated, of {tuple(CASES)}")
  parser.add_argument("--steps_factor", type=float, default=10.0,
                      help="steps: accepted ours-vs-BasicSR-f32 difference, in multiples of the "
                      "float32 noise floor of the case, step and kind (default 10)")
  parser.add_argument("--steps_tolerance", type=float, default=1e-4,
                      help="steps: ... or at most this relative difference (default 1e-4)")
  parser.add_argument("--override", action="append", default=[],
                      help="steps: KEY=VALUE set in our configs (e.g. loss.ragan_form=paper, "
                      "optim.epsilon_form=keras: what the comparison shows without them)")
  parser.add_argument("--niqe_tolerance", type=float, default=3e-3,
                      help="niqe: largest accepted |ours − BasicSR| (default 3e-3: a step of "
                      "0.001 in a block's fitted α, which one float32 rounding can cause)")
  args = parser.parse_args()
  sections = args.sections.split(",")
  unknown = sorted(set(sections) - set(SECTIONS))
  if unknown:
    parser.error(f"unknown sections {unknown}; known: {SECTIONS}")
  sys.path.insert(0, REPO)
  from esrgan_tf.benchmarking import basicsr_steps  # pylint: disable=g-import-not-at-top
  try:
    basicsr_steps.install_import_shims()  # BasicSR 1.4.2 next to a current torchvision.
    import basicsr  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    sys.exit(f"error: BasicSR is not importable by {sys.executable} ({e}); run this script with "
             "an interpreter that has the `benchmark` extra (torch + basicsr 1.4.2)")
  checks = {"degradations": check_degradations, "steps": check_steps, "niqe": check_niqe}
  failed = []
  for section in sections:
    failed += checks[section](args)
  if failed:
    print(f"error: differs from BasicSR beyond the limit: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main()
