r"""esrgan-interpolate: network interpolation θ = (1 − α)·θ_a + α·θ_b (ESRGAN paper §3.4).

  esrgan-interpolate --a=runs/psnr/ --b=runs/gan/ --alpha=0.8 --output=interp_08.keras
  esrgan-interpolate --a=RRDB_PSNR_x4.pth --b=RRDB_ESRGAN_x4.pth --alpha=0.8 --output=x4.pth

`--a` (usually the PSNR-oriented model) and `--b` (the GAN model) take anything `--model` takes
that yields a generator, with equal architectures; the output format follows its suffix
(.keras, .pth, .safetensors).
"""

from absl import flags

from esrgan_tf import cli, weights
from esrgan_tf.core.errors import ModelError
from esrgan_tf.inference import resolver

_A = flags.DEFINE_string("a", None, "Model at alpha=0 (PSNR-oriented).")
_B = flags.DEFINE_string("b", None, "Model at alpha=1 (GAN).")
_ALPHA = flags.DEFINE_float("alpha", 0.8, "Interpolation weight of --b, in [0, 1].")
_OUTPUT = flags.DEFINE_string("output", None, "Output file: .keras, .pth or .safetensors.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")


def main(argv):
  if len(argv) > 1:
    raise cli.usage(f"unexpected arguments: {argv[1:]}")
  if not (_A.value and _B.value and _OUTPUT.value):
    raise cli.usage("--a, --b and --output are required")
  try:
    model_a = resolver.load_generator(_A.value)
    model_b = resolver.load_generator(_B.value)
    model = weights.interpolate(model_a, model_b, _ALPHA.value)
  except (ModelError, ValueError) as e:  # CheckpointError is a ModelError
    cli.fail(e)
  cli.save_generator(model, _OUTPUT.value, overwrite=_OVERWRITE.value)
  print(f"{_OUTPUT.value}: alpha={_ALPHA.value} {model.arch_config()}")


def run():
  cli.run(main, __name__)
