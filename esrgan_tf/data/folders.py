"""Image files on disk: listing, header checks, LR/HR pairing, decoding with Pillow.

The low layer under the training data pipeline (`esrgan_tf.data.datasets`) and the TFRecord writer
(`esrgan_tf.data.tfrecords`): plain Python and Pillow, no tf.data.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import os

from absl import logging
import numpy as np
from PIL import Image
import tensorflow as tf

from esrgan_tf.images import image_io

IMAGE_EXTENSIONS = image_io.IMAGE_EXTENSIONS  # the one list (image_io.EXTENSION_FORMATS)
# Pillow format names that tf.io.decode_image decodes in-graph (checked on TF 2.21).
_TF_DECODABLE = frozenset({"PNG", "JPEG", "BMP", "GIF", "WEBP"})


class DataError(ValueError):
  """A dataset that cannot be used; the message names the path and the problem."""


@dataclasses.dataclass(frozen=True)
class ImageFile:
  """A readable image found by `scan_images`."""
  path: str
  key: str  # path relative to the root, without extension (pairing key and display name)
  height: int
  width: int
  tf_decodable: bool


# --- listing and checking files --------------------------------------------------------------

def list_image_files(directory: str) -> list[str]:
  """Image files under `directory` (recursive, extension allowlist), sorted.

  Args:
    directory: A local or tf.io.gfile (e.g. gs://) directory.

  Returns:
    Sorted full paths.

  Raises:
    DataError: The directory does not exist.
  """
  if not directory or not tf.io.gfile.isdir(directory):
    raise DataError(f"{directory!r}: image directory does not exist")
  paths = []
  for root, _, files in tf.io.gfile.walk(directory):
    for name in files:
      if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
        paths.append(os.path.join(root, name))
  return sorted(paths)


def _check_image(path: str) -> tuple[int, int, str]:
  with tf.io.gfile.GFile(path, "rb") as f, Image.open(f) as img:
    width, height = img.size
    fmt = img.format or ""
    img.verify()  # structure/CRC check without decoding the pixels
  if width <= 0 or height <= 0:
    raise ValueError("empty image")
  return height, width, fmt


def scan_images(directory: str) -> tuple[list[ImageFile], list[tuple[str, str]]]:
  """Lists and checks the images under `directory`, logging and skipping unreadable ones.

  Args:
    directory: Root directory (recursive).

  Returns:
    (readable `ImageFile`s sorted by path, [(path, reason)] of the unreadable ones).

  Raises:
    DataError: The directory does not exist.
  """
  good, bad = [], []
  for path in list_image_files(directory):
    try:
      height, width, fmt = _check_image(path)
    except Exception as e:  # noqa: BLE001  (Pillow raises many types)
      reason = f"{type(e).__name__}: {e}"
      logging.warning("Skipping unreadable image %s (%s)", path, reason)
      bad.append((path, reason))
      continue
    key = os.path.splitext(os.path.relpath(path, directory))[0].replace(os.sep, "/")
    good.append(ImageFile(path, key, height, width, fmt.upper() in _TF_DECODABLE))
  if bad:
    logging.warning("%s: skipped %d unreadable image(s) of %d", directory, len(bad),
                    len(bad) + len(good))
  return good, bad


def drop_small(files: list[ImageFile], min_size: int, directory: str) -> list[ImageFile]:
  kept = [f for f in files if min(f.height, f.width) >= min_size]
  for f in files:
    if min(f.height, f.width) < min_size:
      logging.warning("Skipping %s: %dx%d is smaller than the %d crop", f.path, f.width,
                      f.height, min_size)
  if len(kept) < len(files):
    logging.warning("%s: skipped %d image(s) smaller than %d", directory, len(files) - len(kept),
                    min_size)
  return kept


def _mod_crop_size(size: int, scale: int) -> int:
  return size - size % scale


def pair_images(hr_files: Sequence[ImageFile], lr_files: Sequence[ImageFile], scale: int
                ) -> list[tuple[ImageFile, ImageFile]]:
  """Matches LR to HR images by key and checks HR == scale × LR.

  The HR size is compared after cropping it to a multiple of the scale (BasicSR's `mod_crop`),
  so LR made by MATLAB from a mod-cropped HR pairs with the uncropped HR. An LR key may end with
  `x{scale}` (DIV2K: 0001x4.png pairs with 0001.png). Unmatched files are logged and skipped.

  Args:
    hr_files: From `scan_images` on the HR folder.
    lr_files: From `scan_images` on the LR folder.
    scale: The upscaling factor.

  Returns:
    [(lr, hr)] in HR order.

  Raises:
    DataError: Size mismatches (all are listed) or no pair at all.
  """
  suffix = f"x{scale}"
  lr_by_key = {}
  for f in lr_files:
    key = f.key[:-len(suffix)] if f.key.endswith(suffix) and f.key[:-len(suffix)] else f.key
    lr_by_key[key] = f
  pairs, mismatches, unmatched = [], [], []
  for hr in hr_files:
    lr = lr_by_key.pop(hr.key, None)
    if lr is None:
      unmatched.append(hr.path)
      continue
    expected = (scale * lr.height, scale * lr.width)
    if (_mod_crop_size(hr.height, scale), _mod_crop_size(hr.width, scale)) != expected:
      mismatches.append(f"{hr.path} is {hr.width}x{hr.height} but {lr.path} is "
                        f"{lr.width}x{lr.height} (expected HR {expected[1]}x{expected[0]} at "
                        f"scale {scale})")
      continue
    pairs.append((lr, hr))
  unmatched += [f.path for f in lr_by_key.values()]
  for path in unmatched:
    logging.warning("Skipping %s: no image with the same name in the other folder", path)
  if mismatches:
    raise DataError(f"{len(mismatches)} LR/HR pair(s) with mismatched sizes:\n  " +
                    "\n  ".join(mismatches))
  if not pairs:
    raise DataError(f"no LR/HR pairs: none of {len(hr_files)} HR and {len(lr_files)} LR image "
                    "names match")
  return pairs


def pil_decode(path) -> np.ndarray:
  """Decodes an image file with Pillow to uint8 [H, W, 3] RGB (path: str or bytes)."""
  path = path.decode() if isinstance(path, bytes) else path
  with tf.io.gfile.GFile(path, "rb") as f, Image.open(f) as img:
    return np.asarray(img.convert("RGB"), np.uint8)


def read_image_array(path: str) -> np.ndarray:
  """Decodes an image file (any Pillow format, local or gs://) to uint8 [H, W, 3] RGB.

  Raises:
    DataError: The file cannot be read or decoded.
  """
  try:
    return pil_decode(path)
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e
