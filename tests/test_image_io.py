"""Tests for esrgan_tf.images.image_io: every fixture image is generated in tmp_path."""

import logging
import os
import struct

from image_fixtures import header_only_png, pil_bytes, raw_png, tiff16_big_endian
import numpy as np
from PIL import Image, ImageFile
import pytest

from esrgan_tf.images import image_io as image_io_lib
from esrgan_tf.images.image_io import ImageError
from esrgan_tf.inference import batch

RNG = np.random.default_rng(1234)


def nearest2(x):
  """Independent ×2 nearest-neighbour 'model'."""
  return np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)


def up2(a):
  return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)


def write(tmp_path, name, data):
  path = tmp_path / name
  path.write_bytes(data)
  return str(path)


def roundtrip(tmp_path, src, out_name, **kwargs):
  img = image_io_lib.read_image(src)
  out = batch.upscale_loaded(img, nearest2, 2, **kwargs)
  dst = str(tmp_path / out_name)
  image_io_lib.write_image(dst, out)
  return img, dst


def listing(tmp_path):
  return sorted(os.listdir(tmp_path))


def test_default_limit_is_pillows():
  assert image_io_lib.BOMB_MAX_PIXELS == Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3


# ----------------------------------------------------------------------------- round trips


def test_rgb_png_roundtrip(tmp_path):
  a = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
  img, dst = roundtrip(tmp_path, write(tmp_path, "a.png", pil_bytes(Image.fromarray(a), "PNG")),
                       "b.png")
  assert (img.mode, img.format, img.bit_depth, img.alpha) == ("RGB", "PNG", 8, None)
  assert img.color.dtype == np.float32 and img.color.shape == (5, 7, 3)
  with Image.open(dst) as out:
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), up2(a))
  assert listing(tmp_path) == ["a.png", "b.png"]


def test_gray_l_written_back_as_l(tmp_path):
  a = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
  img, dst = roundtrip(tmp_path, write(tmp_path, "g.png", pil_bytes(Image.fromarray(a), "PNG")),
                       "g2.png")
  assert img.grayscale and img.mode == "L"
  np.testing.assert_array_equal(img.color[..., 0], img.color[..., 2])
  with Image.open(dst) as out:
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), up2(a))


def test_la_alpha_bicubic_constant_stays_constant(tmp_path):
  a = np.stack([RNG.integers(0, 256, (6, 5)), np.full((6, 5), 77)], -1).astype(np.uint8)
  img, dst = roundtrip(tmp_path, write(tmp_path, "la.png", pil_bytes(Image.fromarray(a, "LA"),
                                                                      "PNG")), "la2.png")
  assert img.mode == "LA" and img.alpha.shape == (6, 5)
  with Image.open(dst) as out:
    assert out.mode == "LA"
    got = np.asarray(out)
  np.testing.assert_array_equal(got[..., 0], up2(a[..., 0]))
  np.testing.assert_array_equal(got[..., 1], np.full((12, 10), 77))


def test_rgba_alpha_model_and_bicubic(tmp_path):
  a = RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8)
  src = write(tmp_path, "rgba.png", pil_bytes(Image.fromarray(a, "RGBA"), "PNG"))
  _, dst = roundtrip(tmp_path, src, "model.png", alpha="model")
  with Image.open(dst) as out:
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out), up2(a))  # nearest 'model' on alpha too.
  img = image_io_lib.read_image(src)
  bicubic = batch.upscale_loaded(img, nearest2, 2).alpha
  ref = Image.fromarray(a[..., 3].astype(np.float32) / 255).resize((10, 8), Image.BICUBIC)
  np.testing.assert_allclose(bicubic, np.clip(np.asarray(ref), 0, 1), atol=1e-6)
  assert bicubic.min() >= 0 and bicubic.max() <= 1
  with pytest.raises(ValueError, match="alpha"):
    batch.upscale_loaded(img, nearest2, 2, alpha="nearest")


