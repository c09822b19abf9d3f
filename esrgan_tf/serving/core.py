"""The transport-independent part of `esrgan-serve`: model versions, validation and prediction.

Both front ends (gRPC in `server.py`, REST in `rest.py`) turn their requests into numpy inputs and
call `Predictor.predict`; errors are `ServingError`s carrying the gRPC status code that TF Serving
would return, which REST maps to an HTTP status.

Version management follows TF Serving's file-system source with the availability-preserving
policy (tensorflow_serving/core/availability_preserving_policy.h): integer-named subdirectories of
the base path are versions; the latest `max_versions` are aspired; a new version is loaded and made
AVAILABLE before an old one is unloaded; an old version is unloaded only after the requests using
it have finished. Unlike TF Serving, a version that failed to load is not aspired again (unless its
`saved_model.pb` changes), so the previous version keeps serving.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import threading
import time
from typing import Callable, Iterator, Optional

from absl import logging
import grpc
import numpy as np

from esrgan_tf import export_layout

# Servable states of tensorflow_serving/apis/get_model_status.proto (ModelVersionStatus.State).
STATE_START, STATE_LOADING, STATE_AVAILABLE, STATE_UNLOADING, STATE_END = 10, 20, 30, 40, 50
STATE_NAMES = {STATE_START: "START", STATE_LOADING: "LOADING", STATE_AVAILABLE: "AVAILABLE",
               STATE_UNLOADING: "UNLOADING", STATE_END: "END"}
DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
DEFAULT_MAX_PIXELS = export_layout.DEFAULT_MAX_PIXELS

_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
  """A request that cannot be served; `code` is the gRPC status TF Serving would return."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


def status_code_from_int(value: int) -> grpc.StatusCode:
  """gRPC status for a tensorflow.error.Code value (the two enums share their numbers)."""
  return _CODES_BY_VALUE.get(int(value), grpc.StatusCode.UNKNOWN)


# --- one loaded version ------------------------------------------------------------------------

@dataclasses.dataclass
class Servable:
  """One loaded SavedModel version.

  Attributes:
    version: The integer version.
    path: Its directory.
    signature_defs: Signature name → `SignatureDef` proto, as stored in saved_model.pb (what
      GetModelMetadata returns).
    functions: Signature name → callable taking keyword tensors, returning a dict of tensors.
    module: The loaded object (kept alive while the version is loaded).
  """

  version: int
  path: str
  signature_defs: dict
  functions: dict
  module: object = None


