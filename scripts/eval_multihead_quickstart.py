"""Per-head Y-PSNR gains over MATLAB bicubic of training workdirs, on the bundled held-out photos.

  python scripts/eval_multihead_quickstart.py \
      --workdirs=runs/mhq/joint,runs/mhq/x2,runs/mhq/x4,runs/mhq/x8 [--json=out.json --niqe]

Every output of every workdir (each head of a multi-head model, the one output of a single-scale
model) is measured at its own scale as the papers do (`evaluation.metrics.evaluate`): LR =
MATLAB bicubic ×1/s of each photo rounded to 8 bits, PSNR on BT.601 Y, crop_border = s, the
EMA generator. Photos: esrgan_tf/samples/val and esrgan_tf/samples/heldout (never trained on by
the quickstart recipes). Prints one markdown table per scale: photos × (workdir, head) gains.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Training workdirs to evaluate (EMA weights).")
_PHOTOS = flags.DEFINE_list("photos", None, "Photo folders (default: the bundled val and "
                            "heldout samples).")
_WHICH = flags.DEFINE_enum("which", "latest", ["latest", "best"], "Checkpoint to evaluate.")
_NIQE = flags.DEFINE_bool("niqe", False, "Also score NIQE (no reference; lower is better).")
_JSON = flags.DEFINE_string("json", "", "Also write the per-photo results here.")


def outputs(model) -> dict:
  """{output name: (engine, scale)}: a multi-head model's heads, or the model's one output."""
  from esrgan_tf.inference import engine  # pylint: disable=g-import-not-at-top
  if hasattr(model, "head_names"):
    return {head: (engine.keras_engine(model, head=head), model.scales[head])
            for head in model.head_names}
  return {f"x{model.scale}": (engine.keras_engine(model), int(model.scale))}


def photo_pairs(folders, scale: int) -> list:
  """(name, lr, hr) of every photo of `folders` at `scale` (`data.load_validation_set`)."""
  from esrgan_tf.data import datasets  # pylint: disable=g-import-not-at-top
  pairs = []
  for folder in folders:
    pairs += datasets.load_validation_set(
        {"val_dir": folder, "val_lr_dir": "", "val_max_images": 0}, scale)
  return pairs


def evaluate_workdir(workdir: str, folders, which: str, niqe: bool) -> dict:
  """{output: {"scale", "images": [{"name", "psnr", "bicubic_psnr", "gain"[, "niqe"]}],
  "mean_gain"}}."""
  from esrgan_tf.evaluation import metrics  # pylint: disable=g-import-not-at-top
  from esrgan_tf.models import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  model = workdir_lib.load_generator_from_workdir(workdir, which=which)
  result = {}
  for name, (engine, scale) in outputs(model).items():
    ev = metrics.evaluate(engine, photo_pairs(folders, scale), crop_border=scale,
                          y_channel=True, bicubic=True, niqe=niqe)
    rows = [dict(row, gain=row["psnr"] - row["bicubic_psnr"]) for row in ev["images"]]
    result[name] = {"scale": scale, "images": rows, "mean_gain": ev["psnr_gain"],
                    "mean": ev["mean"], "bicubic_mean": ev["bicubic_mean"]}
  return result


def markdown(results: dict) -> str:
  """One table per scale: photo rows, one column per (workdir, output) of that scale."""
  lines = []
  columns = [(wd, out, res) for wd, outs in results.items() for out, res in outs.items()]
  for scale in sorted({res["scale"] for _, _, res in columns}):
    cols = [(wd, out, res) for wd, out, res in columns if res["scale"] == scale]
    names = [row["name"] for row in cols[0][2]["images"]]
    lines += [f"\n×{scale} (Y-PSNR gain over bicubic, dB; crop {scale})\n",
              "| photo | bicubic | " + " | ".join(
                  f"{os.path.basename(wd.rstrip('/'))}:{out}" for wd, out, _ in cols) + " |",
              "|---|---:|" + "---:|" * len(cols)]
    for i, name in enumerate(names):
      lines.append(f"| {name} | {cols[0][2]['images'][i]['bicubic_psnr']:.2f} | " + " | ".join(
          f"{res['images'][i]['gain']:+.2f}" for _, _, res in cols) + " |")
    lines.append("| **mean** | | " + " | ".join(f"**{res['mean_gain']:+.3f}**"
                                                 for _, _, res in cols) + " |")
    if "niqe" in cols[0][2]["mean"]:
      lines.append("| NIQE (mean, lower = better) | "
                   f"{cols[0][2]['bicubic_mean'].get('niqe', float('nan')):.2f} | " + " | ".join(
                       f"{res['mean']['niqe']:.2f}" for _, _, res in cols) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  import esrgan_tf  # pylint: disable=g-import-not-at-top
  folders = _PHOTOS.value or [os.path.join(esrgan_tf.SAMPLES_DIR, d) for d in ("val", "heldout")]
  results = {wd: evaluate_workdir(wd, folders, _WHICH.value, _NIQE.value)
             for wd in _WORKDIRS.value}
  print(markdown(results))
  if _JSON.value:
    with open(_JSON.value, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  flags.mark_flag_as_required("workdirs")
  app.run(main)
