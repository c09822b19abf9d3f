"""Where `train.loop` branches for a multi-head generator (`train.head_config`).

The loop, checkpoints, resume, logging and EMA are the single-head ones; these functions pick the
multi-head data scale, step and evaluator when `config.model.arch` is "multihead_rrdbnet", and
the single-head ones otherwise (so a single-head run is exactly as before).
"""

from __future__ import annotations

from esrgan_tf.train import head_config, head_eval, head_steps, steps
from esrgan_tf.train.state import generator_spec

is_multihead = head_config.is_multihead


def validate_config(config) -> None:
  """The multi-head checks (`head_config.validate_config`); nothing for a single head."""
  head_config.validate_config(config)


def data_scale(config) -> int:
  """The scale of the training (LR, HR) pairs: the model's, or the largest head's."""
  return head_config.max_scale(config) if is_multihead(config) else generator_spec(config).scale


def scale_tag(config, spec) -> str:
  """The run name's scale part: "x4" (`spec`: the config's unbuilt generator, made once: each
  construction draws initializer seeds), or the heads' scales "x2x4x8"."""
  return head_config.scale_tag(config) if is_multihead(config) else f"x{spec.scale}"


def make_train_step(config, strategy, state, global_batch_size: int):
  """`steps.make_train_step`, or its multi-head form (`head_steps`)."""
  make = head_steps.make_train_step if is_multihead(config) else steps.make_train_step
  return make(config, strategy, state, global_batch_size)


def make_evaluator(config, state, single_head_evaluator):
  """`single_head_evaluator(config, state)` (the loop's), or a `head_eval.HeadEvaluator`."""
  if is_multihead(config):
    return head_eval.HeadEvaluator(config, state)
  return single_head_evaluator(config, state)