def read_signature_defs(path: str) -> dict:
  """The signature map of the "serve" MetaGraph in `path/saved_model.pb`.

  Raises:
    ValueError: No MetaGraph tagged "serve".
  """
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top

  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(path, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
  for meta_graph in saved_model.meta_graphs:
    if SERVE_TAG in meta_graph.meta_info_def.tags:
      return dict(meta_graph.signature_def)
  raise ValueError(f"{path}: no MetaGraph tagged {SERVE_TAG!r}")


def load_servable(path: str, version: int) -> Servable:
  """Loads a SavedModel version directory.

  Raises:
    Exception: Whatever TF raises for an unloadable SavedModel (reported in GetModelStatus).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  signature_defs = read_signature_defs(path)
  module = tf.saved_model.load(path, tags=[SERVE_TAG])
  functions = {name: module.signatures[name] for name in signature_defs
               if name in module.signatures}
  return Servable(version=version, path=path, signature_defs=signature_defs,
                  functions=functions, module=module)


@dataclasses.dataclass
class VersionStatus:
  """What GetModelStatus reports for one version."""

  version: int
  state: int
  error_code: int = 0  # tensorflow.error.Code; 0 = OK.
  error_message: str = ""


class _Slot:
  """A loaded version plus the count of requests using it (unloading waits for zero)."""

  def __init__(self, servable: Servable):
    self.servable = servable
    self.in_use = 0


# --- versions ----------------------------------------------------------------------------------

_version_dirs = export_layout.version_dirs


def _signature_of(path: str):
  """Identity of a version directory's contents, to notice a rewritten failed version."""
  try:
    st = os.stat(os.path.join(path, "saved_model.pb"))
  except OSError:
    return None
  return (st.st_mtime_ns, st.st_size)


class ModelManager:
  """Loads, serves and unloads the versions of one model from its base path.

  Args:
    name: The model name clients use.
    base_path: Directory of integer-named SavedModel versions.
    max_versions: How many of the latest versions to keep loaded (TF Serving's `latest { N }`).
    poll_wait_seconds: Interval between scans; ≤ 0 scans once (at `start`).
    loader: `(path, version) -> Servable`; tests may substitute it.
  """

  def __init__(self, name: str, base_path: str, *, max_versions: int = 1,
               poll_wait_seconds: float = 1.0,
               loader: Callable[[str, int], Servable] = load_servable):
    if max_versions < 1:
      raise ValueError(f"max_versions must be ≥ 1, got {max_versions}")
    self.name = name
    self.base_path = os.fspath(base_path)
    self.max_versions = max_versions
    self.poll_wait_seconds = poll_wait_seconds
    self._loader = loader
    self._lock = threading.Condition()
    self._slots: dict[int, _Slot] = {}  # AVAILABLE versions only.
    self._status: dict[int, VersionStatus] = {}
    self._failed: dict[int, object] = {}  # version → _signature_of at the failed attempt.
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None
    self._warned_empty = False

  # Lifecycle.

  def start(self) -> None:
    """Scans once synchronously (so a server starts with its model loaded), then polls."""
    self.poll_once()
    if self.poll_wait_seconds > 0:
      self._thread = threading.Thread(target=self._poll_loop, name=f"poll-{self.name}",
                                      daemon=True)
      self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()

  def _poll_loop(self) -> None:
    while not self._stop.wait(self.poll_wait_seconds):
      try:
        self.poll_once()
      except Exception:  # pylint: disable=broad-except  # the poller must survive anything.
        logging.exception("Polling %s failed", self.base_path)

  def poll_once(self) -> None:
    """One scan: load newly aspired versions, then unload versions no longer aspired."""
    present = _version_dirs(self.base_path)
    candidates = [v for v, path in present.items()
                  if v not in self._failed or self._failed[v] != _signature_of(path)]
    aspired = sorted(candidates)[-self.max_versions:]
    if not aspired:
      if not self._warned_empty:
        logging.warning("No loadable versions of model %s under %s (integer-named directories "
                        "with a saved_model.pb); still polling", self.name, self.base_path)
        self._warned_empty = True
      return  # Keep whatever is loaded.
    self._warned_empty = False
    for version in aspired:
      if version not in self._slots:
        self._load(version, present[version])
    with self._lock:
      newly_available = any(v in self._slots for v in aspired)
      stale = [v for v in self._slots if v not in aspired]
    if newly_available:  # Availability-preserving: unload only once an aspired one serves.
      for version in stale:
        self._unload(version)

  def _set_status(self, version: int, state: int, code: int = 0, message: str = "") -> None:
    with self._lock:
      self._status[version] = VersionStatus(version, state, code, message)

  def _load(self, version: int, path: str) -> None:
    logging.info("Loading %s version %d from %s", self.name, version, path)
    self._set_status(version, STATE_LOADING)
    started = time.monotonic()
    try:
      servable = self._loader(path, version)
    except Exception as e:  # pylint: disable=broad-except  # any load failure is reported.
      code = getattr(e, "error_code", None) or grpc.StatusCode.UNKNOWN.value[0]
      message = f"Failed to load {self.name} version {version} from {path}: " \
                f"{type(e).__name__}: {_first_line(str(e))}"
      logging.error("%s", message)
      self._failed[version] = _signature_of(path)
      self._set_status(version, STATE_END, int(code), message)
      return
    self._failed.pop(version, None)
    with self._lock:
      self._slots[version] = _Slot(servable)
      self._status[version] = VersionStatus(version, STATE_AVAILABLE)
    logging.info("%s version %d AVAILABLE (loaded in %.1f s)", self.name, version,
                 time.monotonic() - started)

  def _unload(self, version: int) -> None:
    with self._lock:
      slot = self._slots.pop(version)  # No new request gets it from here on.
      self._status[version] = VersionStatus(version, STATE_UNLOADING)
      while slot.in_use:
        self._lock.wait()
      self._status[version] = VersionStatus(version, STATE_END)
    logging.info("%s version %d unloaded", self.name, version)

  # Queries.

  def status(self, version: Optional[int] = None) -> list[VersionStatus]:
    """Statuses, newest version first.

    Raises:
      ServingError: NOT_FOUND for a version never seen, or no versions at all.
    """
    with self._lock:
      if version is not None:
        if version not in self._status:
          raise ServingError(grpc.StatusCode.NOT_FOUND,
                             f"Could not find version {version} of model {self.name}")
        return [self._status[version]]
      if not self._status:
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f"Could not find any versions of model {self.name}")
      return [self._status[v] for v in sorted(self._status, reverse=True)]

  def available_versions(self) -> list[int]:
    with self._lock:
      return sorted(self._slots)

  @contextlib.contextmanager
  def acquire(self, version: Optional[int] = None) -> Iterator[Servable]:
    """The requested (default: latest available) version, held for the duration of a request.

    Raises:
      ServingError: NOT_FOUND when no such version is AVAILABLE (TF Serving's message).
    """
    with self._lock:
      if version is None:
        slot = self._slots[max(self._slots)] if self._slots else None
        wanted = f"Latest({self.name})"
      else:
        slot = self._slots.get(version)
        wanted = f"Specific({self.name}, {version})"
      if slot is None:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {wanted}")
      slot.in_use += 1
    try:
      yield slot.servable
    finally:
      with self._lock:
        slot.in_use -= 1
        self._lock.notify_all()


