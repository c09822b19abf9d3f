"""The transport-independent part of `esrgan-serve`: model versions, validation and prediction.

Both front ends (gRPC in `server.py`, REST in `rest.py`) turn their requests into numpy inputs and
call `Predictor.predict`; errors are `ServingError`s carrying the gRPC status code that TF Serving
would return, which REST maps to an HTTP status.

Version management follows TF Serving's file-system source with the availability-preserving
policy (tensorflow_serving/core/availability_preserving_policy.h): integer-named subdirectories of
the base path are versions; the latest `max_versions` are aspired; a new version is loaded and made
AVAILABLE before an old one is unloaded; an old version is unloaded only after the requests using
it have finished. A version that failed to load is retried as soon as any file in its directory
changes, else after a doubling backoff (2 s … 60 s), while the previous version keeps serving.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from typing import Callable, Iterator, Optional

from absl import logging
import grpc

from esrgan_tf.export import versions
from esrgan_tf.serving import defaults, limits
from esrgan_tf.serving.errors import ServingError, shown, status_code_from_int

# Servable states of tensorflow_serving/apis/get_model_status.proto (ModelVersionStatus.State).
STATE_START, STATE_LOADING, STATE_AVAILABLE, STATE_UNLOADING, STATE_END = 10, 20, 30, 40, 50
STATE_NAMES = {STATE_START: "START", STATE_LOADING: "LOADING", STATE_AVAILABLE: "AVAILABLE",
               STATE_UNLOADING: "UNLOADING", STATE_END: "END"}
DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"

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
  scale: Optional[int] = None  # From the export's model facts; None for a foreign SavedModel.
  # Signature name → scale where the facts record one per signature (a multi-head export's heads
  # have different scales); others use `scale`.
  signature_scales: dict = dataclasses.field(default_factory=dict)

  def scale_for(self, signature_name: str) -> Optional[int]:
    """The upscaling factor of one signature's answer (None: unknown)."""
    return self.signature_scales.get(signature_name, self.scale)
  # The export's upscale_bytes decodes the first frame of an image only (model facts
  # "image_frames": "first"); else the server counts every frame a decoder would allocate.
  first_frame_only: bool = False


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
  scale, signature_scales, first_frame_only = _export_facts(path)
  return Servable(version=version, path=path, signature_defs=signature_defs,
                  functions=functions, module=module, scale=scale,
                  signature_scales=signature_scales, first_frame_only=first_frame_only)


def _valid_scale(scale) -> Optional[int]:
  return scale if isinstance(scale, int) and not isinstance(scale, bool) and scale > 0 else None

def _export_facts(path: str) -> tuple[Optional[int], dict, bool]:
  """From our export's model facts: the upscaling factor (to bound answers), the factor per
  signature where recorded (multi-head exports), and whether upscale_bytes decodes first frames
  only; (None, {}, False) for a foreign SavedModel."""
  from esrgan_tf.core.errors import ModelError  # pylint: disable=g-import-not-at-top
  from esrgan_tf.export import saved_model as saved_model_lib  # pylint: disable=g-import-not-at-top
  try:
    facts = saved_model_lib.read_model_facts(path)
  except ModelError:
    return None, {}, False
  signatures = facts.get("signatures")
  per_signature = {}
  if isinstance(signatures, dict):
    for name, entry in signatures.items():
      scale = _valid_scale(entry.get("scale")) if isinstance(entry, dict) else None
      if scale is not None:
        per_signature[name] = scale
  return (_valid_scale(facts.get("scale")), per_signature,
          facts.get("image_frames") == "first")


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

_version_dirs = versions.version_dirs


# A version that failed to load is retried at once when anything in its directory changes, and
# otherwise after a backoff doubling from RETRY_FIRST_SECONDS to RETRY_MAX_SECONDS (a copy that
# wrote saved_model.pb first and variables/ later must not stay failed forever).
RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS = 2.0, 60.0
_MAX_STATE_ENTRIES = 10_000  # Directory entries hashed into a version's state, at most.


def _signature_of(path: str):
  """Identity of a whole version directory (every file's name, size, mtime) to notice changes."""
  entries = []
  for root, dirs, files in os.walk(path):
    dirs.sort()
    for name in sorted(files):
      full = os.path.join(root, name)
      try:
        st = os.stat(full)
      except OSError:
        continue
      entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
      if len(entries) >= _MAX_STATE_ENTRIES:
        return tuple(entries)
  return tuple(entries)


@dataclasses.dataclass
class _Failure:
  state: tuple
  retry_at: float
  delay: float


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
    self._failed: dict[int, _Failure] = {}  # version → directory state and next retry time.
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
    now = time.monotonic()
    candidates = [v for v, path in present.items()
                  if v not in self._failed or now >= self._failed[v].retry_at
                  or self._failed[v].state != _signature_of(path)]
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
      previous = self._failed.get(version)
      delay = (RETRY_FIRST_SECONDS if previous is None
               else min(2 * previous.delay, RETRY_MAX_SECONDS))
      self._failed[version] = _Failure(_signature_of(path), time.monotonic() + delay, delay)
      logging.info("Will retry %s version %d when its files change or in %.0f s", self.name,
                   version, delay)
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

