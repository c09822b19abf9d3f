"""The web page of esrgan-serve in a real browser: Debian's Chromium driven by Playwright.

Runs `esrgan-serve` as a subprocess (as a user would) on 127.0.0.1 with a tiny exported model,
uploads a crop of a real photo through the page's file input with a small tile size (so the page
tiles it), and checks the result against the SavedModel called directly on the whole image.

Needs `pip install playwright` (the `test` extra) and Chromium at /usr/bin/chromium (`apt-get
install -y chromium`; Playwright's own browser download is not used). Under CI (CI=true) a
missing piece is a failure, never a skip.
"""

import base64
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import esrgan_tf
from esrgan_tf.export import saved_model as saved_model_lib
from esrgan_tf.models import RRDBNet
from esrgan_tf.serving import defaults, web
from esrgan_tf.serving import server as server_lib

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HOW_TO_ENABLE = ("the browser test needs Playwright and Chromium: `pip install playwright` and "
                 "`apt-get install -y chromium` (CI=true makes this a failure, not a skip)")
CROP = (120, 150)  # (H, W) of the photo crop; with tile 64 the page sends 3 × 3 tiles.
TILE = 64
FULL_PHOTO = os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png")  # 256 × 256.


def _sync_playwright():
  """Playwright's sync API, or a skip (locally) / failure (CI) naming what is missing."""
  missing = None
  try:
    # pylint: disable=g-import-not-at-top
    from playwright.sync_api import expect, sync_playwright
  except ImportError:
    missing = "the playwright package is not installed"
  if missing is None and not os.path.exists(CHROMIUM):
    missing = f"{CHROMIUM} is missing"
  if missing:
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(f"{missing}; {HOW_TO_ENABLE}")
    pytest.skip(f"{missing}; {HOW_TO_ENABLE}")
  return sync_playwright, expect


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def export_base(tmp_path_factory):
  keras.utils.set_random_seed(3)
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=4)
  model.build((None, None, None, 3))
  base = tmp_path_factory.mktemp("exports")
  saved_model_lib.export_saved_model(model, str(base), version=1)
  return str(base)


def _serve(export_base, *flags):
  """Starts esrgan-serve; returns (process, REST port, stderr lines)."""
  port = _free_port()
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.Popen(
      [sys.executable, "-m", "esrgan_tf.cli.serve", f"--model_base_path={export_base}",
       "--model_name=tiny", "--port=0", f"--rest_api_port={port}", "--host=127.0.0.1",
       "--file_system_poll_wait_seconds=0", *flags],
      stderr=subprocess.PIPE, text=True, env=env)
  lines = []
  threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")),
                   daemon=True).start()
  deadline = time.monotonic() + 120
  while not any("esrgan-serve ready" in line for line in lines):
    if proc.poll() is not None or time.monotonic() > deadline:
      proc.kill()
      raise AssertionError("esrgan-serve did not start:\n" + "".join(lines))
    time.sleep(0.1)
  return proc, port, lines


@pytest.fixture(scope="module")
def server(export_base):
  proc, port, lines = _serve(export_base)
  yield f"http://127.0.0.1:{port}", lines
  proc.terminate()
  proc.wait(timeout=60)


def _photo_crop(path):
  photo = Image.open(FULL_PHOTO).convert("RGB")
  h, w = CROP
  crop = photo.crop((80, 40, 80 + w, 40 + h))
  crop.save(path)
  return np.asarray(crop)


def _psnr(a, b):
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_static_files_and_headers(server):
  url, _ = server
  with urllib.request.urlopen(url + "/", timeout=30) as response:
    page = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
  assert 'content="tiny"' in page  # The served model's name is the page's default model.
  for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
    with urllib.request.urlopen(url + asset, timeout=30) as response:
      assert response.status == 200 and response.read()
  # Only the packaged files are served; anything else is still the API's 404.
  for path in ("/static/../web.py", "/static/nope.js", "/index.html"):
    with pytest.raises(urllib.error.HTTPError) as e:
      urllib.request.urlopen(url + path, timeout=30)
    assert e.value.code == 404
  assert web.handle("/static/app.js?v=1", "m")[1].startswith("text/javascript")
  # No third-party code or CDN reference: the page must work offline.
  for name in ("index.html", "app.js", "compare.js", "style.css"):
    assert not re.search(r"https?://", web.read_static(name).decode()), name


