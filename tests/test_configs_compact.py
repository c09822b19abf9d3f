"""configs/compact_x4.py builds the Compact generator through models.build_generator."""

import os

import pytest

from esrgan_tf.models import RRDBNet, SRVGGNetCompact, build_generator
from esrgan_tf.train import configs

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "configs")


def _load(name):
  return configs.load_config_module(os.path.join(CONFIGS, f"{name}.py"))


@pytest.mark.parametrize("variant, nf, num_conv, params", [
    # general-x4v3: 1,213,296 (derivation in test_srvgg.test_param_counts).
    ("", 64, 32, 1_213_296),
    # smoke: (27·8 + 8) + 2·(9·64 + 8) + 3·8 + (9·8·48 + 48) = 224 + 1,168 + 24 + 3,504.
    ("smoke", 8, 2, 4_920),
])
def test_compact_config_builds_generator(variant, nf, num_conv, params):
  config = _load("compact_x4").get_config(variant)
  model = build_generator(config.model)
  assert isinstance(model, SRVGGNetCompact)
  assert model.arch_config() == dict(num_in_ch=3, num_out_ch=3, num_feat=nf, num_conv=num_conv,
                                     upscale=4, act_type="prelu")
  assert model.count_params() == params
  # Every other subtree is psnr_x4's, so the training code sees the keys it expects.
  base = _load("psnr_x4").get_config(variant)
  assert set(config.keys()) == set(base.keys())
  for key in ("data", "optim", "loss", "train"):
    assert config[key].to_dict() == base[key].to_dict()


def test_build_generator_defaults_to_rrdbnet_and_rejects_unknown_arch():
  config = _load("psnr_x4").get_config("smoke")
  assert isinstance(build_generator(config.model), RRDBNet)  # no `arch` key: old configs work
  with pytest.raises(ValueError, match=r"model.arch must be one of \['multihead_rrdbnet', "
                     r"'rrdbnet', 'srvgg'\], got 'swinir'"):
    build_generator(dict(arch="swinir"))
