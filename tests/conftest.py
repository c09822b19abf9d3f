"""Shared test fixtures.

  * `tiny_generator`: builds the tiny RRDBNet (nf=8, nb=1, gc=4) the tests use, seeded.
  * `image_files`: hand-made image files (tests/image_fixtures.py: PNG with filter 1, big-endian
    16-bit TIFF, header-only PNG bombs), independent of esrgan_tf's own encoders.
  * `checkpoint_files`: torch-format checkpoints without torch (tests/weights_fixtures.py).

The two helper modules stay importable by name for module-level `pytest.mark.parametrize`
lists, which cannot take fixtures; inside tests prefer the fixtures.
"""

import image_fixtures
import pytest
import weights_fixtures


@pytest.fixture
def tiny_generator():
  """A factory: `tiny_generator(scale=2, upsampler="nearest", seed=0)` → a built RRDBNet."""
  import keras  # pylint: disable=g-import-not-at-top  # only the tests that ask load Keras.

  from esrgan_tf.models import RRDBNet  # pylint: disable=g-import-not-at-top

  def make(scale: int = 2, upsampler: str = "nearest", seed: int = 0):
    keras.utils.set_random_seed(seed)
    model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=scale,
                    upsampler=upsampler)
    model.build((None, None, None, 3))
    return model

  return make


@pytest.fixture(scope="session")
def tiny_keras_model(tmp_path_factory):
  """make(scale) → path of a saved tiny random RRDBNet (.keras), one file per scale."""
  made = {}

  def make(scale: int) -> str:
    if scale not in made:
      import keras  # pylint: disable=g-import-not-at-top

      from esrgan_tf.models import RRDBNet  # pylint: disable=g-import-not-at-top
      keras.utils.set_random_seed(0)
      model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=scale)
      model.build((None, None, None, 3))
      made[scale] = str(tmp_path_factory.mktemp(f"model_x{scale}") / "tiny.keras")
      model.save(made[scale])
    return made[scale]

  return make


@pytest.fixture
def image_files():
  """tests/image_fixtures.py: raw_png, header_only_png, tiff16_big_endian, pil_bytes."""
  return image_fixtures


@pytest.fixture
def checkpoint_files():
  """tests/weights_fixtures.py: random_state, write_zip, legacy_bytes, write_ncnn, ..."""
  return weights_fixtures
