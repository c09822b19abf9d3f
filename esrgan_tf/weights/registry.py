"""Published models by name: `--model=RealESRGAN_x4plus` downloads, checks and caches the file.

A small registry maps each name to its official URL (the authors' GitHub release assets, or for
ESRGAN 2018 the authors' Google Drive), its architecture, scale and licence. `resolve_spec` turns
a known name (that is not also an existing path) into the path of the cached checkpoint, which
the usual resolver then loads like any `.pth`.

Checksums: a SHA-256 is recorded only where a published value could be confirmed from two
independent sources. None could for any entry here: the authors publish no checksums (Real-ESRGAN's
repository, at a4abfb2 of 2024-04, documents none and its `inference_realesrgan.py` downloads
without a check; ESRGAN's README only links a Google Drive folder), so every `sha256` is None.
Such a file is then checked only by loading it (the checkpoint readers validate every tensor's
name and shape), and its SHA-256 is logged after the download so that users can pin it. Set a
value here once it is confirmed.

Download: `keras.utils.get_file` (progress bar, hash check) into a private staging directory
inside the cache, then an atomic rename, so the cache never holds a partial or unverified file: a
failed or interrupted transfer and a checksum mismatch leave nothing behind (get_file itself
deletes a failed transfer but keeps a file whose hash mismatches, and writes in place). get_file
restarts an interrupted download from the beginning (it does not resume).

Cache: `$ESRGAN_TF_HOME`, else `$XDG_CACHE_HOME/esrgan_tf`, else `~/.cache/esrgan_tf`.
Air-gapped use: `ESRGAN_TF_MODEL_MIRROR=URL` (or `mirror=` / `--model_mirror`) replaces each
URL's directory with URL (http(s):// or file://); or place the file by hand at the path the
error message names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse

from absl import logging

CACHE_ENV = "ESRGAN_TF_HOME"
MIRROR_ENV = "ESRGAN_TF_MODEL_MIRROR"
# Architectures esrgan_tf can build (a registry entry of any other is refused before download).
SUPPORTED_ARCHITECTURES = frozenset({"rrdbnet", "pixel_unshuffle_rrdbnet", "srvgg_compact"})
ARCHITECTURES = {
    "rrdbnet": "RRDBNet (ESRGAN's generator)",
    "pixel_unshuffle_rrdbnet": "RRDBNet on a pixel-unshuffled input (Real-ESRGAN x2plus)",
    "srvgg_compact": "SRVGGNetCompact (Real-ESRGAN's compact VGG-style network)",
}


class HubError(Exception):
  """A published model that cannot be resolved: unknown, unsupported, unreachable, corrupt."""


@dataclasses.dataclass(frozen=True)
class PublishedModel:
  """One registry entry.

  Attributes:
    name: What `--model` accepts.
    url: The official download URL.
    filename: The file's name in the cache (and on a mirror).
    architecture: A key of ARCHITECTURES.
    scale: Upscaling factor.
    licence: SPDX identifier of the weights' licence (that of the repository publishing them).
    source: The page that documents the file.
    sha256: Confirmed SHA-256 (hex) or None (see the module docstring).
    description: One line for `esrgan-models list`.
  """

  name: str
  url: str
  filename: str
  architecture: str
  scale: int
  licence: str
  source: str
  sha256: str | None = None
  description: str = ""


_REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
# URLs: Real-ESRGAN's inference_realesrgan.py (its `file_url` per model name, a4abfb2). ESRGAN:
# xinntao/ESRGAN's README links a Google Drive folder (folder 17VYV_SoZZesU6mbxz2dMAIccSSlqLecY);
# the two file ids below are those of its RRDB_ESRGAN_x4.pth / RRDB_PSNR_x4.pth as used by several
# independent download scripts. Drive may answer a confirmation page instead of the file, which
# `fetch` detects and refuses. Licences: Real-ESRGAN's LICENSE (BSD-3-Clause), ESRGAN's
# (Apache-2.0).
_DRIVE = "https://drive.google.com/uc?export=download&id="
_ENTRIES = [
    ("RealESRGAN_x4plus", f"{_REAL_ESRGAN}/v0.1.0/RealESRGAN_x4plus.pth", "rrdbnet", 4,
     "BSD-3-Clause", "Real-ESRGAN x4, general photos (23 blocks)"),
    ("RealESRNet_x4plus", f"{_REAL_ESRGAN}/v0.1.1/RealESRNet_x4plus.pth", "rrdbnet", 4,
     "BSD-3-Clause", "Real-ESRNet x4, the PSNR-oriented stage (no GAN)"),
    ("RealESRGAN_x4plus_anime_6B", f"{_REAL_ESRGAN}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
     "rrdbnet", 4, "BSD-3-Clause", "Real-ESRGAN x4 for anime images (6 blocks)"),
    ("RealESRGAN_x2plus", f"{_REAL_ESRGAN}/v0.2.1/RealESRGAN_x2plus.pth",
     "pixel_unshuffle_rrdbnet", 2, "BSD-3-Clause", "Real-ESRGAN x2, general photos"),
    ("realesr-animevideov3", f"{_REAL_ESRGAN}/v0.2.5.0/realesr-animevideov3.pth",
     "srvgg_compact", 4, "BSD-3-Clause", "compact x4 for anime video (16 convs)"),
    ("realesr-general-x4v3", f"{_REAL_ESRGAN}/v0.2.5.0/realesr-general-x4v3.pth",
     "srvgg_compact", 4, "BSD-3-Clause", "compact x4, general photos (32 convs)"),
    ("realesr-general-wdn-x4v3", f"{_REAL_ESRGAN}/v0.2.5.0/realesr-general-wdn-x4v3.pth",
     "srvgg_compact", 4, "BSD-3-Clause", "compact x4 with stronger denoising"),
    ("RRDB_ESRGAN_x4", f"{_DRIVE}1TPrz5QKd8DHHt1k8SRtm6tMiPjz_Qene", "rrdbnet", 4,
     "Apache-2.0", "ESRGAN 2018, the paper's final model (MATLAB-bicubic LR)"),
    ("RRDB_PSNR_x4", f"{_DRIVE}1pJ_T-V1dpb1ewoEra1TGSWl5e6H7M4NN", "rrdbnet", 4,
     "Apache-2.0", "ESRGAN 2018, PSNR-oriented (MATLAB-bicubic LR)"),
]
REGISTRY = {
    name: PublishedModel(
        name=name, url=url, filename=f"{name}.pth", architecture=arch, scale=scale,
        licence=licence, description=description,
        source=("https://github.com/xinntao/Real-ESRGAN" if "Real-ESRGAN" in url
                else "https://github.com/xinntao/ESRGAN"))
    for name, url, arch, scale, licence, description in _ENTRIES
}


def cache_dir(environ=None) -> str:
  """`$ESRGAN_TF_HOME`, else `$XDG_CACHE_HOME/esrgan_tf`, else `~/.cache/esrgan_tf`."""
  environ = os.environ if environ is None else environ
  if environ.get(CACHE_ENV):
    return os.path.abspath(os.path.expanduser(environ[CACHE_ENV]))
  base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(os.path.abspath(base), "esrgan_tf")


def lookup(name: str, registry: dict | None = None) -> PublishedModel:
  """The registry entry for `name`.

  Raises:
    HubError: Unknown name (the message lists the known ones).
  """
  registry = REGISTRY if registry is None else registry
  if name not in registry:
    raise HubError(f"{name}: not a published model name; known: {', '.join(sorted(registry))}")
  return registry[name]


def cached_path(entry: PublishedModel, root: str | None = None) -> str:
  """Where `entry`'s file lives in the cache (whether or not it is there)."""
  return os.path.join(root or cache_dir(), entry.filename)


