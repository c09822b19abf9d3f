"""The `esrgan-eval --report=DIR` report: pictures where people look.

`ReportWriter` collects, per evaluated image, a crop grid LR-bicubic | SR | HR (the same window
of each, enlarged by the same integer zoom, where SR and bicubic differ most), then writes
`index.html` (the metrics table and the grids) and `table.png` (the table as an image, drawn
with Pillow's default font). The report directory appears only when complete (written to a
temporary sibling, then renamed).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile

import numpy as np

# Side of the compared window in HR pixels, and the width each panel is enlarged towards.
CROP = 96
PANEL = 288
_GAP = 6
_LABEL = 18
TABLE_FONT_SIZE = 14


def _font(size: int):
  """Pillow's default font at `size` (its scalable version needs FreeType; else the bitmap one)."""
  from PIL import ImageFont  # pylint: disable=g-import-not-at-top
  try:
    return ImageFont.load_default(size=size)
  except (TypeError, ValueError, ImportError, OSError):
    return ImageFont.load_default()


# --- crops --------------------------------------------------------------------------------------

def most_different_window(a: np.ndarray, b: np.ndarray, size: int) -> tuple[int, int, int]:
  """The size×size window where two same-shape images differ most (sum of |a - b|).

  Every position is scored in O(H·W) with a summed-area table of the per-pixel difference.

  Args:
    a, b: [H, W, C] (or [H, W]) arrays.
    size: Window side; clipped to the image.

  Returns:
    (top, left, side).
  """
  if a.shape != b.shape:
    raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
  diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
  if diff.ndim == 3:
    diff = diff.sum(axis=2)
  side = max(1, min(size, diff.shape[0], diff.shape[1]))
  table = np.zeros((diff.shape[0] + 1, diff.shape[1] + 1))
  table[1:, 1:] = diff.cumsum(0).cumsum(1)
  sums = (table[side:, side:] - table[:-side, side:] - table[side:, :-side]
          + table[:-side, :-side])
  top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
  return int(top), int(left), side