def test_web_ui_false_turns_the_page_off(export_base):
  srv = server_lib.ModelServer(export_base, "tiny", port=0, rest_api_port=0, host="127.0.0.1",
                               file_system_poll_wait_seconds=0, web_ui=False)
  with srv:
    url = f"http://127.0.0.1:{srv.rest_api_port}"
    with pytest.raises(urllib.error.HTTPError) as e:
      urllib.request.urlopen(url + "/", timeout=30)
    assert e.value.code == 404
    with urllib.request.urlopen(url + "/v1/models/tiny", timeout=30) as response:
      assert response.status == 200  # The API itself is unaffected.
  # The flag itself (--[no]web_ui, default on) is checked by tests/test_cli_help.py in a
  # subprocess: importing two command modules into one process would define their flags twice.


def test_upload_tiles_compares_and_downloads_in_chromium(server, export_base, tmp_path):
  sync_playwright, expect = _sync_playwright()
  url, _ = server
  photo_path = tmp_path / "chelsea_crop.png"
  photo = _photo_crop(photo_path)
  # Reference: the same SavedModel on the whole image in one call.
  signatures = tf.saved_model.load(os.path.join(export_base, "1")).signatures
  expected = signatures["serving_default"](images=tf.constant(photo[None]))["upscaled"][0].numpy()

  problems = []
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
      page = browser.new_page(viewport={"width": 1000, "height": 760}, accept_downloads=True)
      # A 429 (busy: the page backs off and retries) is logged by Chromium itself; not a problem.
      page.on("console", lambda m: problems.append(m.text) if m.type == "error" and
              "status of 429" not in m.text else None)
      page.on("pageerror", lambda e: problems.append(str(e)))
      page.goto(url + "/")
      page.locator("#version option").first.wait_for(state="attached")
      assert page.get_by_test_id("error").is_hidden()

      # Cancel: the whole 256² photo in 32-px tiles (11 × 11 requests), cancelled early.
      page.get_by_test_id("tile").fill("32")
      page.get_by_test_id("upload").set_input_files(FULL_PHOTO)
      expect(page.get_by_test_id("progress-text")).to_have_text(re.compile(r"tile [1-9]"))
      page.get_by_test_id("cancel").click()
      expect(page.get_by_test_id("progress-text")).to_have_text(re.compile("^cancelled"))
      done, total = map(int, re.search(r"cancelled after (\d+) of (\d+) tiles",
                                       page.get_by_test_id("progress-text").inner_text()).groups())
      assert total == 121 and 1 <= done < total
      assert page.get_by_test_id("download").is_hidden()
      assert page.get_by_test_id("error").is_hidden(), page.get_by_test_id("error").inner_text()

      page.get_by_test_id("tile").fill(str(TILE))

      page.get_by_test_id("upload").set_input_files(str(photo_path))
      page.get_by_test_id("download").wait_for(state="visible", timeout=120_000)
      result = page.get_by_test_id("result")
      natural = result.evaluate("img => img.decode().then(() => [img.naturalWidth, "
                                "img.naturalHeight])")
      assert natural == [CROP[1] * 4, CROP[0] * 4]
      facts = page.get_by_test_id("facts").inner_text()
      assert f"{CROP[1]}×{CROP[0]} → {CROP[1] * 4}×{CROP[0] * 4}" in facts
      assert "9 tiles" in facts
      assert page.get_by_test_id("error").is_hidden()

      link = page.get_by_test_id("download")
      assert link.get_attribute("download") == "chelsea_crop_x4.png"
      with page.expect_download() as info:
        link.click()
      saved = tmp_path / "downloaded.png"
      info.value.save_as(saved)
      got = np.asarray(Image.open(saved).convert("RGB"))
      assert got.shape == expected.shape
      # Tiles of 64 px with 16 px of context, cut in the middle of each overlap: nearly the
      # untiled answer (a random-init RRDBNet's edge effect reaches only a few pixels).
      assert _psnr(got, expected) > 40, _psnr(got, expected)
      # The "before" side is a bicubic upscale (checked against Pillow's, same Keys kernel
      # a = -0.5; Pillow rounds between its two passes, and treats borders differently).
      data_url = page.get_by_test_id("before").evaluate("c => c.toDataURL('image/png')")
      before = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
                          .convert("RGB")).astype(int)
      bicubic = np.asarray(Image.fromarray(photo).resize((CROP[1] * 4, CROP[0] * 4),
                                                         Image.Resampling.BICUBIC)).astype(int)
      assert before.shape == bicubic.shape
      assert np.abs(before - bicubic)[8:-8, 8:-8].max() <= 1
      page.get_by_test_id("split").fill("30")  # The slider moves the clip of the result.
      assert "30%" in result.evaluate("img => img.style.clipPath")
      page.screenshot(path=str(tmp_path / "web_ui.png"))

      # Drag and drop of several files: each is upscaled and listed with its own download.
      files = []
      for name, (top, left) in (("a.png", (0, 0)), ("b.png", (50, 60))):
        buffer = io.BytesIO()
        Image.fromarray(photo[top:top + 30, left:left + 40]).save(buffer, format="PNG")
        files.append([name, base64.b64encode(buffer.getvalue()).decode()])
      transfer = page.evaluate_handle("""files => {
        const transfer = new DataTransfer();
        for (const [name, b64] of files) {
          const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
          transfer.items.add(new File([bytes], name, {type: "image/png"}));
        }
        return transfer;
      }""", files)
      page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
      expect(page.locator("#results li a")).to_have_text(
          ["b_x4.png", "a_x4.png", "chelsea_crop_x4.png"])
      assert result.evaluate("img => img.decode().then(() => img.naturalWidth)") == 160

      page.get_by_test_id("upload").set_input_files(files=[{
          "name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n garbage"}])
      error = page.get_by_test_id("error")
      error.wait_for(state="visible", timeout=30_000)
      assert "broken.png" in error.inner_text() and "not an image" in error.inner_text()
      page.screenshot(path=str(tmp_path / "web_ui_error.png"))
    finally:
      browser.close()
  assert not problems, problems
  assert (tmp_path / "web_ui.png").stat().st_size > 0
  shot = os.environ.get("ESRGAN_TF_WEB_UI_SCREENSHOT")  # For refreshing docs/web_ui.png.
  if shot:
    shutil.copy(tmp_path / "web_ui.png", shot)


