"""The web page of `esrgan-serve` (`GET /` on the REST port; off with `--web_ui=false`).

The page is static HTML/CSS/JS shipped as package data (`static/`), with no build step and no
third-party code, so it works offline. It talks only to the TF Serving REST API of the same
server (`/v1/models/...`: status, metadata, `:predict` with the `upscale_bytes` signature), so
it is subject to exactly the same limits and validation as any other client; it adds no way in.

`rest.py` calls `handle(path, model_name)` for GETs that are not API paths.
"""

from __future__ import annotations

import html
from importlib import resources

# Only these files are served (no path is ever joined from the request: no traversal).
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/compare.js": ("compare.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
# Everything from this origin only; `blob:`/`data:` for the images the page makes itself. This
# also makes any accidental CDN reference fail loudly in the browser test.
HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; "
                                "connect-src 'self'; style-src 'self'; script-src 'self'; "
                                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
MODEL_PLACEHOLDER = "{{model_name}}"


def is_web_path(path: str) -> bool:
  """True for the paths this module answers (the page and its assets)."""
  return path.split("?", 1)[0] in _FILES


def read_static(name: str) -> bytes:
  """One packaged static file's bytes."""
  return resources.files("esrgan_tf.serving").joinpath("static", name).read_bytes()


def handle(path: str, model_name: str) -> tuple[int, str, bytes] | None:
  """The answer to `GET path`, or None when `path` is not one of the page's files.

  Args:
    path: The request path (a query string is ignored).
    model_name: The served model's name, written into the page as its default model.

  Returns:
    (HTTP status, Content-Type, body) or None.
  """
  entry = _FILES.get(path.split("?", 1)[0])
  if entry is None:
    return None
  name, content_type = entry
  data = read_static(name)
  if name == "index.html":
    data = data.replace(MODEL_PLACEHOLDER.encode(),
                        html.escape(model_name, quote=True).encode("utf-8"))
  return 200, content_type, data
