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

Download (`_download`, urllib): into a private staging directory inside the cache, then checked
(size, SHA-256 when published, and loaded as a checkpoint of the entry's architecture and scale)
and only then renamed into the cache, so the cache never holds a partial, oversized or foreign
file; the staging directory is removed on every failure (and, after a kill, by the next fetch).
Bounds: CONNECT_READ_SECONDS without a byte (connect or read) fails the transfer; after
RATE_GRACE_SECONDS the average rate must stay above MIN_BYTES_PER_SECOND (a mirror trickling a
byte at a time is cut); an entry's `max_bytes` caps the declared and the received length;
redirects are followed only to https on its default port or within the same origin (scheme,
host, port), at most MAX_REDIRECTS. An interrupted download restarts from the beginning.

Besides the generators (`REGISTRY`, what `--model` resolves), `PERCEPTUAL_WEIGHTS` and
`DISCRIMINATORS` hold the networks a training config may name, fetched the same way:
torchvision's VGG19 and Real-ESRGAN's published netD.

Cache: `$ESRGAN_TF_HOME`, else `$XDG_CACHE_HOME/esrgan_tf`, else `~/.cache/esrgan_tf`.
Air-gapped use: `ESRGAN_TF_MODEL_MIRROR=URL` (or `mirror=` / `--model_mirror`) replaces each
URL's directory with URL (http(s):// or file://); or place the file by hand at the path the
error message names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from absl import logging

CACHE_ENV = "ESRGAN_TF_HOME"
MIRROR_ENV = "ESRGAN_TF_MODEL_MIRROR"
# Architectures esrgan_tf can build (a registry entry of any other is refused before download).
SUPPORTED_ARCHITECTURES = frozenset({"rrdbnet", "pixel_unshuffle_rrdbnet", "srvgg_compact",
                                     "vgg19", "unet_discriminator_sn"})
ARCHITECTURES = {
    "rrdbnet": "RRDBNet (ESRGAN's generator)",
    "pixel_unshuffle_rrdbnet": "RRDBNet on a pixel-unshuffled input (Real-ESRGAN x2plus)",
    "srvgg_compact": "SRVGGNetCompact (Real-ESRGAN's compact VGG-style network)",
    "vgg19": "torchvision's VGG19 (the perceptual loss's feature network)",
    "unet_discriminator_sn": "Real-ESRGAN's U-Net discriminator with spectral norm (netD)",
}


# Transfer bounds (see the module docstring).
CONNECT_READ_SECONDS = 30.0
RATE_GRACE_SECONDS = 30.0
MIN_BYTES_PER_SECOND = 32 << 10  # 80 MB at this rate take 42 minutes: slower is a stalled mirror
MAX_REDIRECTS = 5
_CHUNK_BYTES = 1 << 16


class RegistryError(Exception):
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
    sha256_prefix: The leading hex digits of the SHA-256 that the publisher puts in the file
      name (torch.hub's convention, checked by its `load_state_dict_from_url(check_hash=True)`),
      checked when `sha256` is None.
    max_bytes: Largest file accepted (a mirror's or an impostor's larger file is refused).
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
  sha256_prefix: str | None = None
  max_bytes: int = 256 << 20  # Registry entries set their own (`size_cap`).


_REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
# URLs: Real-ESRGAN's inference_realesrgan.py (its `file_url` per model name, a4abfb2). ESRGAN:
# xinntao/ESRGAN's README links a Google Drive folder (folder 17VYV_SoZZesU6mbxz2dMAIccSSlqLecY);
# the two file ids below are those of its RRDB_ESRGAN_x4.pth / RRDB_PSNR_x4.pth as used by several
# independent download scripts. Drive may answer a confirmation page instead of the file, which
# `fetch` detects and refuses. Licences: Real-ESRGAN's LICENSE (BSD-3-Clause), ESRGAN's
# (Apache-2.0).
_DRIVE = "https://drive.google.com/uc?export=download&id="
# Parameters of each network, counted on esrgan_tf's own models built with the published
# configurations (tests/test_hostile_downloads.py builds them again): RRDBNet nf 64, gc 32,
# nearest upsampling, with 23 blocks (x4; x2plus on a 2×-unshuffled input) or 6 blocks
# (anime_6B); SRVGGNetCompact nf 64 with 16 or 32 convs. They size each entry's download cap
# (`size_cap`).
_RRDB23, _RRDB23_X2, _RRDB6 = 16_697_987, 16_703_171, 4_467_779
_COMPACT16, _COMPACT32 = 621_424, 1_213_296
_ENTRIES = [
    ("RealESRGAN_x4plus", f"{_REAL_ESRGAN}/v0.1.0/RealESRGAN_x4plus.pth", "rrdbnet", 4,
     _RRDB23, "BSD-3-Clause", "Real-ESRGAN x4, general photos (23 blocks)"),
    ("RealESRNet_x4plus", f"{_REAL_ESRGAN}/v0.1.1/RealESRNet_x4plus.pth", "rrdbnet", 4,
     _RRDB23, "BSD-3-Clause", "Real-ESRNet x4, the PSNR-oriented stage (no GAN)"),
    ("RealESRGAN_x4plus_anime_6B", f"{_REAL_ESRGAN}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
     "rrdbnet", 4, _RRDB6, "BSD-3-Clause", "Real-ESRGAN x4 for anime images (6 blocks)"),
    ("RealESRGAN_x2plus", f"{_REAL_ESRGAN}/v0.2.1/RealESRGAN_x2plus.pth",
     "pixel_unshuffle_rrdbnet", 2, _RRDB23_X2, "BSD-3-Clause", "Real-ESRGAN x2, general photos"),
    ("realesr-animevideov3", f"{_REAL_ESRGAN}/v0.2.5.0/realesr-animevideov3.pth",
     "srvgg_compact", 4, _COMPACT16, "BSD-3-Clause", "compact x4 for anime video (16 convs)"),
    ("realesr-general-x4v3", f"{_REAL_ESRGAN}/v0.2.5.0/realesr-general-x4v3.pth",
     "srvgg_compact", 4, _COMPACT32, "BSD-3-Clause", "compact x4, general photos (32 convs)"),
    ("realesr-general-wdn-x4v3", f"{_REAL_ESRGAN}/v0.2.5.0/realesr-general-wdn-x4v3.pth",
     "srvgg_compact", 4, _COMPACT32, "BSD-3-Clause", "compact x4 with stronger denoising"),
    ("RRDB_ESRGAN_x4", f"{_DRIVE}1TPrz5QKd8DHHt1k8SRtm6tMiPjz_Qene", "rrdbnet", 4, _RRDB23,
     "Apache-2.0", "ESRGAN 2018, the paper's final model (MATLAB-bicubic LR)"),
    ("RRDB_PSNR_x4", f"{_DRIVE}1pJ_T-V1dpb1ewoEra1TGSWl5e6H7M4NN", "rrdbnet", 4, _RRDB23,
     "Apache-2.0", "ESRGAN 2018, PSNR-oriented (MATLAB-bicubic LR)"),
]


def size_cap(parameters: int) -> int:
  """Download cap for a network: its float32 weights twice (a file may hold both `params` and
  `params_ema`, as BasicSR's training saves do) plus 1 MiB of pickle and zip records."""
  return 2 * 4 * parameters + (1 << 20)


REGISTRY = {
    name: PublishedModel(
        name=name, url=url, filename=f"{name}.pth", architecture=arch, scale=scale,
        licence=licence, description=description, max_bytes=size_cap(parameters),
        source=("https://github.com/xinntao/Real-ESRGAN" if "Real-ESRGAN" in url
                else "https://github.com/xinntao/ESRGAN"))
    for name, url, arch, scale, parameters, licence, description in _ENTRIES
}

# torchvision's ImageNet VGG19 (torchvision/models/vgg.py, VGG19_Weights.IMAGENET1K_V1: this URL,
# 548.1 MB, BSD-3-Clause like torchvision), which BasicSR's perceptual loss loads
# (basicsr/archs/vgg_arch.py VGG_PRETRAIN_PATH "vgg19-dcbb9e9d.pth"). "dcbb9e9d" is torch.hub's
# hash prefix: the file's SHA-256 starts with it.
TORCHVISION_VGG19 = "vgg19-dcbb9e9d"
PERCEPTUAL_WEIGHTS = {
    TORCHVISION_VGG19: PublishedModel(
        name=TORCHVISION_VGG19, url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        filename="vgg19-dcbb9e9d.pth", architecture="vgg19", scale=1, licence="BSD-3-Clause",
        source="https://pytorch.org/vision/stable/models/generated/torchvision.models.vgg19.html",
        description="torchvision VGG19 (ImageNet), BasicSR's perceptual-loss network",
        sha256_prefix="dcbb9e9d", max_bytes=600 << 20),
}

# Published discriminators, for `train.init_discriminator_from` (fine-tuning). URL: Real-ESRGAN's
# docs/Training.md and docs/model_zoo.md (release v0.2.2.3), BSD-3-Clause.
DISCRIMINATORS = {
    "RealESRGAN_x4plus_netD": PublishedModel(
        name="RealESRGAN_x4plus_netD", url=f"{_REAL_ESRGAN}/v0.2.2.3/RealESRGAN_x4plus_netD.pth",
        filename="RealESRGAN_x4plus_netD.pth", architecture="unet_discriminator_sn", scale=4,
        licence="BSD-3-Clause", source="https://github.com/xinntao/Real-ESRGAN",
        description="Real-ESRGAN x4plus's U-Net discriminator (netD), for fine-tuning"),
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
    RegistryError: Unknown name (the message lists the known ones).
  """
  registry = REGISTRY if registry is None else registry
  if name not in registry:
    raise RegistryError(f"{name}: not a published model name; known: {', '.join(sorted(registry))}")
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
  """Raises RegistryError when esrgan_tf cannot build `entry`'s architecture yet."""
  if entry.architecture not in SUPPORTED_ARCHITECTURES:
    supported = ", ".join(sorted(SUPPORTED_ARCHITECTURES))
    raise RegistryError(
        f"{entry.name}: its architecture, {ARCHITECTURES[entry.architecture]}, is not supported "
        f"by this version of esrgan_tf yet (supported: {supported}); it is listed so that the "
        "name resolves once support lands")


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _origin(url: str) -> tuple:
  parts = urllib.parse.urlsplit(url)
  default = {"https": 443, "http": 80}.get(parts.scheme)
  return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
  """Follows a redirect only to https on port 443, or within the origin that redirected."""

  max_redirections = MAX_REDIRECTS

  def redirect_request(self, req, fp, code, msg, headers, newurl):
    target = urllib.parse.urljoin(req.full_url, newurl)
    scheme, _, port = _origin(target)
    if not ((scheme == "https" and port == 443) or _origin(target) == _origin(req.full_url)):
      raise RegistryError(f"refused its redirect to {target} (only to https on port 443, or within "
                     "the same scheme, host and port)")
    return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download(url: str, destination: str, entry: PublishedModel) -> str:
  """Writes `url` to `destination` under the transfer bounds; returns its SHA-256 (hex).

  Raises:
    RegistryError: Too large (declared or received), too slow, stalled, truncated, refused redirect.
    OSError, urllib.error.URLError: Unreachable or an HTTP error status.
  """
  opener = urllib.request.build_opener(_SafeRedirects())
  request = urllib.request.Request(url, headers={"User-Agent": "esrgan_tf"})
  digest = hashlib.sha256()
  received = 0
  started = last_log = time.monotonic()
  with opener.open(request, timeout=CONNECT_READ_SECONDS) as response, \
      open(destination, "wb") as out:
    declared = response.headers.get("Content-Length")
    declared = int(declared) if declared and declared.strip().isdigit() else None
    if declared is not None and declared > entry.max_bytes:
      raise RegistryError(f"it announces {declared:,} bytes, more than this model's file can be "
                     f"({entry.max_bytes:,})")
    read = getattr(response, "read1", response.read)  # read1: whatever has arrived.
    while chunk := read(_CHUNK_BYTES):
      received += len(chunk)
      if received > entry.max_bytes:
        raise RegistryError(f"it sent more than {entry.max_bytes:,} bytes, more than this model's "
                       "file can be")
      digest.update(chunk)
      out.write(chunk)
      now = time.monotonic()
      if now - started > RATE_GRACE_SECONDS and received / (now - started) < MIN_BYTES_PER_SECOND:
        raise RegistryError(f"it sends {received / (now - started):,.0f} bytes/s after "
                       f"{now - started:.0f} s, below {MIN_BYTES_PER_SECOND:,}")
      if now - last_log > 10:
        logging.info("%s: %.1f MB of %s", entry.name, received / 2**20,
                     f"{declared / 2**20:.1f} MB" if declared else "?")
        last_log = now
  if declared is not None and received != declared:
    raise RegistryError(f"the transfer ended after {received:,} of {declared:,} bytes")
  return digest.hexdigest()


def _check_checkpoint(path: str, entry: PublishedModel) -> None:
  """Loads the downloaded file's state dict: a generator of the entry's family and scale.

  Raises:
    RegistryError: Not a checkpoint, not a generator layout, another architecture or scale.
  """
  from esrgan_tf import weights  # pylint: disable=g-import-not-at-top
  from esrgan_tf.weights import layouts  # pylint: disable=g-import-not-at-top

  with open(path, "rb") as f:
    head = f.read(64).lstrip().lower()
  if head.startswith((b"<!doctype", b"<html", b"<")):
    raise RegistryError("an HTML page, not a PyTorch checkpoint (Google Drive asks browsers to "
                        "confirm large downloads)")
  if entry.architecture in ("vgg19", "unet_discriminator_sn"):  # not generators
    from esrgan_tf.weights import discriminator, vgg  # pylint: disable=g-import-not-at-top
    check = (vgg.torchvision_vgg19_convs if entry.architecture == "vgg19"
             else discriminator.read_discriminator)
    try:
      check(weights.read_state_dict(path))
    except weights.CheckpointError as e:
      raise RegistryError(f"not a usable {ARCHITECTURES[entry.architecture]} ({e})") from None
    return
  try:
    state, layout = layouts.to_basicsr(weights.read_state_dict(path))
    compact = layout == layouts.COMPACT_LAYOUT
    scale = (layouts.infer_compact_arch(state)["upscale"] if compact
             else layouts.infer_arch(state)["scale"])
  except weights.CheckpointError as e:
    raise RegistryError(f"not a usable checkpoint ({e})") from None
  if compact != (entry.architecture == "srvgg_compact") or scale != entry.scale:
    raise RegistryError(f"a {layout} ×{scale} checkpoint, not the registry's "
                   f"{ARCHITECTURES[entry.architecture]} ×{entry.scale}")


def _checksum_ok(entry: PublishedModel, path: str) -> bool:
  if entry.sha256 is not None:
    return sha256_of(path) == entry.sha256
  return entry.sha256_prefix is None or sha256_of(path).startswith(entry.sha256_prefix)


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
    RegistryError: Unknown name, unsupported architecture, download failure (the message names the
      URL and the path where the file may be placed by hand), checksum mismatch.
  """
  entry = lookup(name, registry)
  check_supported(entry)
  root = root or cache_dir()
  final = cached_path(entry, root)
  if os.path.isfile(final):
    if _checksum_ok(entry, final):
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
    raise RegistryError(f"{name}: cannot write to the cache directory {root} ({e}); set "
                   f"${CACHE_ENV} to a writable directory") from e
  by_hand = (f"Download the file on another machine and place it at {final} (or set "
             f"${MIRROR_ENV} / --model_mirror to a reachable copy of it)")
  try:
    staged = os.path.join(staging, entry.filename)
    logging.info("%s: downloading %s", name, url)
    try:
      actual = _download(url, staged, entry)
    except RegistryError as e:
      raise RegistryError(f"{name}: cannot download {url}: {e}; nothing was cached. {by_hand}"
                     ) from None
    except (OSError, http.client.HTTPException, ValueError) as e:  # timeouts: OSErrors
      raise RegistryError(f"{name}: cannot download {url} ({e}). Offline? {by_hand}") from None
    expected = entry.sha256 or entry.sha256_prefix
    if expected is not None and not actual.startswith(expected):
      raise RegistryError(f"{name}: the file downloaded from {url} has SHA-256 {actual}, expected "
                     f"{expected}{'' if entry.sha256 else '...'}; it was deleted and not used")
    try:
      _check_checkpoint(staged, entry)
    except RegistryError as e:
      raise RegistryError(f"{name}: what {url} returned is {e}; it was deleted. {by_hand}"
                          ) from None
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
    RegistryError: See `fetch`.
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
