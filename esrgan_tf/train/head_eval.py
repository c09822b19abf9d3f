"""Evaluation of a multi-head run during training: every head at its own scale.

Each head is measured as a single model of its scale would be (`evaluation.metrics.evaluate` on
`data.load_validation_set(config.data, scale)`: LR = MATLAB bicubic ×1/s of each validation
photo, crop_border = the scale unless `train.eval_crop_border` says otherwise), through the
head's own traced function (`inference.engine.keras_engine(model, head=...)`: trunk + that head).
TensorBoard: `eval/<head>/psnr`, `eval/<head>/ssim` (`/niqe`), and an image grid per head. The
"best" checkpoint follows the default head's PSNR (the output single-output callers get).
"""

from __future__ import annotations

from absl import logging
import numpy as np
import tensorflow as tf

from esrgan_tf.inference import engine


def _grid(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
  """bicubic | SR | HR side by side (as the single-head evaluator's image)."""
  from esrgan_tf.images import imresize  # pylint: disable=g-import-not-at-top
  bicubic = imresize.imresize(np.asarray(lr, np.float32), hr.shape[0] // lr.shape[0]).numpy()
  return np.clip(np.concatenate([bicubic, sr, hr], axis=1), 0.0, 1.0)


class HeadEvaluator:
  """`train.loop.Evaluator`'s interface for a multi-head generator.

  Attributes:
    history: [{"step", "psnr", "ssim" (the default head's), "<head>/psnr", "<head>/ssim", ...}].
    bicubic_psnr: The default head's bicubic PSNR (after the first evaluation).
    bicubic: {head: bicubic mean PSNR}.
  """

  def __init__(self, config, state):
    from esrgan_tf.data import datasets  # pylint: disable=g-import-not-at-top
    self.config = config
    models = state.models
    model = models.ema_generator if config.train.eval_use_ema else models.generator
    self.default_head = model.default_head
    self.scales = dict(model.scales)
    pairs_by_scale = {s: datasets.load_validation_set(config.data, s)
                      for s in sorted(set(self.scales.values()))}
    self.pairs = {head: pairs_by_scale[s] for head, s in self.scales.items()}
    self.predict = {head: engine.keras_engine(model, head=head) for head in self.scales}
    self.bicubic = {}
    self.bicubic_psnr = None
    self.history = []

  def _evaluate(self, head: str) -> dict:
    from esrgan_tf.evaluation import metrics  # pylint: disable=g-import-not-at-top
    t = self.config.train
    crop = self.scales[head] if t.eval_crop_border < 0 else t.eval_crop_border
    return metrics.evaluate(self.predict[head], self.pairs[head], crop_border=crop,
                            y_channel=t.eval_y_channel, bicubic=head not in self.bicubic,
                            niqe=bool(t.get("eval_niqe", False)))

  def __call__(self, step: int, state, checkpoints, writer) -> None:
    """Every head's PSNR/SSIM at `step`, summaries and grids; a new best by the default head."""
    entry = {"step": step}
    for head in self.scales:
      ev = self._evaluate(head)
      if "bicubic_mean" in ev:
        self.bicubic[head] = ev["bicubic_mean"]["psnr"]
      entry.update({f"{head}/{k}": v for k, v in ev["mean"].items()})
      if head == self.default_head:
        entry.update(ev["mean"])
      logging.info("eval step %d head %s (x%d): PSNR %.3f dB SSIM %.4f (bicubic PSNR %.3f)",
                   step, head, self.scales[head], ev["mean"]["psnr"], ev["mean"]["ssim"],
                   self.bicubic[head])
      with writer.as_default(step=step):
        for name, value in ev["mean"].items():
          tf.summary.scalar(f"eval/{head}/{name}", value)
        name, lr, hr = self.pairs[head][0]
        grid = _grid(lr, self.predict[head](lr[None])[0], hr)
        tf.summary.image(f"eval/{head}/bicubic|SR|HR/{name}", grid[None])
    self.bicubic_psnr = self.bicubic[self.default_head]
    self.history.append(entry)
    if entry["psnr"] > state.best_psnr.numpy():
      state.best_psnr.assign(entry["psnr"])
      checkpoints.save_best(step)