def download_url(entry: PublishedModel, mirror: str | None = None) -> str:
  """The official URL, or `mirror/filename` when a mirror is given (argument, then env)."""
  mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV, "")
  if not mirror:
    return entry.url
  return mirror.rstrip("/") + "/" + urllib.parse.quote(entry.filename)


def check_supported(entry: PublishedModel) -> None:
  """Raises HubError when esrgan_tf cannot build `entry`'s architecture yet."""
  if entry.architecture not in SUPPORTED_ARCHITECTURES:
    supported = ", ".join(sorted(SUPPORTED_ARCHITECTURES))
    raise HubError(
        f"{entry.name}: its architecture, {ARCHITECTURES[entry.architecture]}, is not supported "
        f"by this version of esrgan_tf yet (supported: {supported}); it is listed so that the "
        "name resolves once support lands")


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _looks_like_pth(path: str) -> bool:
  """True if the file starts like a torch checkpoint: a zip (torch >= 1.6) or a pickle (legacy)."""
  # Zip local-file-header magic "PK\3\4"; pickle protocol >= 2 opens with the PROTO opcode 0x80.
  with open(path, "rb") as f:
    head = f.read(4)
  return head == b"PK\x03\x04" or head[:1] == b"\x80"


def _remove_stale_staging(root: str) -> None:
  """Deletes staging directories left by killed processes (`.download-<pid>-*`)."""
  for name in os.listdir(root):
    match = re.fullmatch(r"\.download-(\d+)-.*", name)
    if not match:
      continue
    try:
      os.kill(int(match[1]), 0)
    except ProcessLookupError:
      shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    except OSError:  # Alive but not ours (EPERM): leave it.
      pass


