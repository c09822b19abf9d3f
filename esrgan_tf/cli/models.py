r"""esrgan-models: the published models esrgan_tf resolves by name, and what is cached.

  esrgan-models list
  esrgan-models fetch RealESRGAN_x4plus [--model_mirror=https://host/models/]

Any `--model` flag also accepts these names (downloaded on first use). The cache is
$ESRGAN_TF_HOME, else $XDG_CACHE_HOME/esrgan_tf, else ~/.cache/esrgan_tf; offline, place the
file at the path `list` shows (or set --model_mirror / $ESRGAN_TF_MODEL_MIRROR).
"""

import sys

from absl import app, flags

from esrgan_tf import cli
from esrgan_tf.weights import registry

_MIRROR = flags.DEFINE_string("model_mirror", None,
                              "Base URL (http(s):// or file://) holding the files under their "
                              "registry names; default $ESRGAN_TF_MODEL_MIRROR, else the official "
                              "URLs.")


def format_listing(rows: list[dict], root: str) -> str:
  """The registry as a plain-text table plus the cache directory and checksum note."""
  lines = [f"{'name':<28} {'×':>2} {'architecture':<34} {'licence':<13} {'cached':<10} url"]
  for row in rows:
    arch = row["architecture"] + ("" if row["supported"] else " (not yet)")
    cached = f"{row['size'] / 1e6:.1f} MB" if row["cached"] else "-"
    lines.append(f"{row['name']:<28} {row['scale']:>2} {arch:<34} {row['licence']:<13} "
                 f"{cached:<10} {row['url']}")
  lines.append(f"cache: {root}")
  if not any(row["sha256"] for row in rows):
    lines.append("No published SHA-256 could be confirmed for these files: they are checked by "
                 "loading them, and each download logs its SHA-256.")
  return "\n".join(lines)


def main(argv):
  if len(argv) < 2 or argv[1] not in ("list", "fetch"):
    raise app.UsageError("usage: esrgan-models list | esrgan-models fetch NAME [NAME ...]")
  root = registry.cache_dir()
  if argv[1] == "list":
    if len(argv) > 2:
      raise app.UsageError(f"unexpected arguments: {argv[2:]}")
    print(format_listing(registry.listing(root), root))
    return
  if len(argv) < 3:
    raise app.UsageError("fetch needs at least one model name")
  for name in argv[2:]:
    try:
      print(registry.fetch(name, mirror=_MIRROR.value, root=root))
    except registry.RegistryError as e:
      sys.exit(f"esrgan-models: {e}")


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
