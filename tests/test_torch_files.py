"""Our torch-free reader against files written by real PyTorch (tests/data/torch).

The fixtures and their expected values were made once by `scripts/make_torch_fixtures.py` with
torch 2.13.0: every other .pth in the tests is our own imitation of torch's format, these are not.
The RRDBNet output in expected.npz was computed by torch from BasicSR's architecture definition,
so the last test checks the reader, the layout mapping and the Keras model together.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from esrgan_tf import weights
from esrgan_tf.models import checkpoints

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "torch")


@pytest.fixture(scope="module")
def expected():
  with np.load(os.path.join(DATA, "expected.npz")) as f:
    return {k: f[k] for k in f.files}


@pytest.mark.parametrize("name", ["tensors_zip.pth", "tensors_legacy.pth"])
def test_reader_matches_torch_tensors_exactly(name, expected):
  got = weights.read_state_dict(os.path.join(DATA, name))
  want = {k.split("/", 1)[1]: v for k, v in expected.items() if k.startswith(name + "/")}
  assert sorted(got) == sorted(want)
  for key, value in want.items():
    array = np.asarray(got[key])
    assert array.shape == value.shape, key
    if key == "bf16":  # stored as bfloat16; torch's float() of it is exact
      np.testing.assert_array_equal(array.astype(np.float32), value, err_msg=key)
    else:
      assert array.dtype == value.dtype, key
      np.testing.assert_array_equal(array, value, err_msg=key)


def test_tiny_basicsr_rrdbnet_from_torch_matches_torch_forward(expected):
  model = checkpoints.load_checkpoint(os.path.join(DATA, "rrdbnet_x4_nf8nb1gc4.pth"))
  assert model.arch_config()["num_features"] == 8 and model.arch_config()["num_blocks"] == 1
  x = expected["rrdb/input"].transpose(0, 2, 3, 1)  # NCHW -> NHWC
  out = np.asarray(model(x)).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(out, expected["rrdb/output"], rtol=0, atol=2e-5)
