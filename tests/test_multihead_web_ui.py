"""The web page with a multi-head export, in Debian's Chromium driven by Playwright: it offers
the heads, and each runs through its own `upscale_<head>_bytes` signature.

Same requirements as tests/test_web_ui.py (whose helpers this uses): Playwright and
/usr/bin/chromium; under CI (CI=true) a missing piece is a failure, never a skip.
"""

import os
import re

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import test_web_ui as web_ui  # the browser helpers (a module object: pytest collects nothing)

from esrgan_tf.export import saved_model as saved_model_lib
from esrgan_tf.models import MultiHeadRRDBNet
from esrgan_tf.serving import server as server_lib

CROP = (30, 40)  # (H, W): one tile at the page's default tile size.


@pytest.fixture(scope="module")
def export_base(tmp_path_factory):
  keras.utils.set_random_seed(5)
  model = MultiHeadRRDBNet(num_features=8, num_blocks=1, growth_channels=4,
                           heads=[{"name": "x2", "scale": 2}, {"name": "x4", "scale": 4}],
                           default_head="x4")
  model.build()
  base = tmp_path_factory.mktemp("multi_exports")
  saved_model_lib.export_saved_model(model, str(base), version=1)
  return str(base)


def test_page_offers_the_heads_and_runs_the_chosen_one(export_base, tmp_path):
  sync_playwright, expect = web_ui._sync_playwright()  # pylint: disable=protected-access
  photo = Image.open(web_ui.FULL_PHOTO).convert("RGB").crop((60, 50, 60 + CROP[1], 50 + CROP[0]))
  photo_path = tmp_path / "cat.png"
  photo.save(photo_path)
  signatures = tf.saved_model.load(os.path.join(export_base, "1")).signatures
  pixels = tf.constant(np.asarray(photo)[None])
  expected = {head: signatures[f"upscale_{head}"](images=pixels)["upscaled"][0].numpy()
              for head in ("x2", "x4")}
  srv = server_lib.ModelServer(export_base, "multi", port=0, rest_api_port=0, host="127.0.0.1",
                               file_system_poll_wait_seconds=0)
  srv.start()
  problems = []
  try:
    with sync_playwright() as p:
      browser = p.chromium.launch(executable_path=web_ui.CHROMIUM, args=web_ui.CHROMIUM_ARGS)
      try:
        page = browser.new_page(accept_downloads=True)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"http://127.0.0.1:{srv.rest_api_port}/")
        # The page starts on the served model (the server writes its name into the page).
        expect(page.locator("#head option")).to_have_text(["default", "x2", "x4"])
        expect(page.get_by_test_id("head")).to_be_visible()
        expect(page.locator("#model-info")).to_have_text(re.compile("signature upscale_bytes$"))

        for head, scale in (("x2", 2), ("x4", 4), ("", 4)):
          page.get_by_test_id("head").select_option(head)
          signature = f"upscale_{head}_bytes" if head else "upscale_bytes"
          expect(page.locator("#model-info")).to_have_text(re.compile(f"signature {signature}$"))
          page.get_by_test_id("upload").set_input_files(str(photo_path))
          name = f"cat_{head}_x{scale}.png" if head else f"cat_x{scale}.png"
          expect(page.locator("#results li a").first).to_have_text(name)
          facts = page.get_by_test_id("facts").inner_text()
          assert f"{CROP[1]}×{CROP[0]} → {CROP[1] * scale}×{CROP[0] * scale}" in facts
          assert (f"head {head})" in facts) == bool(head)
          with page.expect_download() as info:
            page.get_by_test_id("download").click()
          saved = tmp_path / f"downloaded_{head or 'default'}.png"
          info.value.save_as(saved)
          got = np.asarray(Image.open(saved).convert("RGB"))
          # One tile, PNG both ways: the page's result is the signature's answer exactly.
          np.testing.assert_array_equal(got, expected[head or "x4"])
        assert page.get_by_test_id("error").is_hidden()
      finally:
        browser.close()
  finally:
    srv.stop(grace=5)
  assert not problems, problems


def test_single_output_model_hides_the_head_menu(tmp_path):
  sync_playwright, expect = web_ui._sync_playwright()  # pylint: disable=protected-access
  keras.utils.set_random_seed(6)
  model = MultiHeadRRDBNet(num_features=8, num_blocks=1, growth_channels=4,
                           heads=[{"name": "x2", "scale": 2}]).to_rrdbnet("x2")
  saved_model_lib.export_saved_model(model, str(tmp_path), version=1)
  srv = server_lib.ModelServer(str(tmp_path), "single", port=0, rest_api_port=0,
                               host="127.0.0.1", file_system_poll_wait_seconds=0)
  srv.start()
  try:
    with sync_playwright() as p:
      browser = p.chromium.launch(executable_path=web_ui.CHROMIUM, args=web_ui.CHROMIUM_ARGS)
      try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{srv.rest_api_port}/")
        # A locator wait, not wait_for_function: the page's CSP forbids the eval that polls it.
        expect(page.locator("#model-info")).to_contain_text("upscale_bytes")
        assert page.get_by_test_id("head").is_hidden()
      finally:
        browser.close()
  finally:
    srv.stop(grace=5)
