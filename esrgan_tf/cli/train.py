"""esrgan-train: train ESRGAN from a config file.

  esrgan-train --config=configs/psnr_x4.py --workdir=runs/psnr_x4 \
      [--config.data.train_dir=DIR --config.train.steps=1000 ...]
  esrgan-train --config=configs/psnr_x4.py:smoke --workdir=/tmp/smoke    # tiny sanity run

The config is locked: a misspelt `--config.key` is an error. Re-running the same command resumes
from the workdir's latest checkpoint. All logic lives in `esrgan_tf.train.loop`.
"""

from absl import flags, logging
from ml_collections import config_flags

from esrgan_tf import cli

config_flags.DEFINE_config_file("config", None, "Training config file (configs/*.py[:variant]).",
                                lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, config.json and "
                               "TensorBoard logs (resumed if it holds a checkpoint).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise cli.usage(f"unexpected arguments: {' '.join(argv[1:])}")
  from esrgan_tf.train import loop as train_loop  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
  config = flags.FLAGS.config
  try:
    result = train_loop.train_and_evaluate(config, _WORKDIR.value)
  except train_loop.NonFiniteLossError as e:
    logging.error("%s", e)
    cli.fail(e, _WORKDIR.value)
  except (ValueError, FileNotFoundError) as e:
    cli.fail(e)
  status = "stopped by SIGTERM" if result["stopped"] else "done"
  line = f"esrgan-train: {result['run_name']} {status} at step {result['final_step']}"
  if result["eval"]:
    last = result["eval"][-1]
    line += f"; eval PSNR {last['psnr']:.3f} dB, SSIM {last['ssim']:.4f}"
    if result.get("bicubic_psnr") is not None:
      line += f" (bicubic {result['bicubic_psnr']:.3f} dB)"
    heads = {k[:-len("/psnr")]: v for k, v in last.items() if k.endswith("/psnr")}
    if heads:  # A multi-head run: the figures above are its default head's.
      line += "; heads " + ", ".join(f"{h} {v:.3f} dB" for h, v in heads.items())
  print(line)


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
