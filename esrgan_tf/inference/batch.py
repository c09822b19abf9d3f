"""Batch upscaling of image files: input expansion, output naming and the per-file pipeline.

What `esrgan-upscale` runs (the CLI only parses flags):

  * `expand_inputs`: a list of files, directories and globs → image files. Named files are always
    tried (whatever their extension: the reader identifies the format from its signature and
    refuses unsupported ones by name); directory entries and glob matches are filtered to the
    image extensions in `IMAGE_EXTENSIONS`. Directories are read non-recursively unless
    `recursive=True` (then the sub-directory structure is kept under the output directory, and
    directories matched by globs are read too).
  * `plan_outputs`: where each result goes: `--output` is a file when there is exactly one input,
    given as a file, and `--output` is not an existing directory; otherwise a directory (created)
    holding `<stem><suffix>.<ext>`. The default suffix is "_out", as Real-ESRGAN's
    inference_realesrgan.py (`--suffix out`, saved as `{name}_{suffix}.{ext}`); "{scale}" in the
    suffix is replaced by the model's scale.
  * `upscale_files`: per file read (`image_io.read_image`) → `upscale_image` (tiled model,
    `tiling.upscale_array`, then the optional `outscale` resize, `resize_output`) → atomic write
    (`image_io.write_image`). esrgan_tf.beam runs the same `upscale_image` and `output_name`.
    A failing file is reported and the batch goes on.
    An existing output is skipped with a message unless `overwrite` (Real-ESRGAN silently
    overwrites); skips are not failures, so re-running an interrupted batch finishes it.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Callable, Optional

import numpy as np
from PIL import Image

from esrgan_tf.images import image_io
from esrgan_tf.inference import tiling

# Extensions picked up from directories and globs (what `image_io` reads).
IMAGE_EXTENSIONS = image_io.IMAGE_EXTENSIONS
# --format value → file extension.
FORMAT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp",
                     "bmp": ".bmp", "tiff": ".tiff", "tif": ".tiff"}
DEFAULT_SUFFIX = "_out"
# Default --max_pixels of esrgan-upscale: the input size whose OUTPUT fits this much memory. The
# whole output lives in memory: float32 colour (12 B per output pixel, tiling.upscale_array), the
# clipped uint8/uint16 copy and the encoder's buffer (3–6 B each), float32 alpha and its resize
# (8 B) — about OUTPUT_BYTES_PER_PIXEL in total. 4 GiB: an 11 Mpx input at ×4 (a 4K photo fits).
OUTPUT_MEMORY_BUDGET = 4 << 30
OUTPUT_BYTES_PER_PIXEL = 24
_GLOB_CHARS = "*?["


@dataclasses.dataclass
class Source:
  """An input file and the directory its relative output path is taken from.

  Attributes:
    path: The image file.
    root: The directory given on the command line it was found in (None: named directly).
  """

  path: str
  root: Optional[str] = None


@dataclasses.dataclass
class Job:
  """One file to upscale (`dst` None: `problem` says why it cannot be)."""

  src: str
  dst: Optional[str]
  problem: Optional[str] = None


@dataclasses.dataclass
class Summary:
  """Outcome of a batch.

  Attributes:
    upscaled: Files written.
    failed: (input, message) for each file that could not be done.
    skipped: Outputs that existed already (not replaced without `overwrite`).
  """

  upscaled: list = dataclasses.field(default_factory=list)
  failed: list = dataclasses.field(default_factory=list)
  skipped: list = dataclasses.field(default_factory=list)

  def line(self) -> str:
    """The final line: "N upscaled, M failed, K skipped (output exists)"."""
    text = f"{len(self.upscaled)} upscaled, {len(self.failed)} failed"
    if self.skipped:
      text += f", {len(self.skipped)} skipped (output exists; --overwrite to replace)"
    return text


def _is_image_name(path: str, extensions: tuple = IMAGE_EXTENSIONS) -> bool:
  return os.path.splitext(path)[1].lower() in extensions


def _list_dir(directory: str, recursive: bool, extensions: tuple = IMAGE_EXTENSIONS
              ) -> list[str]:
  found = []
  for dirpath, dirnames, filenames in os.walk(directory):
    dirnames.sort()
    found.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                 if _is_image_name(f, extensions))
    if not recursive:
      break
  return found


def expand_inputs(specs: list[str], recursive: bool = False,
                  extensions: tuple = IMAGE_EXTENSIONS
                  ) -> tuple[list[Source], list[tuple[str, str]]]:
  """Expands files, directories and globs into image files.

  Args:
    specs: Paths, directories or glob patterns (`**` matches sub-directories when recursive).
    recursive: Descend into sub-directories of directories, and read directories that globs
      match (else they are ignored).
    extensions: File extensions picked from directories and globs (esrgan-upscale adds the
      video containers' when PyAV is installed).

  Returns:
    (sources in order without duplicates, [(spec, problem)] for specs that match nothing).
  """
  sources, problems, seen = [], [], set()

  def add(path, root):
    key = os.path.realpath(path)
    if key not in seen:
      seen.add(key)
      sources.append(Source(path, root))

  for spec in specs:
    if os.path.isdir(spec):
      files = _list_dir(spec, recursive, extensions)
      if not files:
        problems.append((spec, "directory has no image files "
                         f"({', '.join(extensions)})"))
      for path in files:
        add(path, spec)
    elif os.path.lexists(spec):
      add(spec, None)
    elif any(c in spec for c in _GLOB_CHARS):
      matches = sorted(glob.glob(spec, recursive=recursive))
      found = False  # Images matched, new or already listed (a repeated pattern is no error).
      for match in matches:
        if os.path.isdir(match):
          if recursive:  # Else `dir/*` would descend one level into sub-directories.
            for path in _list_dir(match, recursive, extensions):
              add(path, match)
              found = True
        elif _is_image_name(match, extensions):
          add(match, None)
          found = True
      if not found:
        problems.append((spec, "pattern matches no image files"))
    else:
      problems.append((spec, "no such file or directory"))
  return sources, problems


def output_is_file(sources: list[Source], output: str) -> bool:
  """True if `output` names the single output file rather than a directory."""
  return (len(sources) == 1 and sources[0].root is None and not os.path.isdir(output)
          and not output.endswith(os.sep) and _is_image_name(output))


def output_name(path: str, suffix: str, format: Optional[str] = None) -> str:
  """The output file name of input `path`: `<stem><suffix>.<ext>`.

  Args:
    path: The input (only its last component is used: a local path or a URL).
    suffix: Appended to the stem ("{scale}" already replaced).
    format: Output format ("png", "jpg", ...); default: the input's extension, or ".png" for a
      file named without an image extension (the reader decides what it is).
  """
  stem, ext = os.path.splitext(os.path.basename(path))
  if format:
    ext = FORMAT_EXTENSIONS[format.lower()]
  elif not _is_image_name(path):
    ext = ".png"
  return stem + suffix + ext


def plan_outputs(sources: list[Source], output: str, *, scale: int,
                 suffix: str = DEFAULT_SUFFIX, format: Optional[str] = None) -> list[Job]:
  """Chooses the output path of every input.

  Args:
    sources: From `expand_inputs`.
    output: A file (single input) or a directory.
    scale: The model's scale (for "{scale}" in the suffix).
    suffix: Appended to the input's stem.
    format: Output format ("png", "jpg", ...); default: the input's extension.

  Returns:
    One `Job` per source; a job whose output would collide with an earlier job's, or would be
    its own input, has a `problem` instead of a `dst`.
  """
  if output_is_file(sources, output):
    if os.path.realpath(output) == os.path.realpath(sources[0].path):
      return [Job(sources[0].path, None, "the output would replace the input")]
    return [Job(sources[0].path, output)]
  suffix = suffix.replace("{scale}", str(scale))
  jobs, taken = [], {}
  inputs = {os.path.realpath(s.path) for s in sources}
  for source in sources:
    relative = "" if source.root is None else os.path.relpath(
        os.path.dirname(source.path), source.root)
    dst = os.path.normpath(os.path.join(output, relative,
                                        output_name(source.path, suffix, format)))
    key = os.path.realpath(dst)
    if key in taken:
      jobs.append(Job(source.path, None, f"output {dst} would also be written for {taken[key]}; "
                      "rename one or use --suffix/--format"))
    elif key in inputs:
      jobs.append(Job(source.path, None, f"output {dst} would replace an input; set --suffix "
                      "or another --output"))
    else:
      taken[key] = source.path
      jobs.append(Job(source.path, dst))
  return jobs


@dataclasses.dataclass(frozen=True)
class Options:
  """Per-file processing options (the CLI flags)."""

  tiles: tiling.TileSpec = tiling.TileSpec()
  alpha: str = "bicubic"
  max_pixels: Optional[int] = image_io.BOMB_MAX_PIXELS
  multi_frame: str = "error"
  overwrite: bool = False
  format: Optional[str] = None
  # Final size (int(w·F), int(h·F)) of a w×h input, resized from the model's output with
  # Lanczos; None or the model's scale: no resize.
  outscale: Optional[float] = None


def resize_output(img: image_io.LoadedImage, size: tuple[int, int]) -> image_io.LoadedImage:
  """Resizes colour and alpha to `size` (width, height) with Lanczos, in float32.

  Real-ESRGAN's `--outscale` (RealESRGANer.enhance) resizes the model output with cv2's
  INTER_LANCZOS4 to (int(w·outscale), int(h·outscale)); Pillow's LANCZOS (a = 3) on each plane in
  mode "F" keeps 16-bit precision and resizes alpha the same way. Results are clipped to [0, 1].

  Raises:
    ValueError: An empty target size.
  """
  width, height = size
  if width < 1 or height < 1:
    raise ValueError(f"{img.path}: --outscale gives an empty {width}x{height} output")

  def plane(values):
    resized = Image.fromarray(np.ascontiguousarray(values, np.float32)).resize(
        (width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, np.float32), 0.0, 1.0)

  color = np.stack([plane(img.color[..., c]) for c in range(img.color.shape[-1])], axis=-1)
  alpha = None if img.alpha is None else plane(img.alpha)
  return dataclasses.replace(img, color=color, alpha=alpha)


def upscale_loaded(img: image_io.LoadedImage, color_fn: Callable[[np.ndarray], np.ndarray],
                   scale: int, alpha: str = "bicubic") -> image_io.LoadedImage:
  """Upscales colour with `color_fn` and the alpha channel separately.

  Args:
    img: The image from `image_io.read_image`.
    color_fn: float32 HxWx3 in [0, 1] -> float32 (scale·H)x(scale·W)x3 (may be unclipped).
    scale: The upscaling factor of `color_fn`.
    alpha: "bicubic" (Pillow bicubic resize of the alpha plane in float32) or "model" (alpha
      replicated to 3 channels, through `color_fn`, channel mean).

  Returns:
    A new `LoadedImage`, clipped to [0, 1], keeping the source mode, depth and profile.

  Raises:
    ValueError: bad `alpha` value or `color_fn` output shape.
  """
  if alpha not in image_io.ALPHA_MODES:
    raise ValueError(f"alpha must be one of {image_io.ALPHA_MODES}, got {alpha!r}")
  height, width = img.color.shape[:2]
  want = (height * scale, width * scale, 3)

  def run(x):
    y = np.asarray(color_fn(x), dtype=np.float32)
    if y.shape != want:
      raise ValueError(f"{img.path}: color_fn returned shape {y.shape}, expected {want} "
                       f"(scale {scale})")
    # In place when we may (color_fn returns a fresh array): at 8192² a clipped copy is 805 MB.
    return np.clip(y, 0.0, 1.0, out=y if y.flags.writeable else None)

  color = run(img.color)
  new_alpha = None
  if img.alpha is not None:
    if alpha == "model":
      new_alpha = run(np.repeat(img.alpha[..., None], 3, axis=-1)).mean(axis=-1)
    else:
      plane = Image.fromarray(img.alpha.astype(np.float32))  # mode "F"
      plane = plane.resize((width * scale, height * scale), Image.Resampling.BICUBIC)
      new_alpha = np.clip(np.asarray(plane, dtype=np.float32), 0.0, 1.0)
  return dataclasses.replace(img, color=color, alpha=new_alpha)


def naming_scale(model_scale: int, outscale: Optional[float] = None):
  """What "{scale}" in --suffix becomes: `outscale` ("3.5", "4") if given, else the model's."""
  return f"{outscale:g}" if outscale else model_scale


def output_bounded_max_pixels(scale: int, budget: int = OUTPUT_MEMORY_BUDGET) -> int:
  """Largest input W×H whose ×`scale` output fits `budget` bytes (and imaging's header limit).

  A 89 Mpx input (image_io.BOMB_MAX_PIXELS) at ×4 is 1.4 Gpx of output, ~34 GB: the default
  input limit therefore shrinks with the square of the scale.
  """
  by_output = budget // (OUTPUT_BYTES_PER_PIXEL * scale * scale)
  return max(1, min(image_io.BOMB_MAX_PIXELS, by_output))


def upscale_file(src: str, dst: str, engine, options: Options,
                 progress: Optional[Callable[[int, int], None]] = None) -> str:
  """Reads, upscales (tiled) and atomically writes one image.

  Args:
    src: Input image file.
    dst: Output file (its directory must exist).
    engine: An `esrgan_tf.inference.engine.Engine`.
    options: Processing options.
    progress: Passed to `tiling.upscale_array` (tiles done, total).

  Returns:
    The path written.

  Raises:
    ImageError: Unreadable input or unwritable output (the message names the file).
  """
  img = image_io.read_image(src, max_pixels=options.max_pixels or None,
                           multi_frame=options.multi_frame)
  result = upscale_image(img, engine, options, progress)
  return image_io.write_image(dst, result, overwrite=options.overwrite, format=options.format)


def upscale_image(img: image_io.LoadedImage, engine, options: Options,
                  progress: Optional[Callable[[int, int], None]] = None) -> image_io.LoadedImage:
  """What `upscale_file` does between reading and writing: tiled model, alpha, `outscale`.

  Args:
    img: From `image_io.read_image` or `image_io.decode_image_bytes`.
    engine: An `esrgan_tf.inference.engine.Engine`.
    options: Processing options (tile, overlap, batch, pre_pad, alpha, outscale).
    progress: Passed to `tiling.upscale_array` (tiles done, total).

  Returns:
    The image to write (`image_io.write_image`): colour quantized to uint8 already for 8-bit RGB
    inputs without alpha or resize, else float32.
  """

  def color_fn(x, out=None):
    return tiling.upscale_array(x, engine, options.tiles, progress=progress, out=out)

  resized = bool(options.outscale) and options.outscale != engine.scale
  if img.alpha is None and not img.grayscale and img.bit_depth == 8 and not resized:
    # The tiler quantizes finished rows straight into uint8 (the same rounding rule as
    # write_image's): no float32 copy of the whole output (805 MB at 8192²).
    height, width = img.color.shape[:2]
    out = np.empty((height * engine.scale, width * engine.scale, 3), np.uint8)
    result = dataclasses.replace(img, color=color_fn(img.color, out=out))
  else:
    result = upscale_loaded(img, color_fn, engine.scale, alpha=options.alpha)
  if resized:
    height, width = img.color.shape[:2]
    result = resize_output(result, (int(width * options.outscale),
                                    int(height * options.outscale)))
  return result


def upscale_files(jobs: list[Job], engine, options: Options, *,
                  report: Callable[[str], None] = print,
                  progress_factory: Optional[Callable[[str], Callable[[int, int], None]]] = None
                  ) -> Summary:
  """Runs `upscale_file` over jobs; failures are reported and the batch goes on.

  Args:
    jobs: From `plan_outputs`.
    engine: The model.
    options: Processing options.
    report: Receives one human-readable line per failure or skip.
    progress_factory: Called with the input path; returns the tile progress callback.

  Returns:
    The `Summary`.
  """
  summary = Summary()
  for job in jobs:
    if job.dst is None:
      summary.failed.append((job.src, f"{job.src}: {job.problem}"))
      report(f"FAILED {job.src}: {job.problem}")
      continue
    if not options.overwrite and os.path.lexists(job.dst):
      summary.skipped.append(job.src)
      report(f"skipped {job.src}: {job.dst} exists (--overwrite to replace it)")
      continue
    try:
      parent = os.path.dirname(os.path.abspath(job.dst))
      os.makedirs(parent, exist_ok=True)
      progress = progress_factory(job.src) if progress_factory else None
      upscale_file(job.src, job.dst, engine, options, progress)
    except image_io.ImageError as e:
      summary.failed.append((job.src, str(e)))
      report(f"FAILED {e}")
    except Exception as e:  # pylint: disable=broad-except  # The model or the OS: go on.
      message = f"{job.src}: {type(e).__name__}: {e}"
      summary.failed.append((job.src, message))
      report(f"FAILED {message}")
    else:
      summary.upscaled.append(job.dst)
  return summary


def tile_progress_bar(path: str) -> Callable[[int, int], None]:
  """A tile progress callback drawing a tqdm bar (only for images of more than one tile)."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  state = {}

  def progress(done, total):
    if total > 1 and "bar" not in state:
      state["bar"] = tqdm(total=total, desc=os.path.basename(path), unit="tile", leave=False,
                          disable=None)
    if "bar" in state:
      state["bar"].update(done - state["bar"].n)
      if done >= total:
        state.pop("bar").close()

  return progress