def test_palette_without_and_with_transparency(tmp_path):
  palette = RNG.integers(0, 256, 3 * 256, dtype=np.uint8).tolist()
  idx = RNG.integers(0, 4, (5, 6), dtype=np.uint8)
  p = Image.fromarray(idx, "P")
  p.putpalette(palette)
  img, dst = roundtrip(tmp_path, write(tmp_path, "p.png", pil_bytes(p, "PNG")), "p2.png")
  expect = np.array(palette, np.uint8).reshape(256, 3)[idx]
  assert img.mode == "P" and img.alpha is None
  with Image.open(dst) as out:
    assert out.mode == "RGB"  # Written as RGB, not re-quantised.
    np.testing.assert_array_equal(np.asarray(out), up2(expect))
  img, dst = roundtrip(tmp_path, write(tmp_path, "pt.png", pil_bytes(p, "PNG", transparency=2)),
                       "pt2.png", alpha="model")
  np.testing.assert_array_equal(img.alpha, (idx != 2).astype(np.float32))
  with Image.open(dst) as out:
    assert out.mode == "RGBA"
    got = np.asarray(out)
  np.testing.assert_array_equal(got[..., :3], up2(expect))
  np.testing.assert_array_equal(got[..., 3], up2(np.where(idx == 2, 0, 255)))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
  # CMYK (0, 0, 0, 0) is white and (0, 255, 255, 0) red with the naive conversion (no ICC).
  cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))
  cmyk.paste((0, 255, 255, 0), (0, 0, 4, 8))
  img, dst = roundtrip(tmp_path, write(tmp_path, "c.jpg", pil_bytes(cmyk, "JPEG", quality=100)),
                       "c2.png")
  assert img.mode == "CMYK" and img.format == "JPEG" and img.icc_profile is None
  np.testing.assert_allclose(img.color[:, :2], np.broadcast_to([1, 0, 0], (8, 2, 3)), atol=0.03)
  np.testing.assert_allclose(img.color[:, 6:], 1, atol=0.03)
  with Image.open(dst) as out:
    assert out.mode == "RGB" and out.size == (16, 16)


def test_16bit_gray_png_exact(tmp_path):
  a = (RNG.integers(0, 65536, (5, 4))).astype(np.uint16)
  a[0, :4] = [1, 255, 256, 65535]  # values whose low byte matters
  img, dst = roundtrip(tmp_path, write(tmp_path, "g16.png", pil_bytes(Image.fromarray(a), "PNG")),
                       "g16b.png")
  assert (img.mode, img.bit_depth, img.grayscale) == ("I;16", 16, True)
  with Image.open(dst) as out:
    assert out.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(out), up2(a))
  _, dst = roundtrip(tmp_path, dst, "g16c.tif")
  with Image.open(dst) as out:
    assert out.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(out), up2(up2(a)))


@pytest.mark.parametrize("ext", ["png", "tif"])
@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16bit_color_png_exact(tmp_path, channels, ext):
  a = RNG.integers(0, 65536, (3, 5, channels)).astype(np.uint16)
  a[0, 0] = 1  # low byte only
  img, dst = roundtrip(tmp_path, write(tmp_path, "c16.png", raw_png(a)), f"c16b.{ext}",
                       alpha="model")
  assert img.bit_depth == 16 and img.grayscale == (channels == 2)
  back = image_io_lib.read_image(dst)
  assert back.bit_depth == 16
  planes = [back.color[..., :1]] if channels == 2 else [back.color]
  got = np.concatenate(planes + ([back.alpha[..., None]] if back.alpha is not None else []), -1)
  np.testing.assert_array_equal(image_io_lib.from_float(got, 16), up2(a))
  if ext == "png":
    with open(dst, "rb") as f:  # IHDR: 16 bits, colour type gray+alpha / RGB / RGBA.
      assert struct.unpack(">BB", f.read(26)[24:26]) == (16, {2: 4, 3: 2, 4: 6}[channels])
  elif channels == 2:  # No 16-bit gray+alpha TIFF that Pillow reads: written as 16-bit RGBA.
    assert back.alpha is not None
    np.testing.assert_array_equal(back.color[..., 0], back.color[..., 2])


def test_16bit_rgb_tiff_big_endian_exact(tmp_path):
  a = RNG.integers(0, 65536, (4, 3, 3)).astype(np.uint16)
  img, dst = roundtrip(tmp_path, write(tmp_path, "t.tif", tiff16_big_endian(a)), "t2.tiff")
  assert (img.format, img.bit_depth) == ("TIFF", 16)
  np.testing.assert_array_equal(image_io_lib.from_float(img.color, 16), a)
  back = image_io_lib.read_image(dst)
  assert back.bit_depth == 16
  np.testing.assert_array_equal(image_io_lib.from_float(back.color, 16), up2(a))


