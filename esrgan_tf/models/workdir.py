"""The training directory layout: config.json, checkpoints/, best/, tensorboard/.

Loading a generator from a workdir needs only this module and the model definitions, never the
training loop (`esrgan_tf.train.loop` writes workdirs; `esrgan_tf.inference.resolver` reads them).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from esrgan_tf import models
from esrgan_tf.core import fileio

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
TENSORBOARD_DIR = "tensorboard"


def is_workdir(path: str) -> bool:
  """Whether `path` is a training workdir (a directory with config.json)."""
  return tf.io.gfile.isdir(path) and tf.io.gfile.exists(os.path.join(path, CONFIG_FILE))


def write_config(config, workdir: str) -> None:
  """Writes config.json (how `esrgan_tf.inference.resolver` recognises a workdir), atomically."""
  tf.io.gfile.makedirs(workdir)
  fileio.write_gfile(os.path.join(workdir, CONFIG_FILE), config.to_json(indent=2, sort_keys=True),
                     overwrite=True)


def read_config(workdir: str) -> dict:
  """The config.json of a workdir as a dict.

  Raises:
    FileNotFoundError: No config.json.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{workdir}: not a training workdir (no {CONFIG_FILE})")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def load_generator_from_workdir(workdir: str, use_ema: bool = True,
                                which: str = "latest") -> keras.Model:
  """Rebuilds the generator of a training workdir and restores its weights.

  Args:
    workdir: A directory written by `train_and_evaluate` (config.json + checkpoints/).
    use_ema: Restore the EMA generator (what evaluation and export use) rather than the raw G.
    which: "latest" checkpoint or "best" (highest eval PSNR).

  Returns:
    A built float32 generator of the config's `model.arch` (`models.build_generator`).

  Raises:
    FileNotFoundError: No config.json or no checkpoint.
    ValueError: Bad `which`.
  """
  if which not in ("latest", "best"):
    raise ValueError(f"which must be 'latest' or 'best', got {which!r}")
  model_cfg = read_config(workdir)["model"]
  directory = os.path.join(workdir, CHECKPOINT_DIR if which == "latest" else BEST_DIR)
  path = tf.train.latest_checkpoint(directory)
  if path is None:
    raise FileNotFoundError(f"{workdir}: no {which} checkpoint in {directory}")
  model = models.build_generator(model_cfg, dtype="float32")
  key = "ema_generator" if use_ema else "generator"
  status = tf.train.Checkpoint(**{key: model_variables(model)}).restore(path).expect_partial()
  status.assert_existing_objects_matched()
  return model


def model_variables(model: keras.Model) -> tf.train.Checkpoint:
  """A checkpointable view of `model.weights` keyed by their path inside the model.

  Keras 3 models do not expose layers held in Python lists (e.g. the discriminator stages) to
  `tf.train.Checkpoint`, so checkpointing a model object can silently skip them (RRDBNet now
  tracks its lists explicitly; a path-keyed layout is robust for every model). Keys drop the
  model's own name ("body.0.rdb1.conv1.kernel"), so the generator, its EMA
  copy and a freshly built `RRDBNet` share one layout.

  Raises:
    ValueError: Two weights with the same path.
  """
  named = {}
  for v in model.weights:
    key = ".".join(v.path.split("/")[1:])
    if key in named:
      raise ValueError(f"{model.name}: duplicate weight path {v.path!r}")
    named[key] = v
  return tf.train.Checkpoint(**named)


class WorkdirMismatchError(ValueError):
  """A restart whose config cannot resume the workdir's checkpoints; names the fields."""


def _flatten(value, prefix: str) -> dict:
  if isinstance(value, dict):
    flat = {}
    for key, item in value.items():
      flat.update(_flatten(item, f"{prefix}.{key}"))
    return flat
  return {prefix: value}


def _resume_fields(config: dict) -> dict:
  """The fields that decide what a checkpoint holds: phase, G architecture, D (gan phase)."""
  fields = {"phase": config.get("phase")}
  fields.update(_flatten(config.get("model", {}), "model"))
  if config.get("phase") == "gan":
    fields.update(_flatten(config.get("discriminator", {}), "discriminator"))
  return fields


def config_differences(config, workdir: str) -> list[str]:
  """The resume-relevant fields where `config` differs from the workdir's config.json.

  Args:
    config: The new run's ConfigDict.
    workdir: A workdir with config.json.

  Returns:
    ["model.num_features: workdir 8, config 12", ...], sorted; empty if they agree.
  """
  saved = _resume_fields(read_config(workdir))
  # Through JSON, as config.json was written: tuples compare equal to the lists read back.
  current = _resume_fields(json.loads(config.to_json()))
  absent = "(absent)"
  return [f"{key}: workdir {saved.get(key, absent)!r}, config {current.get(key, absent)!r}"
          for key in sorted(set(saved) | set(current))
          if saved.get(key, absent) != current.get(key, absent)]


def check_resumable(config, workdir: str) -> None:
  """Refuses to resume `workdir` with a config of another phase or architecture.

  A workdir without config.json (written by an older version) is not checked.

  Raises:
    WorkdirMismatchError: Naming every differing field; nothing in the workdir is changed.
  """
  if not tf.io.gfile.exists(os.path.join(workdir, CONFIG_FILE)):
    return
  differences = config_differences(config, workdir)
  if differences:
    raise WorkdirMismatchError(
        f"{workdir}: cannot resume: its checkpoints were trained with another config ("
        + "; ".join(differences) + "). Use a new --workdir, or set these fields back "
        "(config.train.init_from=WORKDIR starts a new run from its weights).")
