"""MultiHeadRRDBNet: one RRDBNet trunk feeding N output heads.

The trunk is RRDBNet's (conv_first, the RRDB body, conv_body and the long skip); each head is
RRDBNet's output part (one conv per ×2 stage, conv_hr, conv_last), with its own scale and
upsampler. Heads are declared by name, e.g.

  MultiHeadRRDBNet(heads=[{"name": "x2", "scale": 2}, {"name": "x4", "scale": 4}], ...)
  MultiHeadRRDBNet(heads=[{"name": "psnr", "scale": 4}, {"name": "gan", "scale": 4}], ...)

Calling the model returns {head name: image}; `heads=` (or `head_fn(name)`) computes the trunk
once and only the heads asked for. A one-head model holds exactly RRDBNet's variables (same
shapes, same order, same conv names inside the head), so published weights map onto the trunk +
one head and back (`load_rrdbnet`, `to_rrdbnet`).

Variable paths are `<model>/conv_first/...`, `<model>/body.N/...`, `<model>/conv_body/...` for the
trunk and `<model>/<head>/conv_upI|conv_hr|conv_last/...` per head, so a training checkpoint
(`workdir.model_variables`) keys head weights as "<head>.conv_up1.kernel".
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Mapping, Optional, Sequence

import keras
import tensorflow as tf

from esrgan_tf.models import rrdbnet
from esrgan_tf.models.base import GeneratorMixin

# Head names become Keras layer names, checkpoint keys and SavedModel signature names
# (upscale_<head>, upscale_<head>_float, ...): lower-case identifiers, short.
_HEAD_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# Names taken by the trunk's layers (variable paths) or that would make one head's signature
# collide with another's variants (a head "x4_float" vs head "x4"'s float signature).
RESERVED_HEAD_NAMES = ("body", "conv_first", "conv_body", "float", "bytes", "static")
SIGNATURE_SUFFIXES = ("_float", "_bytes", "_static")
# Tolerance on the sum of blend weights (they are typed by people: 0.3 + 0.7 in binary floats).
BLEND_SUM_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """One output head: its name, scale and upsampler."""

  name: str
  scale: int
  upsampler: str

  def to_config(self) -> dict:
    return {"name": self.name, "scale": self.scale, "upsampler": self.upsampler}


def parse_heads(heads, upsampler: str, input_unshuffle: int = 1) -> tuple[HeadSpec, ...]:
  """Validates head declarations.

  Args:
    heads: Mappings with "name", "scale" and optionally "upsampler" (dicts, ConfigDicts) or
      `HeadSpec`s.
    upsampler: The upsampler of heads that do not name one.
    input_unshuffle: The trunk's input folding (each head then has log2(scale·f) stages).

  Returns:
    The heads as `HeadSpec`s, in order.

  Raises:
    ValueError: No heads, a malformed, reserved or repeated name, unknown keys, or a bad scale or
      upsampler (the message names the head).
  """
  if isinstance(heads, (str, bytes)) or not isinstance(heads, Sequence) or not heads:
    raise ValueError(f"heads must be a non-empty list of {{'name': ..., 'scale': ...}}, got "
                     f"{heads!r}")
  specs, seen = [], set()
  for i, head in enumerate(heads):
    if isinstance(head, HeadSpec):
      head = head.to_config()
    if not isinstance(head, Mapping) and not hasattr(head, "items"):
      raise ValueError(f"heads[{i}] must be a mapping with name and scale, got {head!r}")
    head = dict(head.items())
    unknown = sorted(set(head) - {"name", "scale", "upsampler"})
    if unknown or "name" not in head or "scale" not in head:
      raise ValueError(f"heads[{i}] = {head!r}: needs name and scale (and optionally upsampler)"
                       + (f"; unknown keys {unknown}" if unknown else ""))
    name = head["name"]
    if not isinstance(name, str) or not _HEAD_NAME.fullmatch(name):
      raise ValueError(f"heads[{i}]: name {name!r} must be a lower-case identifier "
                       f"([a-z][a-z0-9_]*, at most 32 characters)")
    if name in RESERVED_HEAD_NAMES or name.endswith(SIGNATURE_SUFFIXES):
      raise ValueError(f"heads[{i}]: name {name!r} is reserved (not one of "
                       f"{RESERVED_HEAD_NAMES}, nor ending in {SIGNATURE_SUFFIXES})")
    if name in seen:
      raise ValueError(f"heads[{i}]: head name {name!r} is used twice")
    seen.add(name)
    spec = HeadSpec(name, head["scale"], head.get("upsampler", upsampler))
    try:
      rrdbnet.check_output(spec.scale, spec.upsampler, input_unshuffle)
    except ValueError as e:
      raise ValueError(f"head {name!r}: {e}") from None
    specs.append(spec)
  return tuple(specs)


@keras.saving.register_keras_serializable(package="esrgan_tf")
class RRDBHead(keras.layers.Layer):
  """One head: trunk features → image (×2 stages, conv_hr, conv_last; RRDBNet's output part).

  Args:
    num_features: The trunk width (nf).
    out_channels: Output image channels.
    scale: Output scale relative to the model's input.
    upsampler: "depth_to_space" or "nearest" (see `RRDBNet`).
    input_unshuffle: The trunk's input folding; the head upsamples by scale·input_unshuffle.
    **kwargs: Passed to `keras.layers.Layer` (name = the head name, dtype policy).
  """

  def __init__(self, num_features: int, out_channels: int, scale: int, upsampler: str,
               input_unshuffle: int = 1, **kwargs):
    super().__init__(**kwargs)
    rrdbnet.check_output(scale, upsampler, input_unshuffle)
    self.num_features = num_features
    self.out_channels = out_channels
    self.scale = scale
    self.upsampler = upsampler
    self.input_unshuffle = input_unshuffle
    self.conv_ups, self.conv_hr, self.conv_last = rrdbnet.make_upsampler(
        num_features, out_channels, rrdbnet.upsample_stages(scale, input_unshuffle), upsampler,
        self.dtype_policy)
    rrdbnet._track_items(self, "_conv_up_", self.conv_ups)  # pylint: disable=protected-access

  def build(self, input_shape=None):
    rrdbnet.build_upsampler(self.conv_ups, self.conv_hr, self.conv_last, self.num_features)
    self.built = True

  def call(self, features):
    return rrdbnet.upsample_features(features, self.conv_ups, self.conv_hr, self.conv_last,
                                     self.upsampler)

  def named_convs(self) -> dict[str, keras.layers.Conv2D]:
    """{"conv_up1": ..., "conv_hr": ..., "conv_last": ...}: RRDBNet's names for these convs."""
    convs = {f"conv_up{i}": conv for i, conv in enumerate(self.conv_ups, start=1)}
    convs.update(conv_hr=self.conv_hr, conv_last=self.conv_last)
    return convs

  def get_config(self):
    return {**super().get_config(), "num_features": self.num_features,
            "out_channels": self.out_channels, "scale": self.scale, "upsampler": self.upsampler,
            "input_unshuffle": self.input_unshuffle}


@dataclasses.dataclass(frozen=True)
class HeadBlend:
  """Output blending of heads of one scale: Σ weight · head image, from one trunk pass.

  Attributes:
    weights: ((head name, weight), ...), weights in [0, 1] summing to 1.
  """

  weights: tuple[tuple[str, float], ...]

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(name for name, _ in self.weights)

  def describe(self) -> str:
    """"psnr:0.3,gan:0.7" (the flag's syntax)."""
    return ",".join(f"{name}:{weight:g}" for name, weight in self.weights)


def parse_head_blend(text: str) -> HeadBlend:
  """Parses "psnr:0.3,gan:0.7" (the --blend_heads syntax).

  Raises:
    ValueError: Malformed text, a repeated head, fewer than two heads, weights outside [0, 1] or
      not summing to 1.
  """
  pairs = []
  for part in str(text).split(","):
    name, sep, weight = part.strip().partition(":")
    try:
      value = float(weight)
    except ValueError:
      value = None
    if not sep or not name.strip() or value is None:
      raise ValueError(f"blend heads {text!r}: each entry must be HEAD:WEIGHT, e.g. "
                       "psnr:0.3,gan:0.7")
    pairs.append((name.strip(), value))
  blend = HeadBlend(tuple(pairs))
  _check_blend_weights(blend)
  return blend


def _check_blend_weights(blend: HeadBlend) -> None:
  names = blend.names
  if len(names) < 2:
    raise ValueError(f"blend heads {blend.describe()!r}: name at least two heads")
  if len(set(names)) != len(names):
    raise ValueError(f"blend heads {blend.describe()!r}: a head is named twice")
  weights = [w for _, w in blend.weights]
  if any(not 0.0 <= w <= 1.0 for w in weights):
    raise ValueError(f"blend heads {blend.describe()!r}: weights must be in [0, 1]")
  if abs(math.fsum(weights) - 1.0) > BLEND_SUM_TOLERANCE:
    raise ValueError(f"blend heads {blend.describe()!r}: weights must sum to 1, they sum to "
                     f"{math.fsum(weights):g}")


@keras.saving.register_keras_serializable(package="esrgan_tf")
class MultiHeadRRDBNet(GeneratorMixin, keras.Model):
  """An RRDBNet trunk with several output heads.

  Takes float32 NHWC images in [0, 1] of any height and width; returns {head name: upscaled
  image} (float32, unclipped), each head at its own scale.

  Args:
    in_channels: Input image channels.
    out_channels: Output image channels (every head).
    num_features: Trunk width (nf).
    num_blocks: Number of RRDBs (nb).
    growth_channels: Dense-block growth (gc).
    heads: [{"name": "x2", "scale": 2}, {"name": "x4", "scale": 4, "upsampler": "nearest"},
      ...]; names are lower-case identifiers (signature and checkpoint names), scales 2, 4, 8
      (with `input_unshuffle` f: scale·f in 2, 4, 8). Two heads may share a scale.
    default_head: The head single-output callers get (`esrgan-upscale` without --head, the
      SavedModel's serving_default); default the first.
    upsampler: The upsampler of heads that do not name their own ("depth_to_space"/"nearest").
    input_unshuffle: 1, 2 or 4: the trunk runs on the space_to_depth-folded input (as RRDBNet).
    **kwargs: Passed to `keras.Model` (name, dtype policy).

  Raises:
    ValueError: Bad sizes or heads, or a default_head that is not a head.
  """

  ARCH = "multihead_rrdbnet"

  def __init__(self, in_channels: int = 3, out_channels: int = 3, num_features: int = 64,
               num_blocks: int = 23, growth_channels: int = 32, heads=None,
               default_head: Optional[str] = None, upsampler: str = "depth_to_space",
               input_unshuffle: int = 1, **kwargs):
    if input_unshuffle not in rrdbnet.INPUT_UNSHUFFLES:
      raise ValueError(f"input_unshuffle must be one of {rrdbnet.INPUT_UNSHUFFLES}, got "
                       f"{input_unshuffle!r}")
    if upsampler not in rrdbnet.UPSAMPLERS:
      raise ValueError(f"upsampler must be one of {rrdbnet.UPSAMPLERS}, got {upsampler!r}")
    specs = parse_heads(heads, upsampler, input_unshuffle)
    rrdbnet.check_sizes(in_channels=in_channels, out_channels=out_channels,
                        num_features=num_features, num_blocks=num_blocks,
                        growth_channels=growth_channels)
    names = [spec.name for spec in specs]
    default_head = names[0] if default_head is None else default_head
    if default_head not in names:
      raise ValueError(f"default_head {default_head!r} is not one of the heads {names}")
    kwargs.setdefault("name", "multihead_rrdbnet")
    super().__init__(**kwargs)
    self.in_channels = in_channels
    self.out_channels = out_channels
    self.num_features = num_features
    self.num_blocks = num_blocks
    self.growth_channels = growth_channels
    self.upsampler = upsampler
    self.input_unshuffle = input_unshuffle
    self.head_specs = specs
    self.default_head = default_head

    dtype = self.dtype_policy
    self.conv_first, self.body, self.conv_body = rrdbnet.make_trunk(
        num_features, num_blocks, growth_channels, dtype)
    self.output_heads = [
        RRDBHead(num_features, out_channels, spec.scale, spec.upsampler, input_unshuffle,
                 name=spec.name, dtype=dtype) for spec in specs]
    rrdbnet._track_items(self, "_body_", self.body)  # pylint: disable=protected-access
    rrdbnet._track_items(self, "_head_", self.output_heads)  # pylint: disable=protected-access
    self._heads_by_name = dict(zip(names, self.output_heads))

  # --- facts ------------------------------------------------------------------------------------

  @property
  def head_names(self) -> tuple[str, ...]:
    return tuple(spec.name for spec in self.head_specs)

  @property
  def scales(self) -> dict[str, int]:
    """{head name: scale}."""
    return {spec.name: spec.scale for spec in self.head_specs}

  @property
  def scale(self) -> int:
    """The default head's scale (what single-output code sees)."""
    return self.scales[self.default_head]

  def head_spec(self, name: str) -> HeadSpec:
    """The named head's spec.

    Raises:
      ValueError: Not a head of this model (the message lists the heads).
    """
    for spec in self.head_specs:
      if spec.name == name:
        return spec
    raise ValueError(f"{self.name} has no head {name!r}; its heads are {list(self.head_names)}")

  # --- building and calling ---------------------------------------------------------------------

  def build(self, input_shape=None):
    rrdbnet.build_trunk(self.conv_first, self.body, self.conv_body,
                        self.in_channels * self.input_unshuffle**2, self.num_features)
    for head in self.output_heads:
      head.build((None, None, None, self.num_features))
    self.built = True

  def _select(self, heads) -> tuple[str, ...]:
    if heads is None:
      return self.head_names
    if isinstance(heads, str):
      heads = (heads,)
    heads = tuple(heads)
    for name in heads:
      self.head_spec(name)
    if not heads or len(set(heads)) != len(heads):
      raise ValueError(f"heads must name distinct heads of {list(self.head_names)}, got "
                       f"{list(heads)}")
    return heads

  def call(self, inputs, heads=None):
    """{head: image} for `heads` (None: all), from one trunk pass; other heads are not run."""
    names = self._select(heads)
    return rrdbnet.unshuffled_call(inputs, self.input_unshuffle,
                                   lambda x: self.heads_from(self.features(x), names),
                                   {name: self.scales[name] for name in names})

  def features(self, x):
    """The trunk's output (conv_first, RRDBs, conv_body, long skip) for an input already folded
    by input_unshuffle (as `call` folds it; training crops need no padding).

    With `heads_from`, what `call` does in two steps, so that a training step can scale or stop
    the gradient each head sends into the shared trunk.
    """
    return rrdbnet.trunk_features(self.conv_first, self.body, self.conv_body, x)

  def heads_from(self, features, heads=None) -> dict:
    """{head: image} of the named heads (None: all) from trunk `features`."""
    return {name: self._heads_by_name[name](features) for name in self._select(heads)}

  def head_fn(self, name: str) -> Callable:
    """x → the named head's image (a tensor), running the trunk and that head only.

    Raises:
      ValueError: Not a head of this model.
    """
    self.head_spec(name)
    return lambda x: self(x, heads=(name,))[name]

  def blend_fn(self, blend: HeadBlend) -> Callable:
    """x → Σ weight · head image (float32), one trunk pass and the blended heads only.

    Raises:
      ValueError: Unknown heads, heads of different scales, or bad weights.
    """
    self.check_blend(blend)

    def run(x):
      outputs = self(x, heads=blend.names)
      return tf.add_n([weight * tf.cast(outputs[name], tf.float32)
                       for name, weight in blend.weights])

    return run

  def check_blend(self, blend: HeadBlend) -> int:
    """Validates `blend` against this model's heads; returns their common scale.

    Raises:
      ValueError: Unknown heads, different scales, or bad weights.
    """
    _check_blend_weights(blend)
    scales = {name: self.head_spec(name).scale for name in blend.names}
    if len(set(scales.values())) != 1:
      raise ValueError(f"blend heads {blend.describe()!r}: the heads must share a scale, they "
                       f"are {', '.join(f'{n} ×{s}' for n, s in scales.items())}")
    return next(iter(scales.values()))

  # --- single-head interop ----------------------------------------------------------------------

  def head_arch(self, name: str) -> dict:
    """The `RRDBNet` arguments of the trunk + the named head."""
    spec = self.head_spec(name)
    arch = {"in_channels": self.in_channels, "out_channels": self.out_channels,
            "num_features": self.num_features, "num_blocks": self.num_blocks,
            "growth_channels": self.growth_channels, "scale": spec.scale,
            "upsampler": spec.upsampler}
    if self.input_unshuffle != 1:
      arch["input_unshuffle"] = self.input_unshuffle
    return arch

  def head_convs(self, name: str) -> dict[str, keras.layers.Conv2D]:
    """The trunk's and the named head's convs under RRDBNet's `named_convs` keys (built)."""
    spec = self.head_spec(name)
    if not self.built:
      self.build()
    convs = {"conv_first": self.conv_first}
    for i, block in enumerate(self.body):
      for k, rdb in enumerate(block.rdbs, start=1):
        for j, conv in enumerate(rdb.convs, start=1):
          convs[f"body.{i}.rdb{k}.conv{j}"] = conv
    convs["conv_body"] = self.conv_body
    convs.update(self._heads_by_name[spec.name].named_convs())
    return convs

  def load_rrdbnet(self, model: "rrdbnet.RRDBNet", head: str) -> None:
    """Copies an RRDBNet's weights into the trunk and the named head (other heads untouched).

    Raises:
      ValueError: Unknown head, or an RRDBNet of another architecture (names the fields).
    """
    expected = self.head_arch(head)
    got = model.arch_config()
    differences = [f"{k}: model {got.get(k)!r}, head {expected.get(k)!r}"
                   for k in sorted(set(expected) | set(got)) if expected.get(k) != got.get(k)]
    if differences:
      raise ValueError(f"cannot load {model.name} into head {head!r} of {self.name}: "
                       + "; ".join(differences))
    _copy_convs(model.named_convs(), self.head_convs(head))

  def to_rrdbnet(self, head: str, **kwargs) -> "rrdbnet.RRDBNet":
    """A new float32 `RRDBNet` holding a copy of the trunk and the named head.

    Args:
      head: The head.
      **kwargs: Passed to `RRDBNet` (name).

    Returns:
      A built RRDBNet whose output equals `head_fn(head)`'s.
    """
    kwargs.setdefault("name", "rrdbnet")
    model = rrdbnet.RRDBNet(**self.head_arch(head), **kwargs)
    model.build((None, None, None, self.in_channels))
    _copy_convs(self.head_convs(head), model.named_convs())
    return model

  # --- serialisation ----------------------------------------------------------------------------

  def get_config(self):
    config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
              "num_features": self.num_features, "num_blocks": self.num_blocks,
              "growth_channels": self.growth_channels,
              "heads": [spec.to_config() for spec in self.head_specs],
              "default_head": self.default_head, "upsampler": self.upsampler, "name": self.name}
    if self.input_unshuffle != 1:
      config["input_unshuffle"] = self.input_unshuffle
    if self.dtype_policy.name != "float32":
      config["dtype"] = self.dtype_policy.name
    return config