class Predictor:
  """Validates and runs Predict requests against a `ModelManager`, with bounded concurrency.

  Args:
    manager: The model.
    max_inflight: Concurrent Predict calls; one more gets RESOURCE_EXHAUSTED.
    max_pixels: Limit on N·H·W of every 4-D input (and on the summed header sizes of encoded
      images), checked before running the model.
    max_answer_bytes: Limit on the answer (raw tensor bytes, or the JSON text for REST),
      estimated from the input shape and the model's scale before running it; None: no limit.
  """

  def __init__(self, manager: ModelManager, *, max_inflight: int = 16,
               max_pixels: int = defaults.SERVER_MAX_PIXELS_PER_REQUEST,
               max_answer_bytes: Optional[int] = None):
    if max_inflight < 1:
      raise ValueError(f"max_inflight must be ≥ 1, got {max_inflight}")
    self.manager = manager
    self.max_inflight = max_inflight
    self.max_pixels = max_pixels
    self.max_answer_bytes = max_answer_bytes
    self._slots = threading.BoundedSemaphore(max_inflight)
    self._count_lock = threading.Lock()
    self.inflight = 0

  def check_model_name(self, name: str) -> None:
    if name != self.manager.name:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         f"Servable not found for request: Latest({shown(name)}); this server "
                         f"serves model {self.manager.name!r}")

  def has_free_slot(self) -> bool:
    """Whether a request would get a slot now (REST refuses early, before reading a body)."""
    return self.inflight < self.max_inflight

  @contextlib.contextmanager
  def inflight_slot(self):
    """Holds one of the `max_inflight` slots; RESOURCE_EXHAUSTED when none is free."""
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
              inputs, output_filter=(), is_active: Optional[Callable[[], bool]] = None,
              json_answer: bool = False) -> tuple[int, str, dict]:
    """Runs one request in an in-flight slot (see `predict_in_slot`)."""
    with self.inflight_slot():
      return self.predict_in_slot(name, version, signature_name, inputs, output_filter,
                                  is_active, json_answer)

  def predict_in_slot(self, name: str, version: Optional[int], signature_name: str,
                      inputs, output_filter=(), is_active: Optional[Callable[[], bool]] = None,
                      json_answer: bool = False) -> tuple[int, str, dict]:
    """Runs one request; the caller holds an `inflight_slot`.

    Args:
      name: Model name from the request.
      version: Requested version or None for the latest.
      signature_name: "" means "serving_default".
      inputs: Input alias → numpy array (strings as an object array of bytes), or a callable
        taking the SignatureDef and returning them (validating before it allocates).
      output_filter: Output aliases to return (empty: all).
      is_active: False once the client has gone (deadline passed, cancelled): the model is then
        not run.
      json_answer: The answer is REST JSON text (its size bound is per number, not per byte).

    Returns:
      (version served, signature name, output alias → numpy array).

    Raises:
      ServingError: With TF Serving's status codes.
    """
    self.check_model_name(name)
    signature_name = signature_name or DEFAULT_SIGNATURE
    with self.manager.acquire(version) as servable:
      signature = servable.signature_defs.get(signature_name)
      function = servable.functions.get(signature_name)
      if signature is None or function is None:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Serving signature key \"{shown(signature_name)}\" not found; this model has "
            f"{sorted(servable.functions)}")
      wanted = list(output_filter) or list(signature.outputs)
      unknown = [key for key in wanted if key not in signature.outputs]
      if unknown:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"output_filter {shown(unknown)} not in signature "
                           f"{shown(signature_name)!r} outputs "
                           f"{sorted(signature.outputs)}")
      if callable(inputs):
        inputs = inputs(signature)
      image_sizes = limits.validate_inputs(signature_name, signature, inputs, self.max_pixels,
                                           is_active, servable.first_frame_only)
      estimate = None
      scale = servable.scale_for(signature_name)
      if self.max_answer_bytes is not None and scale is not None:
        estimate = limits.estimate_answer(scale, signature, wanted, inputs, image_sizes,
                                          json_answer)
      if estimate is not None:
        self._check_answer(estimate, "would be")
      if is_active is not None and not is_active():
        raise ServingError(grpc.StatusCode.CANCELLED, "the client cancelled or its deadline "
                           "passed before the model ran")
      outputs = _run(function, inputs)
      answer = {key: outputs[key] for key in wanted}
      if estimate is None and not json_answer:  # Unknown scale: the bound after the fact.
        self._check_answer(sum(limits.nbytes(a) for a in answer.values()), "is")
      return servable.version, signature_name, answer

  def _check_answer(self, size: int, verb: str) -> None:
    if self.max_answer_bytes is not None and size > self.max_answer_bytes:
      raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"the answer {verb} {size / 2**20:.1f} MB, over this server's message limit of "
          f"{self.max_answer_bytes / 2**20:.0f} MB (--max_message_mb); send smaller tiles, or "
          "uint8/encoded images instead of float32")

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
