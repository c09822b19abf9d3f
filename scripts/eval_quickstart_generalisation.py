"""Per-photo PSNR gain over MATLAB bicubic of quickstart models on photos they never trained on.

  pip install scikit-image scikit-learn matplotlib   # dev tools only: their wheels ship photos
  python scripts/eval_quickstart_generalisation.py \
      --workdirs=runs/quickstart/psnr,runs/quickstart/gan [--pre_pad=0,8 --pre_pad_sides=all]

The held-out set (`HELD_OUT`) is natural photos bundled in those wheels (none is in
esrgan_tf/samples/train) plus crops of them that stress what a tiny model trained on four photos
gets wrong: strong single-hue colour (retina, flower), flat regions (sky, out-of-focus
background, the black retina surround), grey images. Each photo is cropped to at most 512² so
the evaluation stays fast on a CPU. Measured as in the papers: PSNR on BT.601 Y with
crop_border = scale (`metrics.evaluate`), LR = MATLAB bicubic ×1/4 rounded
to 8 bits. Besides the gain, the table gives the mean colour shift SR − HR per RGB channel in
8-bit levels (the symptom of a colour cast on red-dominant photos).
--pre_pad / --pre_pad_sides evaluate with reflect pre-padding (`esrgan_tf.inference.tiling`), as
esrgan-upscale runs by default.
"""

from __future__ import annotations

import os

from absl import app, flags

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Training workdirs to evaluate (EMA weights).")
_CACHE = flags.DEFINE_string("cache_dir", "/tmp/esrgan_tf_heldout",
                             "Where the held-out PNGs are written (built once).")
_PRE_PAD = flags.DEFINE_list("pre_pad", ["0"], "Reflect-pad the LR by this many pixels before "
                             "upscaling and crop it off after (Real-ESRGAN's pre_pad, "
                             "esrgan_tf.inference.tiling); a list evaluates each.")
_SIDES = flags.DEFINE_list("pre_pad_sides", ["all"], "Edges pre_pad pads: all, bottom_right "
                           "(Real-ESRGAN's); a list evaluates each.")
_WHICH = flags.DEFINE_enum("which", "latest", ["latest", "best"], "Checkpoint to evaluate.")

# (name, package, path inside the package's data folder, (top, left, height, width) or None,
# licence). None = the whole image, centre-cropped to at most 512².
HELD_OUT = (
    ("chelsea", "esrgan_tf", "samples/val/chelsea.png", None, "CC0"),
    ("motorcycle", "skimage", "data/motorcycle_left.png", None, "Middlebury 2014 stereo"),
    ("retina_disc", "skimage", "data/retina.jpg", (384, 0, 512, 512), "CC0"),
    ("retina_fovea", "skimage", "data/retina.jpg", (448, 448, 512, 512), "CC0"),
    ("ihc", "skimage", "data/ihc.png", None, "no known copyright restrictions"),
    ("camera_gray", "skimage", "data/camera.png", None, "CC0"),
    ("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", None,
     "public domain (US Navy)"),
    ("china", "sklearn", "datasets/images/china.jpg", None, "CC BY 2.0, danielbuechele"),
    ("china_sky", "sklearn", "datasets/images/china.jpg", (0, 400, 128, 240),
     "CC BY 2.0, danielbuechele"),
    ("flower", "sklearn", "datasets/images/flower.jpg", None, "CC BY 2.0, vultilion"),
    ("flower_bokeh", "sklearn", "datasets/images/flower.jpg", (0, 0, 192, 192),
     "CC BY 2.0, vultilion"),
    # q_*: the photos scripts/quickstart.py reports on (esrgan_tf/samples/heldout: 256² crops
    # of the above and a flat grey sky), so that one run gives every figure of the config.
    ("q_camera_gray", "esrgan_tf", "samples/heldout/camera_gray.png", None, "CC0"),
    ("q_camera_sky", "esrgan_tf", "samples/heldout/camera_sky.png", None, "CC0"),
    ("q_grace_hopper", "esrgan_tf", "samples/heldout/grace_hopper.png", None,
     "public domain (US Navy)"),
    ("q_retina_disc", "esrgan_tf", "samples/heldout/retina_disc.png", None, "CC0"),
    ("q_retina_fovea", "esrgan_tf", "samples/heldout/retina_fovea.png", None, "CC0"),
)
_MAX = 512