def fetch(name: str, *, mirror: str | None = None, root: str | None = None,
          registry: dict | None = None) -> str:
  """The path of a published model's file, downloading it into the cache if needed.

  Args:
    name: A registry name.
    mirror: Base URL replacing the official one's directory (default: $ESRGAN_TF_MODEL_MIRROR).
    root: Cache directory (default: `cache_dir()`).
    registry: Name → PublishedModel (default: REGISTRY; tests pass their own).

  Returns:
    The cached file's path.

  Raises:
    HubError: Unknown name, unsupported architecture, download failure (the message names the
      URL and the path where the file may be placed by hand), checksum mismatch.
  """
  entry = lookup(name, registry)
  check_supported(entry)
  root = root or cache_dir()
  final = cached_path(entry, root)
  if os.path.isfile(final):
    if entry.sha256 is None or sha256_of(final) == entry.sha256:
      return final
    logging.warning("%s: cached file %s fails its SHA-256 check; downloading it again",
                    name, final)
    os.remove(final)
  url = download_url(entry, mirror)
  try:
    os.makedirs(root, exist_ok=True)
    _remove_stale_staging(root)
    staging = tempfile.mkdtemp(prefix=f".download-{os.getpid()}-", dir=root)
  except OSError as e:
    raise HubError(f"{name}: cannot write to the cache directory {root} ({e}); set "
                   f"${CACHE_ENV} to a writable directory") from e
  try:
    import keras  # pylint: disable=g-import-not-at-top

    try:
      staged = keras.utils.get_file(fname=entry.filename, origin=url, file_hash=entry.sha256,
                                    hash_algorithm="sha256", cache_dir=staging, cache_subdir="")
    except ValueError as e:  # get_file's hash mismatch; the staged file is removed below.
      staged = os.path.join(staging, entry.filename)
      actual = sha256_of(staged) if os.path.exists(staged) else "unknown"
      raise HubError(f"{name}: the file downloaded from {url} has SHA-256 {actual}, expected "
                     f"{entry.sha256}; it was deleted and not used ({e})") from e
    except Exception as e:  # pylint: disable=broad-except  # get_file raises bare Exception.
      raise HubError(
          f"{name}: cannot download {url} ({e}). Offline? Download the file on another machine "
          f"and place it at {final} (or set ${MIRROR_ENV} / --model_mirror to a reachable copy "
          "of it)") from e
    if not _looks_like_pth(staged):
      raise HubError(
          f"{name}: what {url} returned is not a PyTorch checkpoint (an HTML page? Google Drive "
          "asks browsers to confirm large downloads); it was deleted. Download the file by hand "
          f"and place it at {final}")
    actual = sha256_of(staged)
    if entry.sha256 is None:
      logging.warning("%s: no published SHA-256 to check against; downloaded file has SHA-256 "
                      "%s", name, actual)
    os.replace(staged, final)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  logging.info("%s: cached at %s", name, final)
  return final


def resolve_spec(spec: str, *, mirror: str | None = None, root: str | None = None,
                 registry: dict | None = None) -> str:
  """A `--model` value with published names replaced by their cached file's path.

  An existing path always wins over a name; anything that is not a registry name is returned
  unchanged (the resolver then reports it).

  Raises:
    HubError: See `fetch`.
  """
  registry = REGISTRY if registry is None else registry
  if spec not in registry or os.path.exists(spec):
    return spec
  return fetch(spec, mirror=mirror, root=root, registry=registry)


def listing(root: str | None = None, registry: dict | None = None) -> list[dict]:
  """One row per registry entry with what is cached, for `esrgan-models list`."""
  registry = REGISTRY if registry is None else registry
  rows = []
  for entry in registry.values():
    path = cached_path(entry, root)
    rows.append({
        "name": entry.name, "scale": entry.scale, "architecture": entry.architecture,
        "supported": entry.architecture in SUPPORTED_ARCHITECTURES, "licence": entry.licence,
        "sha256": entry.sha256, "url": entry.url, "description": entry.description,
        "cached": path if os.path.isfile(path) else None,
        "size": os.path.getsize(path) if os.path.isfile(path) else None})
  return rows
