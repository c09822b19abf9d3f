"""PSNR and SSIM as super-resolution papers report them (BasicSR conventions), and evaluation.

Conventions (BasicSR `basicsr/metrics/psnr_ssim.py`, which follows the MATLAB code of the SR
papers):
  * inputs are HxWxC images on the [0, 255] scale (uint8 or float), math in float64;
  * `crop_border` pixels are removed from each side before measuring (usually the scale);
  * `y_channel=True` measures the luma of ITU-R BT.601 YCbCr as MATLAB's `rgb2ycbcr` defines it:
    Y = (65.481 R + 128.553 G + 24.966 B) / 255 + 16 for R, G, B on [0, 255] (so Y ∈ [16, 235]);
  * PSNR = 10 · log10(255² / MSE), identical images → inf;
  * SSIM (Wang et al. 2004): 11×11 Gaussian window with σ = 1.5, C1 = (0.01·255)²,
    C2 = (0.03·255)², 'valid' filtering (no padding), mean of the SSIM map per channel, then the
    mean over channels.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from esrgan_tf.core import fileio
from esrgan_tf.images import pixels
from esrgan_tf.inference import tiling

# ITU-R BT.601 luma of [0, 255] RGB, studio swing (MATLAB rgb2ycbcr; BasicSR bgr2ycbcr, RGB order).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], np.float64) / 255.0
_Y_OFFSET = 16.0
# SSIM constants (Wang et al. 2004, §III-C): K1 = 0.01, K2 = 0.03, L = 255.
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5


def rgb_to_y(image: np.ndarray) -> np.ndarray:
  """BT.601 luma of an RGB image on the [0, 255] scale.

  Args:
    image: HxWx3 array on [0, 255].

  Returns:
    HxWx1 float64 array on [16, 235].
  """
  img = np.asarray(image, np.float64)
  return (img @ _Y_WEIGHTS + _Y_OFFSET)[..., None]


def _prepare(img, ref, crop_border: int, y_channel: bool):
  img = np.asarray(img)
  ref = np.asarray(ref)
  if img.shape != ref.shape:
    raise ValueError(f"image shapes differ: {img.shape} vs {ref.shape}")
  if img.ndim == 2:
    img, ref = img[..., None], ref[..., None]
  if img.ndim != 3:
    raise ValueError(f"expected HxWxC images, got shape {img.shape}")
  if crop_border < 0:
    raise ValueError(f"crop_border must be >= 0, got {crop_border}")
  if crop_border:
    if min(img.shape[:2]) <= 2 * crop_border:
      raise ValueError(f"crop_border {crop_border} leaves nothing of a {img.shape[:2]} image")
    img = img[crop_border:-crop_border, crop_border:-crop_border]
    ref = ref[crop_border:-crop_border, crop_border:-crop_border]
  img = img.astype(np.float64)
  ref = ref.astype(np.float64)
  if y_channel:
    if img.shape[2] != 3:
      raise ValueError(f"y_channel needs 3-channel RGB images, got {img.shape[2]} channels")
    img, ref = rgb_to_y(img), rgb_to_y(ref)
  return img, ref


def calculate_psnr(img, ref, crop_border: int = 0, y_channel: bool = False) -> float:
  """PSNR in dB on the [0, 255] scale.

  Args:
    img: HxWxC (or HxW) array on [0, 255], uint8 or float.
    ref: The reference, same shape.
    crop_border: Pixels removed from each side first.
    y_channel: Measure the BT.601 Y channel of RGB images.

  Returns:
    PSNR in dB; `inf` for identical images.

  Raises:
    ValueError: Shapes differ, bad crop_border, or y_channel on non-RGB input.
  """
  img, ref = _prepare(img, ref, crop_border, y_channel)
  mse = np.mean((img - ref) ** 2)
  if mse == 0:
    return float("inf")
  return float(10.0 * math.log10(255.0 ** 2 / mse))


def gaussian_window(size: int = _SSIM_WINDOW, sigma: float = _SSIM_SIGMA) -> np.ndarray:
  """Normalised 1-D Gaussian (as OpenCV's getGaussianKernel for sigma > 0)."""
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  g = np.exp(-x ** 2 / (2.0 * sigma ** 2))
  return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
  """Separable 'valid' correlation of a 2-D array with the outer product g gᵀ."""
  k = len(g)
  rows = sum(g[i] * x[i:x.shape[0] - k + 1 + i] for i in range(k))
  return sum(g[j] * rows[:, j:x.shape[1] - k + 1 + j] for j in range(k))


def _ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
  g = gaussian_window()
  mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
  var_a = _filter_valid(a * a, g) - mu_a ** 2
  var_b = _filter_valid(b * b, g) - mu_b ** 2
  cov = _filter_valid(a * b, g) - mu_a * mu_b
  ssim_map = (((2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)) /
              ((mu_a ** 2 + mu_b ** 2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)))
  return float(ssim_map.mean())


def calculate_ssim(img, ref, crop_border: int = 0, y_channel: bool = False) -> float:
  """SSIM on the [0, 255] scale, per channel then averaged (BasicSR `calculate_ssim`).

  Args:
    img: HxWxC (or HxW) array on [0, 255], uint8 or float.
    ref: The reference, same shape.
    crop_border: Pixels removed from each side first.
    y_channel: Measure the BT.601 Y channel of RGB images.

  Returns:
    Mean SSIM (1.0 for identical images).

  Raises:
    ValueError: Shapes differ, bad crop_border, y_channel on non-RGB input, or the image is
      smaller than the 11×11 window after cropping.
  """
  img, ref = _prepare(img, ref, crop_border, y_channel)
  if min(img.shape[:2]) < _SSIM_WINDOW:
    raise ValueError(f"SSIM needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels after cropping, "
                     f"got {img.shape[:2]}")
  return float(np.mean([_ssim_2d(img[..., c], ref[..., c]) for c in range(img.shape[2])]))


def to_uint8_levels(image: np.ndarray) -> np.ndarray:
  """[0, 1] float image → float64 on [0, 255] rounded to 8-bit levels (as a saved PNG).

  Mirrors BasicSR's `tensor2img` (clamp to [0, 1], ×255, round) with the package's one rounding
  rule (`esrgan_tf.images.pixels`), so that metrics measure what a user gets in the output file.
  """
  return pixels.from_float(np.asarray(image, np.float32)).astype(np.float64)


def niqe_score(image255: np.ndarray, crop_border: int = 0) -> float | None:
  """NIQE (`esrgan_tf.evaluation.niqe`, BasicSR's `calculate_niqe`) of an image on 8-bit
  levels [0, 255], or None when it has fewer than two of NIQE's 96×96 blocks after the crop."""
  from esrgan_tf.evaluation import niqe  # pylint: disable=g-import-not-at-top
  try:
    return niqe.niqe(image255, crop_border)
  except niqe.NiqeError:
    return None


def _mean_of_scored(rows: list, key: str) -> float | None:
  values = [r[key] for r in rows if r.get(key) is not None]
  return float(np.mean(values)) if values else None


def _upscale(engine, lr: np.ndarray, tiles: Optional[tiling.TileSpec]) -> np.ndarray:
  if tiles is None and getattr(engine, "input_size", None):
    # A fixed-size model (TFLite, a static ONNX) takes tiles of its own size, nothing padded.
    overlap = min(tiling.DEFAULT_OVERLAP, min(engine.input_size) // 4)
    tiles = tiling.TileSpec(tile=0, overlap=overlap, pre_pad=0)
  if tiles is None:
    return np.asarray(engine(lr[None].astype(np.float32))[0])
  return np.asarray(tiling.upscale_array(lr, engine, tiles))


def evaluate(engine, pairs: Iterable[Sequence], *, crop_border: int = 0,
             y_channel: bool = False, tiles: Optional[tiling.TileSpec] = None,
             bicubic: bool = True,
             on_image: Optional[Callable[[str, dict], None]] = None,
             niqe: bool = False) -> dict:
  """PSNR/SSIM of a model (and of MATLAB bicubic upscaling) on (name, lr, hr) pairs.

  SR output, bicubic output and HR are rounded to 8-bit levels before measuring
  (`to_uint8_levels`).

  Args:
    engine: Callable on float32 [N, H, W, C] batches in [0, 1] (an `Engine`), or None to
      evaluate only the bicubic baseline.
    pairs: (name, lr HxWxC float [0, 1], hr sHxsWxC float [0, 1]) triples, e.g. from
      `datasets.load_validation_set`.
    crop_border: Pixels removed from each side before measuring.
    y_channel: Measure on BT.601 Y.
    tiles: None calls the model on the whole image, nothing padded (the papers' protocol); a
      `tiling.TileSpec` goes through `tiling.upscale_array` (which needs an `Engine`).
    bicubic: Also measure the MATLAB-bicubic upscale of the LR image.
    on_image: Called once per image as `on_image(name, {"lr", "hr", "sr", "bicubic"})` (float
      arrays; keys of what was not computed are absent), e.g. `report.ReportWriter`.
    niqe: Also score NIQE (no reference; `niqe_score`) of the SR and bicubic outputs.

  Returns:
    {"images": [{"name", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim"[, "niqe",
     "bicubic_niqe"]}, ...], "mean": {"psnr", "ssim"[, "niqe"]}, "bicubic_mean": {...},
     "psnr_gain" (mean PSNR of the model minus bicubic's), "crop_border", "y_channel",
     "num_images"}. Keys of what was not measured are absent; a NIQE is None for an image
     with fewer than two 96² blocks (means over the others; no mean when none is scored).

  Raises:
    ValueError: No pairs, or an output whose shape differs from its HR image.
  """
  from esrgan_tf.images import imresize  # pylint: disable=g-import-not-at-top  (imports TensorFlow)

  rows = []
  for name, lr, hr in pairs:
    hr255 = to_uint8_levels(hr)
    scale = hr.shape[0] // lr.shape[0]
    row = {"name": name}
    if engine is not None:
      sr = _upscale(engine, np.asarray(lr, np.float32), tiles)
      if sr.shape != hr.shape:
        raise ValueError(f"{name}: model output {sr.shape} differs from the HR image {hr.shape}")
      sr255 = to_uint8_levels(sr)
      row["psnr"] = calculate_psnr(sr255, hr255, crop_border, y_channel)
      row["ssim"] = calculate_ssim(sr255, hr255, crop_border, y_channel)
      if niqe:
        row["niqe"] = niqe_score(sr255, crop_border)
    if bicubic:
      bic = imresize.imresize(np.asarray(lr, np.float32), scale).numpy()
      bic255 = to_uint8_levels(bic)
      row["bicubic_psnr"] = calculate_psnr(bic255, hr255, crop_border, y_channel)
      row["bicubic_ssim"] = calculate_ssim(bic255, hr255, crop_border, y_channel)
      if niqe:
        row["bicubic_niqe"] = niqe_score(bic255, crop_border)
    if on_image is not None:
      images = {"lr": lr, "hr": hr}
      if engine is not None:
        images["sr"] = sr
      if bicubic:
        images["bicubic"] = bic
      on_image(name, images)
    rows.append(row)
  if not rows:
    raise ValueError("evaluate: no images to evaluate")
  result = {"images": rows, "crop_border": crop_border, "y_channel": y_channel,
            "num_images": len(rows)}
  for prefix, key in (("", "mean"), ("bicubic_", "bicubic_mean")):
    if prefix + "psnr" in rows[0]:
      result[key] = {m: float(np.mean([r[prefix + m] for r in rows])) for m in ("psnr", "ssim")}
      niqe_mean = _mean_of_scored(rows, prefix + "niqe")
      if niqe_mean is not None:
        result[key]["niqe"] = niqe_mean
  if "mean" in result and "bicubic_mean" in result:
    result["psnr_gain"] = result["mean"]["psnr"] - result["bicubic_mean"]["psnr"]
  return result


def evaluate_no_reference(engine, images: Iterable[Sequence], *, crop_border: int = 0,
                          tiles: Optional[tiling.TileSpec] = None,
                          on_image: Optional[Callable[[str, dict], None]] = None) -> dict:
  """NIQE of a model's outputs and of MATLAB bicubic, on LR photos without ground truth.

  Real-world SR is judged so (Real-ESRGAN reports NIQE): lower is more natural. Outputs are
  rounded to 8-bit levels first (`to_uint8_levels`), as the saved file would be.

  Args:
    engine: An `Engine` (callable on float32 [N, H, W, C] batches in [0, 1], with .scale).
    images: (name, lr HxWxC float [0, 1]) pairs.
    crop_border: Pixels removed from each side of the outputs before scoring.
    tiles: See `evaluate`.
    on_image: Called as `on_image(name, {"lr", "sr", "bicubic"})`, e.g. `report.ReportWriter`.

  Returns:
    {"images": [{"name", "niqe", "bicubic_niqe"}], "mean": {"niqe"}, "bicubic_mean": {"niqe"},
     "niqe_gain" (bicubic's mean NIQE minus the model's: > 0 when the model's outputs look
     more natural), "crop_border", "num_images", "num_scored", "no_reference": True}. A NIQE
     is None for an output with fewer than two 96² blocks after the crop; means over the others.

  Raises:
    ValueError: No images.
  """
  from esrgan_tf.images import imresize  # pylint: disable=g-import-not-at-top  (imports TensorFlow)

  rows = []
  for name, lr in images:
    lr = np.asarray(lr, np.float32)
    sr = _upscale(engine, lr, tiles)
    bic = imresize.imresize(lr, engine.scale).numpy()
    rows.append({"name": name, "niqe": niqe_score(to_uint8_levels(sr), crop_border),
                 "bicubic_niqe": niqe_score(to_uint8_levels(bic), crop_border)})
    if on_image is not None:
      on_image(name, {"lr": lr, "sr": sr, "bicubic": bic})
  if not rows:
    raise ValueError("evaluate_no_reference: no images to evaluate")
  mean, bicubic = _mean_of_scored(rows, "niqe"), _mean_of_scored(rows, "bicubic_niqe")
  result = {"images": rows, "mean": {"niqe": mean}, "bicubic_mean": {"niqe": bicubic},
            "crop_border": crop_border, "num_images": len(rows),
            "num_scored": sum(r["niqe"] is not None for r in rows), "no_reference": True}
  if mean is not None and bicubic is not None:
    result["niqe_gain"] = bicubic - mean
  return result


def _cell(row, key, fmt):
  return format(row[key], fmt) if row.get(key) is not None else "-"


def _format_no_reference(result: dict) -> str:
  lines = [f"{'image':<24} {'NIQE':>8} {'bic NIQE':>9}"]

  def line(name, row):
    return f"{name:<24} {_cell(row, 'niqe', '.4f'):>8} {_cell(row, 'bicubic_niqe', '.4f'):>9}"

  lines += [line(str(row["name"])[:24], row) for row in result["images"]]
  lines.append(line("mean", {"niqe": result["mean"]["niqe"],
                             "bicubic_niqe": result["bicubic_mean"]["niqe"]}))
  if "niqe_gain" in result:
    lines.append(f"NIQE, MATLAB bicubic minus model (> 0: the model's outputs look more "
                 f"natural): {result['niqe_gain']:+.4f}")
  lines.append(f"({result['num_images']} images, {result['num_scored']} scored (NIQE needs two "
               f"96×96 blocks), no reference, crop_border={result['crop_border']})")
  return "\n".join(lines)


def format_table(result: dict) -> str:
  """A plain-text table of `evaluate` results (per image, mean, bicubic mean), or of
  `evaluate_no_reference`'s."""
  if result.get("no_reference"):
    return _format_no_reference(result)
  niqe = "niqe" in result.get("mean", {})
  lines = [f"{'image':<24} {'PSNR':>8} {'SSIM':>7} {'bic PSNR':>9} {'bic SSIM':>9}"
           + (f" {'NIQE':>8} {'bic NIQE':>9}" if niqe else "")]

  def line(name, row):
    text = (f"{name:<24} {_cell(row, 'psnr', '.3f'):>8} {_cell(row, 'ssim', '.4f'):>7} "
            f"{_cell(row, 'bicubic_psnr', '.3f'):>9} {_cell(row, 'bicubic_ssim', '.4f'):>9}")
    if niqe:
      text += f" {_cell(row, 'niqe', '.4f'):>8} {_cell(row, 'bicubic_niqe', '.4f'):>9}"
    return text

  for row in result["images"]:
    lines.append(line(str(row["name"])[:24], row))
  mean = dict(result.get("mean", {}))
  mean.update({f"bicubic_{k}": v for k, v in result.get("bicubic_mean", {}).items()})
  lines.append(line("mean", mean))
  if "psnr_gain" in result:
    lines.append(f"PSNR gain over MATLAB bicubic: {result['psnr_gain']:+.3f} dB")
  space = "Y" if result["y_channel"] else "RGB"
  lines.append(f"({result['num_images']} images, {space}, crop_border={result['crop_border']})")
  return "\n".join(lines)


def save_json(path: str, result: dict, *, overwrite: bool = True) -> None:
  """Writes `result` as JSON atomically (`core.fileio`: no partial file on any failure)."""
  import json  # pylint: disable=g-import-not-at-top

  text = json.dumps(result, indent=2, allow_nan=True) + "\n"
  fileio.write_bytes(path, text, overwrite=overwrite)