def _copy_convs(source: dict, target: dict) -> None:
  if list(source) != list(target):
    raise ValueError(f"conv layouts differ: {list(source)[:5]}... vs {list(target)[:5]}...")
  for key, conv in source.items():
    if tuple(conv.kernel.shape) != tuple(target[key].kernel.shape):
      raise ValueError(f"{key}: kernel {tuple(conv.kernel.shape)} vs "
                       f"{tuple(target[key].kernel.shape)}")
    target[key].kernel.assign(tf.cast(conv.kernel, target[key].kernel.dtype))
    target[key].bias.assign(tf.cast(conv.bias, target[key].bias.dtype))


def from_rrdbnet(model: "rrdbnet.RRDBNet", heads, head: str, *, default_head=None,
                 **kwargs) -> MultiHeadRRDBNet:
  """A multi-head model with `model`'s trunk and its weights in `head` (other heads fresh).

  E.g. the published x4 weights as the "x4" head of an x2/x4/x8 model about to be fine-tuned.

  Args:
    model: A built `RRDBNet`.
    heads: The new model's heads; `head` among them, with `model`'s scale and upsampler.
    head: Which head receives `model`'s output convs.
    default_head: As `MultiHeadRRDBNet`.
    **kwargs: Passed to `MultiHeadRRDBNet` (name).

  Raises:
    ValueError: `head` not declared, or declared with another scale or upsampler.
  """
  arch = model.arch_config()
  multi = MultiHeadRRDBNet(
      in_channels=arch["in_channels"], out_channels=arch["out_channels"],
      num_features=arch["num_features"], num_blocks=arch["num_blocks"],
      growth_channels=arch["growth_channels"], heads=heads, default_head=default_head,
      upsampler=arch["upsampler"], input_unshuffle=arch.get("input_unshuffle", 1), **kwargs)
  multi.build()
  multi.load_rrdbnet(model, head)
  return multi