def _first_line(text: str) -> str:
  lines = [line for line in text.strip().splitlines() if line.strip()]
  return lines[0] if lines else text


# --- prediction --------------------------------------------------------------------------------

def _dtype_name(dtype_enum: int) -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.as_dtype(dtype_enum).name


def _array_dtype_name(array: np.ndarray) -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if array.dtype.kind in "OSU":
    return "string"
  try:
    return tf.as_dtype(array.dtype).name
  except TypeError:
    return str(array.dtype)


def _image_header_size(data: bytes) -> Optional[tuple[int, int]]:
  """(width, height) from an encoded image's header via Pillow (no decoding), or None."""
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    with Image.open(io.BytesIO(data)) as image:
      return image.size
  except Exception:  # pylint: disable=broad-except  # the graph decides about unreadable bytes.
    return None


class Predictor:
  """Validates and runs Predict requests against a `ModelManager`, with bounded concurrency.

  Args:
    manager: The model.
    max_inflight: Concurrent Predict calls; one more gets RESOURCE_EXHAUSTED.
    max_pixels: Limit on N·H·W of every 4-D input (and on the summed header sizes of encoded
      images), checked before running the model.
  """

  def __init__(self, manager: ModelManager, *, max_inflight: int = 16,
               max_pixels: int = DEFAULT_MAX_PIXELS):
    if max_inflight < 1:
      raise ValueError(f"max_inflight must be ≥ 1, got {max_inflight}")
    self.manager = manager
    self.max_inflight = max_inflight
    self.max_pixels = max_pixels
    self._slots = threading.BoundedSemaphore(max_inflight)
    self._count_lock = threading.Lock()
    self.inflight = 0

  def check_model_name(self, name: str) -> None:
    if name != self.manager.name:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         f"Servable not found for request: Latest({name}); this server serves "
                         f"model {self.manager.name!r}")

  @contextlib.contextmanager
  def _inflight_slot(self):
    if not self._slots.acquire(blocking=False):
      raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"Server busy: {self.max_inflight} requests already in flight "
                         "(--max_inflight); retry later")
    with self._count_lock:
      self.inflight += 1
    try:
      yield
    finally:
      with self._count_lock:
        self.inflight -= 1
      self._slots.release()

  def predict(self, name: str, version: Optional[int], signature_name: str,
              inputs: dict, output_filter=(),
              is_active: Optional[Callable[[], bool]] = None) -> tuple[int, str, dict]:
    """Runs one request.

    Args:
      name: Model name from the request.
      version: Requested version or None for the latest.
      signature_name: "" means "serving_default".
      inputs: Input alias → numpy array (strings as an object array of bytes).
      output_filter: Output aliases to return (empty: all).
      is_active: False once the client has gone (deadline passed, cancelled): the model is then
        not run.

    Returns:
      (version served, signature name, output alias → numpy array).

    Raises:
      ServingError: With TF Serving's status codes.
    """
    self.check_model_name(name)
    signature_name = signature_name or DEFAULT_SIGNATURE
    with self._inflight_slot(), self.manager.acquire(version) as servable:
      signature = servable.signature_defs.get(signature_name)
      function = servable.functions.get(signature_name)
      if signature is None or function is None:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Serving signature key \"{signature_name}\" not found; this model has "
            f"{sorted(servable.functions)}")
      self._validate(signature_name, signature, inputs)
      wanted = list(output_filter) or list(signature.outputs)
      unknown = [key for key in wanted if key not in signature.outputs]
      if unknown:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"output_filter {unknown} not in signature {signature_name!r} outputs "
                           f"{sorted(signature.outputs)}")
      if is_active is not None and not is_active():
        raise ServingError(grpc.StatusCode.CANCELLED, "the client cancelled or its deadline "
                           "passed before the model ran")
      outputs = _run(function, inputs)
      return servable.version, signature_name, {key: outputs[key] for key in wanted}

  def _validate(self, signature_name: str, signature, inputs: dict) -> None:
    expected = set(signature.inputs)
    given = set(inputs)
    if expected != given:
      raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"signature {signature_name!r} takes inputs {sorted(expected)}; missing "
          f"{sorted(expected - given)}, unexpected {sorted(given - expected)}")
    for alias, info in signature.inputs.items():
      array = inputs[alias]
      want, got = _dtype_name(info.dtype), _array_dtype_name(array)
      if want != got:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {alias!r} of signature {signature_name!r} must be {want}, "
                           f"got {got}")
      if not info.tensor_shape.unknown_rank:
        dims = [d.size for d in info.tensor_shape.dim]
        if array.ndim != len(dims):
          raise ServingError(
              grpc.StatusCode.INVALID_ARGUMENT,
              f"input {alias!r} of signature {signature_name!r} must have rank {len(dims)} "
              f"(shape {_shape_text(dims)}), got shape {list(array.shape)}")
        for axis, (size, actual) in enumerate(zip(dims, array.shape)):
          if size >= 0 and size != actual:
            what = "channels" if axis == len(dims) - 1 and len(dims) == 4 else f"dim {axis}"
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input {alias!r} of signature {signature_name!r} must have {size} {what} "
                f"(shape {_shape_text(dims)}), got shape {list(array.shape)}")
      if array.ndim == 4:
        pixels = int(array.shape[0]) * int(array.shape[1]) * int(array.shape[2])
        if pixels > self.max_pixels:
          raise ServingError(
              grpc.StatusCode.INVALID_ARGUMENT,
              f"input {alias!r}: {array.shape[0]}×{array.shape[1]}×{array.shape[2]} = {pixels} "
              f"pixels exceeds this server's limit of {self.max_pixels} (--max_pixels); tile "
              "the image client-side")
      if got == "string":
        total = 0
        for item in array.reshape(-1):
          size = _image_header_size(item) if isinstance(item, bytes) else None
          if size:
            total += size[0] * size[1]
        if total > self.max_pixels:
          raise ServingError(
              grpc.StatusCode.INVALID_ARGUMENT,
              f"input {alias!r}: the encoded images declare {total} pixels in total, over this "
              f"server's limit of {self.max_pixels} (--max_pixels)")


def _shape_text(dims) -> str:
  return "[" + ", ".join("?" if d < 0 else str(d) for d in dims) + "]"


def _run(function, inputs: dict) -> dict:
  """Calls a signature function, mapping TF runtime errors to their gRPC codes."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  try:
    tensors = {key: tf.convert_to_tensor(value) for key, value in inputs.items()}
    result = function(**tensors)
    return {key: value.numpy() for key, value in result.items()}
  except tf.errors.OpError as e:
    raise ServingError(status_code_from_int(e.error_code), tf_error_message(e.message)) from e


_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "File \"",
             "[[{{node", "(most recent call last)")


def tf_error_message(text: str) -> str:
  """The cause in a TF runtime error, without its "Graph execution error"/node/trace lines."""
  lines = [line.strip() for line in text.splitlines()]
  kept = [line for line in lines if line and not any(n in line for n in _TF_NOISE)]
  return " ".join(kept) or _first_line(text)
