"""Tests for train.loop (in-process; distributed/determinism tests: test_train_distributed)."""

import importlib.util
import os

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from esrgan_tf.inference import resolver
from esrgan_tf.models import workdir as workdir_lib
from esrgan_tf.train import loop as train_loop
from esrgan_tf.train import state as train_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config_module(name):
  spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(REPO, "configs",
                                                                            f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def write_images(directory, sizes, seed):
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i, (h, w) in enumerate(sizes):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + i), np.cos(5 * yy), xx * yy], -1) * 0.4 + 0.5
    image = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
    Image.fromarray((image * 255).astype(np.uint8)).save(os.path.join(directory, f"im{i}.png"))


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  write_images(str(root / "train"), [(40, 40), (36, 44), (48, 32)], 0)
  write_images(str(root / "val"), [(24, 20)], 1)
  return str(root / "train"), str(root / "val")


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
  """A VGG19 (random init) weights file: the perceptual branch runs without any download."""
  path = str(tmp_path_factory.mktemp("vgg") / "vgg19.weights.h5")
  keras.applications.VGG19(include_top=False, weights=None,
                           input_shape=(None, None, 3)).save_weights(path)
  return path


def tiny_config(data_dirs, phase="psnr", **train_overrides):
  c = load_config_module("esrgan_x4" if phase == "gan" else "psnr_x4").get_config("smoke")
  c.model.update(num_features=8, num_blocks=1, growth_channels=4)
  c.data.update(train_dir=data_dirs[0], val_dir=data_dirs[1], gt_size=16, batch_size=2)
  c.discriminator.update(num_features=4)
  c.perceptual.update(weight=0.0, weights="")
  c.train.update(steps=1, steps_per_loop=1, log_every=1, eval_every=1, checkpoint_every=1,
                 progress=False, strategy="default")
  c.train.update(**train_overrides)
  return c


def test_psnr_then_gan_one_step_each_and_workdir_round_trip(data_dirs, vgg_weights, tmp_path):
  psnr_dir, gan_dir = str(tmp_path / "psnr"), str(tmp_path / "gan")
  psnr = train_loop.train_and_evaluate(tiny_config(data_dirs, "psnr"), psnr_dir)
  assert psnr["final_step"] == 1 and psnr["history"]["step"] == [1]
  assert np.isfinite(psnr["history"]["l_pix"][0]) and psnr["history"]["l_pix"][0] > 0
  assert len(psnr["eval"]) == 1 and np.isfinite(psnr["eval"][0]["psnr"])
  assert psnr["bicubic_psnr"] > 10
  assert psnr["run_name"] == "psnr_x4_nf8nb1gc4_gt16_b2x1_1"
  for name in ("config.json", "checkpoints/checkpoint", "best/checkpoint"):
    assert os.path.exists(os.path.join(psnr_dir, name)), name
  assert os.listdir(os.path.join(psnr_dir, "tensorboard"))

  # load_generator_from_workdir rebuilds from config.json: EMA by default, raw G on request.
  models = psnr["models"]
  ema = workdir_lib.load_generator_from_workdir(psnr_dir)
  raw = workdir_lib.load_generator_from_workdir(psnr_dir, use_ema=False)
  for loaded, source in ((ema, models.ema_generator), (raw, models.generator)):
    for a, b in zip(loaded.get_weights(), source.get_weights()):
      np.testing.assert_array_equal(a, b)
  # After one step, EMA = 0.9·init + 0.1·G ≠ G.
  assert not all(np.array_equal(a, b) for a, b in zip(ema.get_weights(), raw.get_weights()))
  # The package's model resolver recognises the workdir.
  resolved = resolver.load_generator(psnr_dir)
  np.testing.assert_array_equal(resolved.get_weights()[0], ema.get_weights()[0])

  # GAN phase initialised from the PSNR workdir, with a (random-weight) perceptual term.
  c = tiny_config(data_dirs, "gan", init_from=psnr_dir, steps=0 + 1)
  c.perceptual.update(weight=1.0, weights=vgg_weights, layers={"block1_conv2": 1.0})
  c.train.eval_every = 0
  # Before any step: G and EMA start as the PSNR run's EMA weights (checked via a 0-step fork).
  gan = train_loop.train_and_evaluate(c, gan_dir)
  hist = gan["history"]
  for key in ("g_loss", "l_pix", "l_percep", "l_g_gan", "d_loss", "d_real", "d_fake"):
    assert np.isfinite(hist[key][0]), key
  # g_loss is the sum of its weighted terms.
  np.testing.assert_allclose(hist["g_loss"][0],
                             hist["l_pix"][0] + hist["l_percep"][0] + hist["l_g_gan"][0],
                             rtol=1e-5)
  assert gan["models"].discriminator is not None and gan["models"].vgg is not None


