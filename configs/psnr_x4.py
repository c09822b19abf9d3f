"""PSNR-oriented RRDBNet ×4 (ESRGAN §4.1, the generator before the GAN phase).

Paper setting: RRDBNet nf=64 nb=23 gc=32, 128×128 HR crops (32×32 LR), batch 16, L1 loss,
Adam lr 2e-4 β=(0.9, 0.99) halved every 200k of 1M steps, EMA 0.999, DIV2K+Flickr2K HR.

Command:
  esrgan-train --config=configs/psnr_x4.py --workdir=runs/psnr_x4 \
      --config.data.train_dir=DIV2K_train_HR --config.data.val_dir=Set5/HR
  (`--config=configs/psnr_x4.py:smoke`: a tiny net for 20 steps on the bundled samples, ~1 min
  on a CPU, to check an installation.)
Expected time: about a week on one V100-class GPU for 1M steps (the paper's budget); use
  `--config.train.precision=mixed_bfloat16` (TPU/Ampere+) or mixed_float16 (GPU) to speed it up.
Expected result: Set5 ×4 ≈ 32.7 dB PSNR on Y, crop_border 4 (the paper's RRDB_PSNR model:
  32.73 dB; bicubic: 28.42 dB). eval/psnr in TensorBoard tracks it on `data.val_dir`.
"""

import ml_collections

import esrgan_tf


def get_config(variant: str = ""):
  """The config; `variant` "smoke" shrinks it (tiny net, bundled samples, 20 steps)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.phase = "psnr"
  # RRDBNet kwargs. "nearest" is the upsampler layout of the official ESRGAN weights.
  c.model = dict(in_channels=3, out_channels=3, num_features=64, num_blocks=23,
                 growth_channels=32, scale=4, upsampler="nearest")
  c.data = dict(train_dir="", train_lr_dir="", tfrecords="", val_dir="", val_lr_dir="",
                gt_size=128, batch_size=16, augment=True, cache=True, shuffle_buffer=1000,
                val_max_images=0)
  # Colour augmentation of the (LR, HR) pairs, bicubic pipeline only (`esrgan_tf.data.augment.
  # color_augment_pairs`, applied per batch with the stateless seed (config.seed·1000 + input
  # pipeline + 1, batch index)). `color`: random RGB permutation, hue rotation up to `max_hue`
  # radians, saturation scale in `saturation`; "flat" pairs: with probability `contrast_prob` a
  # contrast cut to c in [min_contrast, 1] towards a random colour; "grain" pairs: with
  # probability `grain_prob`, HR grain of σ in [0, grain] (and its bicubic downscale in the LR).
  # Off here: the paper trains on DIV2K's 800 photos, whose colours need no augmentation, and
  # BasicSR's paired dataset has none.
  c.data.color_augment = False
  c.data.color = dict(permute=True, max_hue=0.0, saturation=(1.0, 1.0), min_contrast=1.0,
                      contrast_prob=0.0, grain=0.0, grain_prob=0.0)
  # Used by the gan phase only (kept here so every config has the same keys).
  c.discriminator = dict(type="vgg", num_features=64, num_stages=4, spectral_norm=False)
  # ESRGAN: VGG19 conv5_4 before activation, weight 1. weights: "torchvision" (torchvision's
  # vgg19-dcbb9e9d.pth with ImageNet mean/std, as BasicSR; downloaded once through
  # weights.registry), "imagenet" (Keras' caffe VGG19, downloads), "imagenet_if_cached" (use
  # ~/.keras/models if present, else drop the term with a warning), a weights-file path (a
  # torchvision .pth, or Keras VGG19 weights).
  c.perceptual = dict(layers={"block5_conv4": 1.0}, weights="imagenet", weight=1.0)
  # ragan_form: "basicsr" (each D term detaches the other side's batch mean, as BasicSR's
  # ESRGANModel does, and D runs five times per step as there) or "paper" (ESRGAN eq. 1:
  # differentiated through both means). BasicSR's form: these configs follow its recipe.
  c.loss = dict(pixel_criterion="l1", pixel_weight=1.0, gan_weight=5e-3, ragan_form="basicsr")
  # epsilon_form "torch": Adam adds ε after the bias correction, as torch.optim.Adam (which
  # BasicSR uses) does; "keras": before it (Keras/TF's ε-hat form). esrgan_tf/train/optimizer.py.
  c.optim = dict(g_lr=2e-4, d_lr=1e-4, milestones=(200_000, 400_000, 600_000, 800_000),
                 gamma=0.5, beta1=0.9, beta2=0.99, epsilon_form="torch")
  c.train = dict(
      steps=1_000_000,
      strategy="auto",           # auto | default | mirrored | multi_worker | tpu
      tpu_address="",
      precision="float32",       # float32 | mixed_float16 | mixed_bfloat16
      jit_compile=False,         # XLA for the per-replica step
      steps_per_loop=100,        # steps per tf.function call (host syncs once per call)
      log_every=100,
      eval_every=5_000,          # 0 = never
      checkpoint_every=5_000,
      keep_checkpoints=3,
      ema_decay=0.999,
      eval_use_ema=True,
      eval_crop_border=-1,       # -1 = the scale (BasicSR convention)
      eval_y_channel=True,
      eval_niqe=True,            # NIQE of the SR (no reference; ~0.5 s per 256² image, CPU)
      checkpoint_data_iterator=True,
      progress=True,
      init_from="",              # G/EMA weights: workdir, .keras, .pth/.safetensors
      resume="",                 # full state: checkpoint prefix or another workdir
      init_discriminator_from="",  # gan phase: D weights from a BasicSR netD .pth/.safetensors
  )
  if variant == "smoke":
    apply_smoke(c)
  elif variant:
    raise ValueError(f"unknown config variant {variant!r} (known: smoke)")
  return c


def apply_smoke(c):
  """Shrinks a config in place to a tiny CPU run on the bundled samples."""
  c.model.num_features, c.model.num_blocks, c.model.growth_channels = 8, 1, 4
  c.data.train_dir = f"{esrgan_tf.SAMPLES_DIR}/train"
  c.data.val_dir = f"{esrgan_tf.SAMPLES_DIR}/val"
  c.data.gt_size, c.data.batch_size = 32, 4
  c.discriminator.num_features = 8
  c.perceptual.weights = "imagenet_if_cached"
  c.train.update(steps=20, steps_per_loop=10, log_every=10, eval_every=20, checkpoint_every=20,
                 ema_decay=0.9)
  c.optim.milestones = (10,)
