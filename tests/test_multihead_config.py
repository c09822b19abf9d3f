"""configs/multihead_x2x4x8.py: its model part builds the x2/x4/x8 MultiHeadRRDBNet, also
through config.json as a training workdir stores it."""

import json
import os

import pytest

from esrgan_tf import models
from esrgan_tf.models import MultiHeadRRDBNet
from esrgan_tf.train import configs

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