def test_init_from_copies_weights_and_checks_architecture(data_dirs, tmp_path):
  src = train_loop.train_and_evaluate(tiny_config(data_dirs, eval_every=0), str(tmp_path / "a"))
  c = tiny_config(data_dirs, init_from=str(tmp_path / "a"), eval_every=0, steps=1)
  c.optim.g_lr = 0.0  # a zero-LR step leaves G exactly at its initial weights.
  out = train_loop.train_and_evaluate(c, str(tmp_path / "b"))
  for a, b in zip(out["models"].generator.get_weights(),
                  src["models"].ema_generator.get_weights()):
    np.testing.assert_array_equal(a, b)
  bad = tiny_config(data_dirs, init_from=str(tmp_path / "a"), eval_every=0)
  bad.model.num_features = 12
  with pytest.raises(ValueError, match="architecture"):
    train_loop.train_and_evaluate(bad, str(tmp_path / "c"))


def _nan_at(step_index):
  """Per-replica dataset of constant batches whose `step_index`-th (0-based) HR is NaN."""
  def dataset_fn(ctx):
    del ctx
    def make(i):
      hr = tf.fill([2, 16, 16, 3], tf.where(i == step_index, np.nan, 0.5))
      return tf.fill([2, 4, 4, 3], 0.5), hr
    return tf.data.Dataset.range(100).map(make)
  return dataset_fn


def test_non_finite_loss_names_step_and_keeps_last_good_checkpoint(data_dirs, tmp_path):
  c = tiny_config(data_dirs, steps=6, steps_per_loop=2, log_every=2, checkpoint_every=2,
                  eval_every=0, checkpoint_data_iterator=False)
  workdir = str(tmp_path / "w")
  with pytest.raises(train_loop.NonFiniteLossError, match="non-finite loss at step 4"):
    train_loop.train_and_evaluate(c, workdir, dataset_fn=_nan_at(3))
  assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-2")


def test_tracing_count_stays_one_across_uneven_inner_loops(data_dirs, tmp_path):
  # steps 5 with steps_per_loop 2 and log_every 3: inner loops of 2, 1, 2 steps.
  c = tiny_config(data_dirs, steps=5, steps_per_loop=2, log_every=3, checkpoint_every=5,
                  eval_every=0)
  out = train_loop.train_and_evaluate(c, str(tmp_path / "w"))
  assert out["history"]["step"] == [3, 5]
  assert out["train_steps"].experimental_get_tracing_count() == 1


def test_lr_schedule_and_optimizer_built_before_first_step(data_dirs):
  c = tiny_config(data_dirs)
  c.optim.update(g_lr=1.0, milestones=(2, 4), gamma=0.5)
  models = train_state.create_models(c)
  g_opt, d_opt = train_state.create_optimizers(c, models)
  assert d_opt is None and g_opt.built
  assert len(g_opt.variables) > 2  # iterations, lr + Adam slots exist before any step.
  # BasicSR convention: updates 1..2 use 1, updates 3..4 use 0.5, later ones 0.25; update k
  # runs with iterations = k - 1.
  for iterations, expected in ((0, 1.0), (1, 1.0), (2, 0.5), (3, 0.5), (4, 0.25), (9, 0.25)):
    g_opt.iterations.assign(iterations)
    assert train_state.learning_rate(g_opt) == expected


