r"""esrgan-import: a published RRDBNet checkpoint → a native .keras generator (no PyTorch needed).

  esrgan-import --checkpoint=RealESRGAN_x4plus.pth --output=realesrgan_x4plus.keras
  esrgan-import --checkpoint=RRDB_ESRGAN_x4.pth --output=esrgan_x4.keras       # 2018 release
  esrgan-import --checkpoint=realesrgan-x4plus.param --output=x4plus.keras     # ncnn pair

Reads PyTorch .pth/.pt (zip or legacy, pickles never executed), .safetensors and ncnn .param/.bin
in the ESRGAN (old/new arch), BasicSR and Real-ESRGAN layouts; `--output` may also end with .pth or
.safetensors to convert into the BasicSR layout.
"""

from absl import flags

from esrgan_tf import cli, weights

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint file to import.")
_OUTPUT = flags.DEFINE_string("output", None, "Output file: .keras (or .pth/.safetensors).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")


def main(argv):
  if len(argv) > 1:
    raise cli.usage(f"unexpected arguments: {argv[1:]}")
  if not _CHECKPOINT.value or not _OUTPUT.value:
    raise cli.usage("--checkpoint and --output are required")
  from esrgan_tf.models import checkpoints  # pylint: disable=g-import-not-at-top  (TensorFlow)
  try:
    model = checkpoints.load_checkpoint(_CHECKPOINT.value)
  except weights.CheckpointError as e:
    cli.fail(e)
  cli.save_generator(model, _OUTPUT.value, overwrite=_OVERWRITE.value)
  print(f"{_OUTPUT.value}: {model.arch_config()}")


def run():
  cli.run(main, __name__)
