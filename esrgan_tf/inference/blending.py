"""Weight blending at load time: Real-ESRGAN's denoise strength (`-dn`) for any two generators.

Real-ESRGAN's inference_realesrgan.py, for realesr-general-x4v3 with denoise strength W, loads
`[general-x4v3, general-wdn-x4v3]` with `dni_weight = [W, 1 − W]` and runs the network whose every
parameter is W·A + (1 − W)·B (RealESRGANer.dni). That is ESRGAN's network interpolation with
α = 1 − W, so this module only resolves the two specs and calls `esrgan_tf.weights.interpolate`
(the one implementation, also behind esrgan-interpolate).
"""

from __future__ import annotations

from esrgan_tf.inference import engine as engine_lib
from esrgan_tf.inference import resolver


def blend_generators(spec_a: str, spec_b: str, weight: float):
  """Loads two generators and returns the blend W·A + (1 − W)·B.

  Args:
    spec_a: The main model (anything `load_generator` takes).
    spec_b: The model blended in.
    weight: W, the weight of `spec_a`, in [0, 1].

  Returns:
    A new built Keras generator of A's class.

  Raises:
    ModelError: A spec fails to load, different architectures, or W outside [0, 1] (the message
      names both specs).
  """
  from esrgan_tf import weights  # pylint: disable=g-import-not-at-top

  if not 0.0 <= weight <= 1.0:
    raise engine_lib.ModelError(f"blend weight must be in [0, 1], got {weight}")
  model_a = resolver.load_generator(spec_a)
  model_b = resolver.load_generator(spec_b)
  try:
    return weights.interpolate(model_a, model_b, 1.0 - weight)
  except ValueError as e:
    raise engine_lib.ModelError(f"cannot blend {spec_a} with {spec_b}: {e}") from None


def blend_name(spec_a: str, spec_b: str, weight: float) -> str:
  """A readable name of the blend, for messages and export metadata."""
  return f"{weight:g}·{spec_a} + {1 - weight:g}·{spec_b}"