def test_server_limits_apply_to_the_page(export_base, tmp_path):
  """A tile over the server's --max_pixels is refused by the API, shown in plain words."""
  sync_playwright, _ = _sync_playwright()
  srv = server_lib.ModelServer(export_base, "tiny", port=0, rest_api_port=0, host="127.0.0.1",
                               file_system_poll_wait_seconds=0,
                               limits=defaults.ServerLimits(max_pixels=1024))  # 32² pixels.
  srv.start()
  port = srv.rest_api_port
  photo_path = tmp_path / "crop.png"
  _photo_crop(photo_path)
  problems = []
  try:
    with sync_playwright() as p:
      browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
      try:
        page = browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#version option").first.wait_for(state="attached")
        page.get_by_test_id("tile").fill("64")
        page.get_by_test_id("upload").set_input_files(str(photo_path))
        error = page.get_by_test_id("error")
        error.wait_for(state="visible", timeout=60_000)
        text = error.inner_text()
        assert "too large for its limits" in text and "smaller tile" in text, text
        assert "1024" in text  # The server's own message, with its limit, is included.
        assert page.get_by_test_id("download").is_hidden()
      finally:
        browser.close()
  finally:
    srv.stop(grace=5)
  # Chromium logs each refused request itself; nothing else may appear.
  assert all("status of 400" in message for message in problems), problems