def _package_dir(package: str) -> str:
  import importlib  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(package)
  if package == "matplotlib":
    return os.path.dirname(module.get_data_path())
  return os.path.dirname(module.__file__)


def build_held_out(cache_dir: str) -> list[str]:
  """Writes the `HELD_OUT` photos as RGB PNGs into `cache_dir` (once); returns the paths.

  Raises:
    ImportError: A package shipping one of the photos is not installed (named in the message).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  os.makedirs(cache_dir, exist_ok=True)
  paths = []
  for name, package, rel, box, _ in HELD_OUT:
    out = os.path.join(cache_dir, f"{name}.png")
    paths.append(out)
    if os.path.exists(out):
      continue
    try:
      source = os.path.join(_package_dir(package), rel)
    except ImportError as e:
      raise ImportError(f"held-out photo {name!r} ships with {package}: pip install it "
                        f"(dev tool only) ({e})") from e
    with Image.open(source) as im:
      image = np.asarray(im.convert("RGB"))
    if box is None:
      h, w = min(image.shape[0], _MAX), min(image.shape[1], _MAX)
      top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    else:
      top, left, h, w = box
    Image.fromarray(image[top:top + h, left:left + w]).save(out + ".tmp.png")
    os.replace(out + ".tmp.png", out)
  return paths


def evaluate_held_out(engine, pairs, scale: int, pre_pad: int = 0,
                      pre_pad_sides: str = "all") -> list[dict]:
  """Rows {"name", "psnr", "bicubic_psnr", "gain", "shift" (SR − HR mean RGB levels)}.

  `pre_pad`, `pre_pad_sides`: as `esrgan_tf.inference.tiling.TileSpec`'s (whole image).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  from esrgan_tf.evaluation import metrics  # pylint: disable=g-import-not-at-top

  shifts = {}

  def on_image(name, images):
    sr = metrics.to_uint8_levels(images["sr"]).astype(np.float64)
    hr = metrics.to_uint8_levels(images["hr"]).astype(np.float64)
    shifts[name] = (sr.mean(axis=(0, 1)) - hr.mean(axis=(0, 1)))

  from esrgan_tf.inference import tiling  # pylint: disable=g-import-not-at-top
  tiles = tiling.TileSpec(tile=0, pre_pad=pre_pad, pre_pad_sides=pre_pad_sides)
  result = metrics.evaluate(engine, pairs, crop_border=scale, y_channel=True, on_image=on_image,
                            tiles=tiles)
  return [dict(name=r["name"], psnr=r["psnr"], bicubic_psnr=r["bicubic_psnr"],
               gain=r["psnr"] - r["bicubic_psnr"], shift=shifts[r["name"]])
          for r in result["images"]]


def format_rows(rows: list[dict]) -> str:
  """A plain-text table with the mean and worst gain."""
  lines = [f"{'photo':<16}{'bicubic':>9}{'model':>9}{'gain':>8}   shift R/G/B (levels)"]
  for r in rows:
    dr, dg, db = r["shift"]
    lines.append(f"{r['name']:<16}{r['bicubic_psnr']:9.2f}{r['psnr']:9.2f}{r['gain']:+8.2f}"
                 f"   {dr:+5.1f} {dg:+5.1f} {db:+5.1f}")
  gains = [r["gain"] for r in rows]
  worst = min(rows, key=lambda r: r["gain"])
  lines.append(f"mean gain {sum(gains) / len(gains):+.2f} dB, worst {worst['gain']:+.2f} dB "
               f"({worst['name']})")
  return "\n".join(lines)


def main(argv):
  del argv
  from esrgan_tf.data import datasets  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference import engine  # pylint: disable=g-import-not-at-top
  from esrgan_tf.models import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  build_held_out(_CACHE.value)
  for spec in _WORKDIRS.value or ():
    model = workdir_lib.load_generator_from_workdir(spec, which=_WHICH.value)
    scale = int(model.scale)
    pairs = datasets.load_validation_set(
        {"val_dir": _CACHE.value, "val_lr_dir": "", "val_max_images": 0}, scale)
    up = engine.keras_engine(model, name=spec)
    for pre_pad in (int(v) for v in _PRE_PAD.value):
      for sides in _SIDES.value if pre_pad else ["all"]:
        print(f"== {spec} (Y-PSNR dB, crop {scale}, pre_pad {pre_pad} {sides})")
        print(format_rows(evaluate_held_out(up, pairs, scale, pre_pad, sides)), flush=True)


if __name__ == "__main__":
  app.run(main)