def test_16bit_to_jpeg_becomes_8bit_with_warning(tmp_path, caplog):
  a = np.full((4, 4), 65535, np.uint16)
  img = image_io_lib.read_image(write(tmp_path, "g16.png", pil_bytes(Image.fromarray(a), "PNG")))
  with caplog.at_level(logging.WARNING):
    image_io_lib.write_image(tmp_path / "g.jpg", img)
  assert "8 bit" in caplog.text
  with Image.open(tmp_path / "g.jpg") as out:
    assert out.mode == "L" and np.asarray(out).min() >= 250


def test_alpha_to_jpeg_composited_over_white(tmp_path, caplog):
  a = np.zeros((4, 4, 4), np.uint8)  # fully transparent black -> white
  img = image_io_lib.read_image(
      write(tmp_path, "t.png", pil_bytes(Image.fromarray(a, "RGBA"), "PNG")))
  with caplog.at_level(logging.WARNING):
    image_io_lib.write_image(tmp_path / "t.jpg", img)
    image_io_lib.write_image(tmp_path / "t.bmp", img)
  assert "alpha" in caplog.text
  for name in ("t.jpg", "t.bmp"):
    with Image.open(tmp_path / name) as out:
      assert out.mode == "RGB" and np.asarray(out).min() >= 250


def test_webp_gray_written_as_rgb(tmp_path):
  a = np.full((4, 4), 100, np.uint8)
  img = image_io_lib.read_image(write(tmp_path, "g.png", pil_bytes(Image.fromarray(a), "PNG")))
  image_io_lib.write_image(tmp_path / "g.webp", img, quality=100)
  back = image_io_lib.read_image(tmp_path / "g.webp")
  assert back.format == "WEBP" and back.mode == "RGB"
  np.testing.assert_allclose(back.color, 100 / 255, atol=3 / 255)


# ----------------------------------------------------------------------------- EXIF


def _exif(orientation):
  exif = Image.Exif()
  exif[0x0112] = orientation
  return exif.tobytes()


def test_exif_orientation_applied(tmp_path):
  a = RNG.integers(0, 256, (2, 4, 3), dtype=np.uint8)  # 2 high, 4 wide as stored
  src = write(tmp_path, "o.png", pil_bytes(Image.fromarray(a), "PNG", exif=_exif(6)))
  img = image_io_lib.read_image(src)
  # Orientation 6: the stored image is shown rotated 90° clockwise.
  np.testing.assert_array_equal(image_io_lib.from_float(img.color), np.rot90(a, k=-1))
  jpg = write(tmp_path, "o.jpg", pil_bytes(Image.fromarray(np.zeros((16, 32, 3), np.uint8)),
                                           "JPEG", exif=_exif(6)))
  assert image_io_lib.read_image(jpg).size == (16, 32)
  plain = write(tmp_path, "p.png", pil_bytes(Image.fromarray(a), "PNG", exif=_exif(1)))
  np.testing.assert_array_equal(image_io_lib.from_float(image_io_lib.read_image(plain).color), a)


def test_exif_orientation_on_16bit_color(tmp_path):
  a = RNG.integers(0, 65536, (2, 3, 3)).astype(np.uint16)
  data = raw_png(a)
  exif = _exif(8)  # 90° counter-clockwise; eXIf chunk goes before IEND.
  chunk = struct.pack(">I", len(exif)) + b"eXIf" + exif
  import zlib  # pylint: disable=import-outside-toplevel
  chunk += struct.pack(">I", zlib.crc32(b"eXIf" + exif))
  data = data[:-12] + chunk + data[-12:]
  img = image_io_lib.decode_image_bytes(data)
  np.testing.assert_array_equal(image_io_lib.from_float(img.color, 16), np.rot90(a, k=1))


# ----------------------------------------------------------------------------- bad input


def test_bomb_refused_from_header_before_decoding(tmp_path, monkeypatch):
  src = write(tmp_path, "bomb.png", header_only_png(30000, 30000))

  def no_decode(self):
    raise AssertionError("pixel data decoded")

  monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
  with pytest.raises(ImageError) as e:
    image_io_lib.read_image(src)
  assert str(e.value) == (f"{src}: header declares 30000×30000 = 900,000,000 pixels, over the "
                          "limit of 89,478,485 (--max_pixels)")