def test_mixed_precision_step_runs_and_restores_policy(data_dirs, tmp_path):
  c = tiny_config(data_dirs, precision="mixed_float16", eval_every=0)
  out = train_loop.train_and_evaluate(c, str(tmp_path / "w"))
  assert np.isfinite(out["history"]["g_loss"][0])
  assert isinstance(out["models"].generator.compute_dtype, str)
  assert out["models"].generator.compute_dtype == "float16"
  assert keras.mixed_precision.global_policy().name == "float32"


def test_bad_configs(data_dirs, tmp_path):
  for key, value, match in (("phase", "wgan", "phase"), ("train.strategy", "x", "strategy"),
                            ("train.precision", "fp8", "precision"),
                            ("train.ema_decay", 1.0, "ema_decay"),
                            ("data.gt_size", 18, "multiple of the scale"),
                            ("train.jit_compile", True, "depth_to_space")):
    c = tiny_config(data_dirs)
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
    with pytest.raises(ValueError, match=match):
      train_loop.train_and_evaluate(c, str(tmp_path / "w"))
  with pytest.raises(FileNotFoundError, match="no config.json"):
    workdir_lib.load_generator_from_workdir(str(tmp_path))


def test_restart_with_another_architecture_is_refused_and_workdir_stays_usable(data_dirs,
                                                                                tmp_path):
  workdir = str(tmp_path / "w")
  first = train_loop.train_and_evaluate(tiny_config(data_dirs, eval_every=0), workdir)
  config_path = os.path.join(workdir, "config.json")
  with open(config_path) as f:
    saved = f.read()
  c = tiny_config(data_dirs, eval_every=0, steps=2)
  c.model.update(num_features=12, upsampler="depth_to_space")
  with pytest.raises(workdir_lib.WorkdirMismatchError,
                     match=r"model\.num_features: workdir 8, config 12; "
                           r"model\.upsampler: workdir 'nearest', config 'depth_to_space'"):
    train_loop.train_and_evaluate(c, workdir)
  gan = tiny_config(data_dirs, "gan", eval_every=0, steps=2)
  with pytest.raises(workdir_lib.WorkdirMismatchError,
                     match=r"phase: workdir 'psnr', config 'gan'"):
    train_loop.train_and_evaluate(gan, workdir)
  # Nothing changed: config.json, the checkpoint, and --model=WORKDIR still loads.
  with open(config_path) as f:
    assert f.read() == saved
  assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-1")
  loaded = resolver.load_generator(workdir)
  for a, b in zip(loaded.get_weights(), first["models"].ema_generator.get_weights()):
    np.testing.assert_array_equal(a, b)
  # Fields that do not change the checkpoint's contents (steps, learning rate) resume.
  c = tiny_config(data_dirs, eval_every=0, steps=2)
  c.optim.g_lr = 1e-5
  assert train_loop.train_and_evaluate(c, workdir)["history"]["step"] == [2]


def test_config_json_is_written_only_after_a_successful_restore(data_dirs, tmp_path):
  workdir = str(tmp_path / "w")
  c = tiny_config(data_dirs, eval_every=0, resume=str(tmp_path / "nothing_here"))
  with pytest.raises(FileNotFoundError, match="train.resume .*nothing_here.*no checkpoint"):
    train_loop.train_and_evaluate(c, workdir)
  assert not os.path.exists(os.path.join(workdir, "config.json"))


def _cli(*args):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "esrgan_tf.cli.train", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)


def test_cli_locked_config_rejects_unknown_key(tmp_path):
  proc = _cli("--config=configs/psnr_x4.py:smoke", f"--workdir={tmp_path}",
              "--config.train.stepz=3")
  assert proc.returncode != 0
  assert "stepz" in proc.stderr
  assert not os.path.exists(tmp_path / "config.json")


