"""configs/multihead_*.py: the model part builds the x2/x4/x8 MultiHeadRRDBNet, also through
config.json as a training workdir stores it; the training recipes validate and say what they
train."""

import json
import os

import pytest

from esrgan_tf import models
from esrgan_tf.models import MultiHeadRRDBNet
from esrgan_tf.train import configs, head_config
from esrgan_tf.train import loop as train_loop

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs",
                      "multihead_x2x4x8.py")


@pytest.mark.parametrize("variant", ["", "smoke"])
def test_config_builds_the_three_head_model(variant):
  c = configs.load_config_module(CONFIG).get_config(variant)
  assert c.model.arch == "multihead_rrdbnet" and "scale" not in c.model
  # Through JSON, as workdir/config.json holds it: lists of dicts come back as such.
  model_config = json.loads(c.to_json())["model"]
  model = models.build_generator(model_config)
  assert isinstance(model, MultiHeadRRDBNet)
  assert model.scales == {"x2": 2, "x4": 4, "x8": 8} and model.default_head == "x4"
  assert {spec.upsampler for spec in model.head_specs} == {"nearest"}
  nf, nb = (8, 1) if variant else (64, 23)
  assert (model.num_features, model.num_blocks) == (nf, nb)
  if not variant:  # the x4 head + trunk is exactly Real-ESRGAN x4plus (16,697,987 parameters)
    assert model.to_rrdbnet("x4").count_params() == 16_697_987


def _load(name, variant=""):
  path = os.path.join(os.path.dirname(CONFIG), f"{name}.py")
  return configs.load_config_module(path).get_config(variant)


@pytest.mark.parametrize("name, variant", [
    ("multihead_x2x4x8", ""), ("multihead_x2x4x8", "smoke"), ("multihead_x2x4x8", "gan"),
    ("multihead_x2x4x8", "gan_smoke"), ("multihead_psnr_gan_x4", ""),
    ("multihead_psnr_gan_x4", "smoke"), ("multihead_quickstart", ""),
    ("multihead_quickstart", "x8_alone"), ("multihead_quickstart", "gan"),
    ("multihead_quickstart", "gan_shared")])
def test_training_configs_validate_and_declare_every_heads_recipe(name, variant):
  c = _load(name, variant)
  train_loop.validate_config(c)
  heads = [h["name"] for h in c.model.heads]
  # The recipe is in the config: every head's mix spelled out, no field left to a default.
  assert set(c.head_losses) == set(heads)
  for entry in c.head_losses.values():
    assert set(entry) == set(head_config.HEAD_LOSS_FIELDS)
  json.loads(c.to_json())  # config.json can hold it


def test_recipes():
  gan = {h.name: h for h in head_config.head_losses(_load("multihead_x2x4x8", "gan"))}
  assert all((h.pixel_weight, h.perceptual_weight, h.gan_weight) == (1e-2, 1.0, 5e-3)
             for h in gan.values())
  c = _load("multihead_x2x4x8", "gan")
  assert [head_config.target_size(c, s) for s in (2, 4, 8)] == [64, 128, 256]
  pg = {h.name: h for h in head_config.head_losses(_load("multihead_psnr_gan_x4"))}
  assert (pg["psnr"].pixel_weight, pg["psnr"].adversarial) == (1.0, False)
  assert pg["psnr"].perceptual_weight == 0 and pg["gan"].adversarial
  assert (pg["gan"].pixel_weight, pg["gan"].perceptual_weight, pg["gan"].gan_weight) == (
      1e-2, 1.0, 5e-3)
  # The quickstart comparison: every variant on 16² LR crops, the same steps and schedule.
  for variant in ("", "x2", "x4", "x8", "x4_alone"):
    q = _load("multihead_quickstart", variant)
    scale = head_config.max_scale(q) if head_config.is_multihead(q) else q.model.scale
    assert q.data.gt_size // scale == 16 and q.train.steps == 4000
    assert tuple(q.optim.milestones) == (2400, 3200, 3600)
  alone = head_config.head_losses(_load("multihead_quickstart", "x4_alone"))
  assert [(h.name, h.trained) for h in alone] == [("x2", False), ("x4", True), ("x8", False)]
  with pytest.raises(ValueError, match="unknown config variant 'x16'"):
    _load("multihead_quickstart", "x16")