def test_max_pixels_configurable_and_pillow_global_untouched(tmp_path):
  src = write(tmp_path, "a.png", pil_bytes(Image.new("RGB", (20, 20)), "PNG"))
  with pytest.raises(ImageError, match="over the limit of 399"):
    image_io_lib.read_image(src, max_pixels=399)
  assert image_io_lib.read_image(src, max_pixels=400).size == (20, 20)
  # Above Pillow's own 2 × MAX_IMAGE_PIXELS error threshold: our limit decides, not Pillow's, and
  # the decoder then reports the missing data.
  bomb = write(tmp_path, "bomb.png", header_only_png(30000, 30000))
  with pytest.raises(ImageError) as e:
    image_io_lib.read_image(bomb, max_pixels=None)
  assert "truncated" in str(e.value) or "corrupt PNG" in str(e.value)
  assert Image.MAX_IMAGE_PIXELS == 89_478_485


def test_corrupt_png(tmp_path):
  data = bytearray(pil_bytes(Image.fromarray(RNG.integers(0, 256, (16, 16, 3), np.uint8)), "PNG"))
  start = data.index(b"IDAT") + 6
  data[start:start + 20] = bytes(b ^ 0xFF for b in data[start:start + 20])
  src = write(tmp_path, "bad.png", bytes(data))
  with pytest.raises(ImageError, match=r"^.*bad\.png: corrupt PNG data"):
    image_io_lib.read_image(src)


