r"""Compares esrgan_tf.data.degradations with BasicSR 1.4.2's own functions, on the same inputs.

Run it with an interpreter that has torch + basicsr (the `benchmark` extra); it imports this
checkout's esrgan_tf.data.degradations, which needs only numpy and Pillow (no TensorFlow):

  /path/to/torch-venv/bin/python scripts/check_basicsr_parity.py

Prints the largest absolute difference per function (kernels over random shapes at sizes 7 and
21, sinc kernels over cutoffs π/3..π with and without pad_to, USM sharpening and JPEG on
samples/val/chelsea.png) and exits 1 if one exceeds --tolerance. The random parts (kernel and
noise draws) use different generators on the two sides and are not compared here; their
distributions are tested in tests/test_degradations.py.

argparse, not absl: this runs in BasicSR's interpreter, which the `benchmark` extra does not give
absl (as `esrgan_tf.benchmarking.basicsr_steps`).
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image


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


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--tolerance", type=float, default=1e-6,
                      help="largest accepted |ours − BasicSR| (default 1e-6)")
  parser.add_argument("--jpeg_tolerance", type=float, default=1 / 255,
                      help="largest accepted JPEG difference (default one 8-bit level)")
  args = parser.parse_args()
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  # pylint: disable=g-import-not-at-top
  from esrgan_tf import SAMPLES_DIR
  from esrgan_tf.benchmarking import basicsr_steps
  from esrgan_tf.data import degradations as ours
  try:
    basicsr_steps.install_import_shims()  # BasicSR 1.4.2 next to a current torchvision.
    from basicsr.data import degradations as theirs
    from basicsr.utils import img_process_util
  except ImportError as e:
    sys.exit(f"error: BasicSR is not importable by {sys.executable} ({e}); run this script with "
             "an interpreter that has the `benchmark` extra (torch + basicsr 1.4.2)")
  # pylint: enable=g-import-not-at-top
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
  for name, diff in worst.items():
    limit = args.jpeg_tolerance if name == "jpeg_compress" else args.tolerance
    print(f"{name:32s} max |ours − BasicSR| {diff:.3g}  (limit {limit:.3g})")
    if diff > limit:
      failed.append(name)
  if failed:
    print(f"error: differs from BasicSR beyond the limit: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main()