def _to_uint8(image: np.ndarray) -> np.ndarray:
  """[0, 1] float (or uint8) → uint8 RGB, rounded as saved PNGs are."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = np.floor(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[2] == 1:
    image = np.repeat(image, 3, axis=2)
  return image[..., :3]


def crop_grid(panels: list[tuple[str, np.ndarray]], box: tuple[int, int, int],
              zoom: int) -> np.ndarray:
  """Labelled panels side by side: the same window of each image, nearest-enlarged by `zoom`.

  Args:
    panels: (label, [H, W, C] image in [0, 1] or uint8) pairs, all the same size.
    box: (top, left, side) of the window.
    zoom: Integer enlargement (nearest neighbour, so pixels stay visible as they are).

  Returns:
    uint8 [h, w, 3].
  """
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top

  top, left, side = box
  tile = side * zoom
  width = len(panels) * tile + (len(panels) - 1) * _GAP
  canvas = Image.new("RGB", (width, tile + _LABEL), "white")
  draw = ImageDraw.Draw(canvas)
  font = _font(12)
  for index, (label, image) in enumerate(panels):
    crop = _to_uint8(image)[top:top + side, left:left + side]
    crop = np.repeat(np.repeat(crop, zoom, axis=0), zoom, axis=1)
    x = index * (tile + _GAP)
    canvas.paste(Image.fromarray(crop), (x, _LABEL))
    draw.text((x + 2, 2), label, fill="black", font=font)
  return np.asarray(canvas)


# --- the metrics table --------------------------------------------------------------------------

TABLE_HEADER = ("image", "PSNR", "SSIM", "bicubic PSNR", "bicubic SSIM", "PSNR gain")
NIQE_HEADER = ("NIQE", "bicubic NIQE")
NO_REFERENCE_HEADER = ("image", "NIQE", "bicubic NIQE", "NIQE gain")


def _has_niqe(result: dict) -> bool:
  return "niqe" in result.get("mean", {})


def table_header(result: dict) -> tuple[str, ...]:
  """The columns of `table_rows(result)`: PSNR/SSIM (+ NIQE), or NIQE only (no reference)."""
  if result.get("no_reference"):
    return NO_REFERENCE_HEADER
  return TABLE_HEADER + (NIQE_HEADER if _has_niqe(result) else ())


def table_rows(result: dict) -> list[tuple[str, ...]]:
  """`metrics.evaluate` (or `evaluate_no_reference`) results as text cells: one row
  per image, then the mean. NIQE gain = bicubic's minus the model's (lower NIQE is better)."""
  def cells(name, row):
    def get(key, fmt):
      return format(row[key], fmt) if row.get(key) is not None else "-"
    niqe_gain = (format(row["bicubic_niqe"] - row["niqe"], "+.4f")
                 if row.get("niqe") is not None and row.get("bicubic_niqe") is not None else "-")
    if result.get("no_reference"):
      return (str(name), get("niqe", ".4f"), get("bicubic_niqe", ".4f"), niqe_gain)
    gain = (format(row["psnr"] - row["bicubic_psnr"], "+.3f")
            if "psnr" in row and "bicubic_psnr" in row else "-")
    out = (str(name), get("psnr", ".3f"), get("ssim", ".4f"), get("bicubic_psnr", ".3f"),
           get("bicubic_ssim", ".4f"), gain)
    return out + ((get("niqe", ".4f"), get("bicubic_niqe", ".4f")) if _has_niqe(result) else ())

  rows = [cells(row["name"], row) for row in result["images"]]
  mean = dict(result.get("mean", {}))
  mean.update({f"bicubic_{k}": v for k, v in result.get("bicubic_mean", {}).items()})
  rows.append(cells("mean", mean))
  return rows


def table_png(result: dict) -> np.ndarray:
  """The metrics table drawn with Pillow's default font, uint8 [h, w, 3]."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top

  font = _font(TABLE_FONT_SIZE)
  header = table_header(result)
  rows = [header] + table_rows(result)
  space = ("no reference (NIQE: lower is more natural)" if result.get("no_reference")
           else "Y" if result.get("y_channel") else "RGB")
  note = (f"{result.get('num_images', len(result['images']))} images, {space}, "
          f"crop_border={result.get('crop_border', 0)}")
  pad, line = 14, TABLE_FONT_SIZE + 8
  widths = [max(font.getlength(row[col]) for row in rows) for col in range(len(header))]
  width = int(sum(widths) + pad * (len(widths) + 1))
  width = max(width, int(font.getlength(note)) + 2 * pad)
  height = line * (len(rows) + 1) + pad * 2
  image = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(image)
  y = pad
  for index, row in enumerate(rows):
    if index == len(rows) - 1:
      draw.line((pad, y - 3, width - pad, y - 3), fill=(150, 150, 150))  # Above the mean row.
    x = pad
    for col, text in enumerate(row):
      # The name column is left-aligned, numbers right-aligned.
      offset = 0 if col == 0 else widths[col] - font.getlength(text)
      draw.text((x + offset, y), text, fill="black", font=font)
      x += widths[col] + pad
    if index == 0:
      draw.line((pad, y + line - 4, width - pad, y + line - 4), fill="black")
    y += line
  draw.text((pad, y), note, fill=(90, 90, 90), font=font)
  return np.asarray(image)


def _safe_name(name: str, used: set) -> str:
  stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"
  candidate, n = stem, 1
  while candidate in used:
    n += 1
    candidate = f"{stem}_{n}"
  used.add(candidate)
  return candidate


def _save_png(array: np.ndarray, path: str) -> None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(array).save(path, optimize=True)