def test_truncated_jpeg_and_png(tmp_path):
  photo = RNG.integers(0, 256, (64, 64, 3), np.uint8)
  for fmt, name in (("JPEG", "cut.jpg"), ("PNG", "cut.png")):
    data = pil_bytes(Image.fromarray(photo), fmt)
    src = write(tmp_path, name, data[:len(data) // 2])
    with pytest.raises(ImageError, match=rf"{name}: truncated file"):
      image_io_lib.read_image(src)


@pytest.mark.parametrize("name,data,cause", [
    ("empty.png", b"", "empty file (0 bytes)"),
    ("notes.png", b"hello, I am a text file\n" * 4, "not an image"),
    ("zero.png", header_only_png(0, 7), "zero-sized image (0×7)"),
])
def test_bad_files(tmp_path, name, data, cause):
  src = write(tmp_path, name, data)
  with pytest.raises(ImageError) as e:
    image_io_lib.read_image(src)
  assert str(e.value).startswith(f"{src}: {cause}")
  with pytest.raises(ImageError) as e:
    image_io_lib.decode_image_bytes(data)
  assert str(e.value).startswith(f"<bytes>: {cause}")


def test_missing_file_and_directory(tmp_path):
  with pytest.raises(ImageError, match="no such file"):
    image_io_lib.read_image(tmp_path / "nope.png")
  with pytest.raises(ImageError, match="is a directory"):
    image_io_lib.read_image(tmp_path)


@pytest.mark.parametrize("fmt", ["GIF", "ICO", "PPM"])
def test_unsupported_formats_named(tmp_path, fmt):
  frames = [Image.fromarray(RNG.integers(0, 256, (8, 8, 3), np.uint8)) for _ in range(2)]
  kwargs = dict(save_all=True, append_images=frames[1:]) if fmt == "GIF" else {}
  src = write(tmp_path, "x.png", pil_bytes(frames[0], fmt, **kwargs))  # misleading extension
  with pytest.raises(ImageError) as e:
    image_io_lib.read_image(src)
  assert str(e.value) == f"{src}: unsupported format {fmt} (allowed: PNG, JPEG, WebP, BMP, TIFF)"


def test_check_header_validator():
  image_io_lib.check_header("a.tif", "TIFF", (3, 2), 6)
  for size in [(0, 5), (5, 0), (0, 0)]:
    with pytest.raises(ImageError, match=r"^a\.tif: zero-sized image"):
      image_io_lib.check_header("a.tif", "TIFF", size, None)
  with pytest.raises(ImageError, match="over the limit of 5"):
    image_io_lib.check_header("a.tif", "TIFF", (3, 2), 5)
  with pytest.raises(ImageError, match="unsupported format GIF"):
    image_io_lib.check_header("a.gif", "GIF", (3, 2), None)


def test_multi_frame_tiff(tmp_path, caplog):
  pages = [Image.fromarray(np.full((4, 6, 3), v, np.uint8)) for v in (10, 200, 30)]
  src = write(tmp_path, "pages.tif", pil_bytes(pages[0], "TIFF", save_all=True,
                                              append_images=pages[1:]))
  with pytest.raises(ImageError) as e:
    image_io_lib.read_image(src)
  assert str(e.value).startswith(f"{src}: 3 frames") and 'multi_frame="first"' in str(e.value)
  with caplog.at_level(logging.WARNING):
    img = image_io_lib.read_image(src, multi_frame="first")
  assert "first frame only" in caplog.text
  np.testing.assert_array_equal(image_io_lib.from_float(img.color), np.full((4, 6, 3), 10))
  with pytest.raises(ValueError,
                     match=r"multi_frame must be one of \('error', 'first'\), got 'all'"):
    image_io_lib.read_image(src, multi_frame="all")


def test_animated_webp_refused_by_default(tmp_path):
  frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
  src = write(tmp_path, "anim.webp", pil_bytes(frames[0], "WEBP", save_all=True,
                                               append_images=frames[1:]))
  with pytest.raises(ImageError, match="2 frames"):
    image_io_lib.read_image(src)


# ----------------------------------------------------------------------------- writing


def _small_image(tmp_path):
  a = RNG.integers(0, 256, (3, 3, 3), np.uint8)
  return image_io_lib.read_image(write(tmp_path, "src.png", pil_bytes(Image.fromarray(a), "PNG")))


def test_write_never_overwrites_without_flag(tmp_path):
  img = _small_image(tmp_path)
  target = tmp_path / "out.png"
  target.write_bytes(b"precious")
  with pytest.raises(ImageError) as e:
    image_io_lib.write_image(target, img)
  assert str(e.value) == f"{target}: exists; pass --overwrite to replace it"
  assert target.read_bytes() == b"precious"
  assert listing(tmp_path) == ["out.png", "src.png"]
  image_io_lib.write_image(target, img, overwrite=True)
  np.testing.assert_array_equal(image_io_lib.read_image(target).color, img.color)
  assert listing(tmp_path) == ["out.png", "src.png"]


def test_write_no_clobber_when_file_appears_during_encoding(tmp_path, monkeypatch):
  img = _small_image(tmp_path)
  target = tmp_path / "race.png"
  real_encode = image_io_lib._encode  # pylint: disable=protected-access

  def encode_then_race(fp, *args):
    real_encode(fp, *args)
    target.write_bytes(b"written by someone else")

  monkeypatch.setattr(image_io_lib, "_encode", encode_then_race)
  with pytest.raises(ImageError, match="exists; pass --overwrite"):
    image_io_lib.write_image(target, img)
  assert target.read_bytes() == b"written by someone else"
  assert listing(tmp_path) == ["race.png", "src.png"]


def test_write_failure_leaves_nothing(tmp_path, monkeypatch):
  img = _small_image(tmp_path)

  def broken_save(self, *args, **kwargs):
    args[0].write(b"half a file")
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(Image.Image, "save", broken_save)
  with pytest.raises(ImageError, match=r"out\.png: cannot write \(No space left on device\)"):
    image_io_lib.write_image(tmp_path / "out.png", img)
  assert listing(tmp_path) == ["src.png"]


def test_write_bad_format_and_directory(tmp_path):
  img = _small_image(tmp_path)
  with pytest.raises(ImageError, match="unsupported output format GIF"):
    image_io_lib.write_image(tmp_path / "x.png", img, format="GIF")
  with pytest.raises(ImageError, match="from the extension '.gif'"):
    image_io_lib.write_image(tmp_path / "x.gif", img)
  with pytest.raises(ImageError, match="does not exist"):
    image_io_lib.write_image(tmp_path / "nodir" / "x.png", img)
  assert listing(tmp_path) == ["src.png"]
  image_io_lib.write_image(tmp_path / "x.out", img, format="jpg")
  with Image.open(tmp_path / "x.out") as out:
    assert out.format == "JPEG"


def test_written_file_has_umask_permissions(tmp_path):
  img = _small_image(tmp_path)
  umask = os.umask(0o022)
  os.umask(umask)
  image_io_lib.write_image(tmp_path / "p.png", img)
  assert os.stat(tmp_path / "p.png").st_mode & 0o777 == 0o666 & ~umask


def test_icc_profile_preserved(tmp_path):
  from PIL import ImageCms  # pylint: disable=import-outside-toplevel
  icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
  src = write(tmp_path, "icc.png", pil_bytes(Image.new("RGB", (4, 4)), "PNG", icc_profile=icc))
  img = image_io_lib.read_image(src)
  assert img.icc_profile == icc
  for name in ("o.png", "o.jpg", "o.tif", "o.webp"):
    image_io_lib.write_image(tmp_path / name, img)
    with Image.open(tmp_path / name) as out:
      assert out.info.get("icc_profile") == icc, name
  # 16-bit colour goes through the package's own PNG/TIFF encoders.
  deep = batch.upscale_loaded(dataclass_replace(img, bit_depth=16), nearest2, 2)
  for name in ("d.png", "d.tif"):
    image_io_lib.write_image(tmp_path / name, deep)
    assert image_io_lib.read_image(tmp_path / name).icc_profile == icc


def dataclass_replace(img, **kw):
  import dataclasses  # pylint: disable=import-outside-toplevel
  return dataclasses.replace(img, **kw)


# ----------------------------------------------------------------------------- in memory


def test_write_onto_directory_refused(tmp_path):
  img = _small_image(tmp_path)
  (tmp_path / "d.png").mkdir()
  with pytest.raises(ImageError, match=r"d\.png: is a directory"):
    image_io_lib.write_image(tmp_path / "d.png", img, overwrite=True)


def test_16bit_rgb_tiff_through_libtiff_decoder(tmp_path, monkeypatch):
  from PIL import TiffImagePlugin  # pylint: disable=import-outside-toplevel
  # Compressed TIFFs are decoded by libtiff (native-endian rawmode "RGB;16N"); force that path.
  monkeypatch.setattr(TiffImagePlugin, "READ_LIBTIFF", True)
  a = RNG.integers(0, 65536, (3, 4, 3)).astype(np.uint16)
  img = image_io_lib.read_image(write(tmp_path, "t.tif", tiff16_big_endian(a)))
  assert img.bit_depth == 16
  np.testing.assert_array_equal(image_io_lib.from_float(img.color, 16), a)


def test_mpo_jpeg_reads_primary_image(tmp_path):
  frames = [Image.new("RGB", (8, 8), c) for c in ("white", "black")]
  src = write(tmp_path, "cam.jpg", pil_bytes(frames[0], "MPO", save_all=True,
                                             append_images=frames[1:]))
  with Image.open(src) as probe:
    assert probe.format == "MPO" and probe.n_frames == 2
  img = image_io_lib.read_image(src)
  assert img.format == "JPEG" and img.color.min() > 0.95


def test_cmyk_with_unusable_icc_falls_back(tmp_path, caplog):
  bogus = bytes(16) + b"CMYK" + bytes(108)  # header claims a CMYK profile; body is garbage
  src = write(tmp_path, "c.jpg", pil_bytes(Image.new("CMYK", (4, 4), (0, 0, 0, 0)), "JPEG",
                                           icc_profile=bogus))
  with caplog.at_level(logging.WARNING):
    img = image_io_lib.read_image(src)
  assert "naive" in caplog.text and img.icc_profile is None
  np.testing.assert_allclose(img.color, 1, atol=0.02)


def test_real_photo_roundtrip(tmp_path):
  from esrgan_tf import SAMPLES_DIR  # pylint: disable=import-outside-toplevel
  src = os.path.join(SAMPLES_DIR, "val", "chelsea.png")
  img = image_io_lib.read_image(src)
  assert img.size == (256, 256) and img.mode == "RGB"
  out = batch.upscale_loaded(img, nearest2, 2)
  image_io_lib.write_image(tmp_path / "c.png", out)
  with Image.open(src) as ref, Image.open(tmp_path / "c.png") as got:
    np.testing.assert_array_equal(np.asarray(got), up2(np.asarray(ref.convert("RGB"))))