def test_cli_trains_smoke_variant_with_overrides(data_dirs, tmp_path):
  proc = _cli("--config=configs/psnr_x4.py:smoke", f"--workdir={tmp_path / 'w'}",
              f"--config.data.train_dir={data_dirs[0]}", f"--config.data.val_dir={data_dirs[1]}",
              "--config.data.gt_size=16", "--config.data.batch_size=2", "--config.train.steps=2",
              "--config.train.eval_every=2", "--config.train.progress=False")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "psnr_x4_nf8nb1gc4_gt16_b2x1_2 done at step 2; eval PSNR" in proc.stdout
  saved = workdir_lib.read_config(str(tmp_path / "w"))
  assert saved["train"]["steps"] == 2 and saved["data"]["gt_size"] == 16


def test_sigterm_saves_and_stops_then_resume_finishes(data_dirs, tmp_path):
  import signal  # pylint: disable=g-import-not-at-top

  fired = []

  def dataset_fn(ctx):
    del ctx

    def make(i):
      def maybe_kill(i):
        if i == 2 and not fired:  # The handler runs on the main thread between inner loops.
          fired.append(True)
          os.kill(os.getpid(), signal.SIGTERM)
        return i
      i = tf.py_function(maybe_kill, [i], tf.int64)
      return tf.fill([2, 4, 4, 3], 0.5), tf.fill([2, 16, 16, 3], 0.25)
    return tf.data.Dataset.range(1000).map(make)

  c = tiny_config(data_dirs, steps=50, steps_per_loop=1, log_every=1, checkpoint_every=100,
                  eval_every=0, checkpoint_data_iterator=False)
  previous = signal.getsignal(signal.SIGTERM)
  workdir = str(tmp_path / "w")
  out = train_loop.train_and_evaluate(c, workdir, dataset_fn=dataset_fn)
  assert out["stopped"] and 1 <= out["final_step"] < 50
  assert signal.getsignal(signal.SIGTERM) is previous
  latest = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  assert latest.endswith(f"ckpt-{out['final_step']}")
  c.train.steps = out["final_step"] + 2
  again = train_loop.train_and_evaluate(c, workdir, dataset_fn=dataset_fn)
  assert not again["stopped"] and again["history"]["step"] == [out["final_step"] + 1,
                                                                out["final_step"] + 2]


def _flat_keys(d, prefix=""):
  keys = set()
  for k, v in d.items():
    keys |= _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "layers" else {
        prefix + k}
  return keys


@pytest.mark.parametrize("name,variant", [("psnr_x4", ""), ("psnr_x4", "smoke"),
                                          ("esrgan_x4", ""), ("psnr_x2", ""), ("esrgan_x2", ""),
                                          ("psnr_x8", ""), ("quickstart", ""),
                                          ("quickstart", "gan")])
def test_configs_share_the_schema_and_validate(name, variant):
  reference = _flat_keys(load_config_module("psnr_x4").get_config().to_dict())
  c = load_config_module(name).get_config(variant)
  assert _flat_keys(c.to_dict()) == reference
  train_loop.validate_config(c)
  assert c.model.scale in (2, 4, 8) and c.data.gt_size % c.model.scale == 0


def test_paper_settings():
  psnr = load_config_module("psnr_x4").get_config()
  gan = load_config_module("esrgan_x4").get_config()
  assert (psnr.model.num_features, psnr.model.num_blocks, psnr.model.growth_channels) == (
      64, 23, 32)
  assert (psnr.data.gt_size, psnr.data.batch_size, psnr.train.steps) == (128, 16, 1_000_000)
  assert psnr.optim.g_lr == 2e-4 and tuple(psnr.optim.milestones) == (
      200_000, 400_000, 600_000, 800_000)
  assert gan.phase == "gan" and gan.loss.pixel_weight == 1e-2 and gan.loss.gan_weight == 5e-3
  assert gan.perceptual.weight == 1.0 and dict(gan.perceptual.layers) == {"block5_conv4": 1.0}
  assert tuple(gan.optim.milestones) == (50_000, 100_000, 200_000, 300_000)
  assert gan.optim.g_lr == gan.optim.d_lr == 1e-4
  x8 = load_config_module("psnr_x8").get_config()
  assert x8.model.scale == 8 and x8.data.gt_size == 256
  with pytest.raises(ValueError, match="unknown config variant"):
    load_config_module("psnr_x4").get_config("huge")
