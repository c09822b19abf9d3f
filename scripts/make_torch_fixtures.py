"""Writes tests/data/torch/: small checkpoints saved by real PyTorch, with their expected values.

Run once, in a throwaway environment that has torch (never a dependency of esrgan_tf):

    python3.11 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python scripts/make_torch_fixtures.py

Files:
  tensors_zip.pth / tensors_legacy.pth: the same dict of tensors (several dtypes, a transposed
    view, two views sharing one storage, a scalar, an empty tensor) saved by `torch.save` in the
    zip format and with `_use_new_zipfile_serialization=False`.
  rrdbnet_x4_nf8nb1gc4.pth: a tiny RRDBNet state dict in the BasicSR layout (`params_ema` and
    `params`, nearest-upsampling ×4 as Real-ESRGAN's), as `torch.save` writes a `state_dict()`.
  expected.npz: every tensor as numpy (key "<file>/<name>"), the RRDBNet input (`rrdb/input`,
    NCHW) and its output computed here by torch (`rrdb/output`), from BasicSR's
    `rrdbnet_arch.py` definition re-stated below with torch.nn.functional.
"""

from __future__ import annotations

import collections
import os

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data",
                   "torch")
NF, NB, GC = 8, 1, 4


def _tensors() -> dict:
  g = torch.Generator().manual_seed(0)
  base = torch.randn(6, 5, generator=g)
  shared = torch.arange(12, dtype=torch.float32)
  return collections.OrderedDict(
      f32=torch.randn(2, 3, 4, generator=g),
      f16=torch.randn(3, 5, generator=g).half(),
      bf16=torch.randn(4, 3, generator=g).bfloat16(),
      f64=torch.randn(5, generator=g).double(),
      i64=torch.arange(-3, 4, dtype=torch.int64),
      transposed=base.t(),  # non-contiguous strides
      shared_a=shared[2:8],  # two views into one storage, at offsets
      shared_b=shared.view(3, 4)[1:, ::2],
      scalar=torch.tensor(3.5),
      empty=torch.zeros(0, 4),
  )


def _rrdbnet_state() -> collections.OrderedDict:
  """Random weights with BasicSR's key names and shapes (OIHW), scaled like its init."""
  g = torch.Generator().manual_seed(1)
  convs = [("conv_first", 3, NF)]
  for b in range(NB):
    for r in range(1, 4):
      for j in range(1, 6):
        convs.append((f"body.{b}.rdb{r}.conv{j}", NF + (j - 1) * GC, GC if j < 5 else NF))
  convs += [("conv_body", NF, NF), ("conv_up1", NF, NF), ("conv_up2", NF, NF),
            ("conv_hr", NF, NF), ("conv_last", NF, 3)]
  state = collections.OrderedDict()
  for name, cin, cout in convs:
    state[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
    state[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.1
  return state


def _rrdbnet_forward(state: dict, x: torch.Tensor) -> torch.Tensor:
  """BasicSR rrdbnet_arch.RRDBNet.forward (scale 4), restated with functional ops."""
  def conv(name, t):
    return F.conv2d(t, state[f"{name}.weight"], state[f"{name}.bias"], padding=1)

  def lrelu(t):
    return F.leaky_relu(t, 0.2)

  def rdb(prefix, t):
    feats = [t]
    for j in range(1, 5):
      feats.append(lrelu(conv(f"{prefix}.conv{j}", torch.cat(feats, 1))))
    return conv(f"{prefix}.conv5", torch.cat(feats, 1)) * 0.2 + t

  feat = conv("conv_first", x)
  body = feat
  for b in range(NB):
    out = body
    for r in range(1, 4):
      out = rdb(f"body.{b}.rdb{r}", out)
    body = out * 0.2 + body
  feat = feat + conv("conv_body", body)
  feat = lrelu(conv("conv_up1", F.interpolate(feat, scale_factor=2, mode="nearest")))
  feat = lrelu(conv("conv_up2", F.interpolate(feat, scale_factor=2, mode="nearest")))
  return conv("conv_last", lrelu(conv("conv_hr", feat)))


def main() -> None:
  os.makedirs(OUT, exist_ok=True)
  expected = {}
  tensors = _tensors()
  for name, legacy in (("tensors_zip.pth", False), ("tensors_legacy.pth", True)):
    torch.save(tensors, os.path.join(OUT, name), _use_new_zipfile_serialization=not legacy)
    for key, t in tensors.items():
      value = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
      expected[f"{name}/{key}"] = value
  state = _rrdbnet_state()
  torch.save({"params_ema": state, "params": state}, os.path.join(OUT, "rrdbnet_x4_nf8nb1gc4.pth"))
  x = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(2))
  with torch.no_grad():
    expected["rrdb/input"] = x.numpy()
    expected["rrdb/output"] = _rrdbnet_forward(state, x).numpy()
  np.savez_compressed(os.path.join(OUT, "expected.npz"), **expected)
  print(f"torch {torch.__version__}: wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
  main()