class ReportWriter:
  """Writes an evaluation report directory; usable as `metrics.evaluate(on_image=...)`.

  Args:
    directory: The report directory to create. It must not exist (or be empty) unless
      `overwrite`; it appears only when `finish` succeeds.
    overwrite: Replace an existing directory.
    crop: Window side in HR pixels.
  """

  def __init__(self, directory: str, *, overwrite: bool = False, crop: int = CROP):
    self.directory = os.path.abspath(directory)
    exists = os.path.exists(self.directory)
    if exists and not overwrite and (not os.path.isdir(self.directory)
                                     or os.listdir(self.directory)):
      raise FileExistsError(f"{directory}: exists and is not an empty directory (pass "
                              "--overwrite to replace it)")
    parent = os.path.dirname(self.directory)
    os.makedirs(parent, exist_ok=True)
    self._tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(self.directory)}.tmp-", dir=parent)
    os.mkdir(os.path.join(self._tmp, "crops"))
    self.crop = crop
    self.figures: list[dict] = []
    self._used: set = set()

  def __call__(self, name: str, images: dict) -> None:
    """Adds one image: `images` has "sr", "bicubic" and, with a reference, "hr" ([H, W, C] in
    [0, 1])."""
    sr, bicubic = images["sr"], images["bicubic"]
    box = most_different_window(_to_uint8(sr), _to_uint8(bicubic), self.crop)
    zoom = max(1, PANEL // box[2])
    panels = [("LR-bicubic", bicubic), ("SR (model)", sr)]
    if images.get("hr") is not None:
      panels.append(("HR", images["hr"]))
    grid = crop_grid(panels, box, zoom)
    file = f"crops/{_safe_name(str(name), self._used)}.png"
    _save_png(grid, os.path.join(self._tmp, file))
    self.figures.append({"name": str(name), "file": file, "box": box, "zoom": zoom,
                         "size": tuple(sr.shape[:2]), "panels": [p for p, _ in panels]})

  def abort(self) -> None:
    """Removes the partial report."""
    shutil.rmtree(self._tmp, ignore_errors=True)

  def finish(self, result: dict, title: str = "esrgan-eval report") -> str:
    """Writes index.html and table.png, then moves the report into place; returns its path."""
    try:
      _save_png(table_png(result), os.path.join(self._tmp, "table.png"))
      with open(os.path.join(self._tmp, "index.html"), "w", encoding="utf-8") as f:
        f.write(report_html(result, self.figures, title))
      if os.path.isdir(self.directory):
        shutil.rmtree(self.directory)
      elif os.path.exists(self.directory):
        os.remove(self.directory)
      os.replace(self._tmp, self.directory)
    except BaseException:
      self.abort()
      raise
    return self.directory


def report_html(result: dict, figures: list[dict], title: str) -> str:
  """The report page: facts, metrics table (per image, mean; ours vs bicubic) and crop grids."""
  esc = html.escape
  head = "".join(f"<th>{esc(h)}</th>" for h in table_header(result))
  rows = table_rows(result)
  mean_row = ' class="mean"'
  body = "".join(
      f"<tr{mean_row if i == len(rows) - 1 else ''}>"
      + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>\n" for i, row in enumerate(rows))
  facts = [f"{k}: {esc(str(result[k]))}" for k in ("model", "hr", "lr", "scale", "crop_border",
                                                    "y_channel", "num_images")
           if result.get(k) is not None]
  figs = []
  for fig in figures:
    top, left, side = fig["box"]
    figs.append(
        f'<figure><figcaption>{esc(fig["name"])} ({fig["size"][1]}×{fig["size"][0]}): the '
        f"{side}×{side} window at x={left}, y={top} where SR and bicubic differ most, shown "
        f'×{fig["zoom"]} (nearest)</figcaption><img src="{esc(fig["file"])}" '
        f'alt="{esc(fig["name"])}: {esc(", ".join(fig.get("panels", ("LR-bicubic", "SR", "HR"))))}"'
        '></figure>')
  metrics_note = ('NIQE (no reference; BasicSR\'s <code>calculate_niqe</code>): lower is more '
                  'natural; "NIQE gain" is bicubic\'s minus the model\'s.')
  if not result.get("no_reference"):
    metrics_note = ("PSNR in dB, SSIM in [0, 1], measured as "
                    "<code>esrgan_tf.evaluation.metrics</code> "
                    "does (BasicSR's conventions)." + (" " + metrics_note if _has_niqe(result)
                                                       else ""))
  crops_title = "LR-bicubic | SR" + ("" if result.get("no_reference") else " | HR")
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 20px; color: #1d2329; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 3px 10px; border-bottom: 1px solid #ddd; }}
td:not(:first-child), th:not(:first-child) {{ text-align: right;
  font-variant-numeric: tabular-nums; }}
tr.mean td {{ font-weight: bold; border-top: 2px solid #888; }}
figure {{ margin: 18px 0; }} img {{ image-rendering: pixelated; max-width: 100%; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p>{" · ".join(facts)}</p>
<p>{metrics_note} "bicubic" is the MATLAB-bicubic upscale of the same LR image.
<a href="table.png">The table as a PNG</a>.</p>
<table><thead><tr>{head}</tr></thead><tbody>
{body}</tbody></table>
<h2>Crops: {crops_title}</h2>
{"".join(figs)}
</body></html>
"""
