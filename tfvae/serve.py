"""``python -m tfvae.serve``: TF Serving's REST and gRPC predict APIs over tfvae's SavedModels.

One process serves every model of a TF Serving ``models.config`` (``model_config_list`` text
format, as written by ``python -m tfvae.export``), or one model given by ``--model_name`` and
``--model_base_path``, on

- REST (``--rest_api_port``): ``GET /v1/models/{name}[/versions/{v}|/labels/{l}]`` (model
  status), ``GET .../metadata`` (signature defs), ``POST .../{name}[/versions/{v}]:predict``
  with ``signature_name`` and ``instances`` (row format) or ``inputs`` (columnar format);
  errors are ``{"error": "..."}`` with TF Serving's HTTP status for the error code;
- gRPC (``--port``): ``tensorflow.serving.PredictionService`` ``Predict`` and
  ``GetModelMetadata``, and ``tensorflow.serving.ModelService`` ``GetModelStatus``, with the
  protos of the ``tensorflow-serving-api`` package, so TF Serving clients work unchanged.

Every version directory is loaded with ``tf.saved_model.load`` and warmed up once. Base paths
are polled (``--file_system_poll_wait_seconds``) so a version directory dropped into the tree
is served without a restart, and the config file is re-read when it changes. A request without
a version gets the newest available version. A version that fails to load is logged, reported
by the status API, and retried only when its files change; the other models keep serving.

Differences from ``tensorflow_model_server``: port 0 picks a free port (-1 disables a server;
TF Serving uses 0 to disable REST), the config file is re-read by default, request limits are
``--max_batch_size`` / ``--max_request_bytes``, and ``--ready_file`` reports the bound ports.
Classify/Regress/MultiInference are not implemented (tfvae exports predict signatures only).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

log = logging.getLogger("tfvae.serve")

DEFAULT_SIGNATURE = "serving_default"
_VERSION_DIR = re.compile(r"\d+")

#: TF Serving's HTTP status for each error code (model_servers/http_server.cc).
HTTP_STATUS = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
    "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}
_CODE_BY_INT = {c.value[0]: c for c in grpc.StatusCode}


class ServingError(Exception):
    """A request error: a gRPC status code and a message (HTTP status from :data:`HTTP_STATUS`)."""

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.http_status = http_status or HTTP_STATUS.get(code.name, 500)


def _invalid(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def _clean_tf_message(msg: str) -> str:
    """The useful part of a TF runtime error (assert message, or the first line without node noise)."""
    m = re.search(r"assertion failed: \[(.*?)\]", msg)
    if m:
        return m.group(1)
    msg = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", msg)
    msg = msg.split("\n\t [[")[0]
    msg = re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", msg).strip()
    lines = [l for l in msg.splitlines() if l.strip() and not l.startswith(("Graph execution error", "Detected at"))]
    return lines[-1].strip() if lines else msg


# ---------------------------------------------------------------------- one loaded version
@dataclass
class InputSpec:
    dtype: tf.DType
    shape: list[int] | None  # None: unknown rank; -1: any size


@dataclass
class Signature:
    fn: object
    inputs: dict[str, InputSpec]
    outputs: list[str]


#: TF Serving's warm-up file inside a version's ``assets.extra`` (see tfvae.speaker.export.write_warmup).
WARMUP_FILE = "tf_serving_warmup_requests"


class Servable:
    """One model version: the loaded SavedModel, its signature defs and a validated predict."""

    def __init__(self, name: str, version: int, path: Path, max_batch_size: int):
        self.name, self.version, self.path = name, version, path
        self.max_batch_size = max_batch_size
        sm = saved_model_pb2.SavedModel()
        sm.ParseFromString((path / "saved_model.pb").read_bytes())
        graphs = [g for g in sm.meta_graphs if "serve" in g.meta_info_def.tags] or list(sm.meta_graphs)
        if not graphs:
            raise ValueError("saved_model.pb holds no MetaGraphDef")
        self.signature_defs = graphs[0].signature_def
        self.loaded = tf.saved_model.load(str(path), tags=["serve"])
        self.signatures: dict[str, Signature] = {}
        for key, fn in self.loaded.signatures.items():
            sd = self.signature_defs[key]
            inputs = {k: InputSpec(tf.dtypes.as_dtype(t.dtype),
                                   None if t.tensor_shape.unknown_rank else [d.size for d in t.tensor_shape.dim])
                      for k, t in sd.inputs.items()}
            self.signatures[key] = Signature(fn, inputs, sorted(sd.outputs))
        self._metadata_json: dict | None = None
        self._warm_up()

    def _warm_up(self) -> None:
        """Run the SavedModel's warm-up requests (``assets.extra/tf_serving_warmup_requests``, TF Serving's
        format: a TFRecord of ``PredictionLog``), or else every signature once on a batch of 1 of zeros."""
        warm = self.path / "assets.extra" / WARMUP_FILE
        if warm.is_file():
            from tensorflow_serving.apis import prediction_log_pb2

            for record in tf.data.TFRecordDataset(str(warm)):
                req = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
                sig = self.signatures[req.model_spec.signature_name or DEFAULT_SIGNATURE]
                sig.fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in req.inputs.items()})
            return
        for key, sig in self.signatures.items():
            args = {}
            for k, spec in sig.inputs.items():
                shape = [1 if d is None or d < 0 else d for d in (spec.shape or [1])]
                value = np.ones(shape) if k == "keep" else np.zeros(shape)
                args[k] = tf.constant(value.astype(spec.dtype.as_numpy_dtype) if spec.dtype != tf.string
                                      else np.full(shape, b""))
            sig.fn(**args)

    def signature(self, name: str, api: str) -> Signature:
        key = name or DEFAULT_SIGNATURE
        sig = self.signatures.get(key)
        if sig is None:
            if api == "rest":  # TF Serving's REST front end checks the name first (InvalidArgument)
                raise _invalid(f'Serving signature name: "{key}" not found in signature def')
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.')
        return sig

    def predict(self, sig: Signature, inputs: dict[str, np.ndarray], output_filter=()) -> dict[str, np.ndarray]:
        """Validate ``inputs`` against ``sig`` and run it; raises :class:`ServingError`."""
        if set(inputs) != set(sig.inputs):
            sent, want = set(inputs), set(sig.inputs)
            raise _invalid(
                f"input size does not match signature: {len(sent)}!={len(want)} len({{{','.join(sorted(sent))}}}) "
                f"!= len({{{','.join(sorted(want))}}}). Sent extra: {{{','.join(sorted(sent - want))}}}. "
                f"Missing but required: {{{','.join(sorted(want - sent))}}}.")
        tensors = {}
        for k, arr in inputs.items():
            spec = sig.inputs[k]
            if arr.dtype != spec.dtype.as_numpy_dtype and not (spec.dtype == tf.string and arr.dtype == object):
                raise _invalid(f"input '{k}' has dtype {tf.dtypes.as_dtype(arr.dtype).name} but the signature "
                               f"expects {spec.dtype.name}")
            if spec.shape is not None:
                if arr.ndim != len(spec.shape) or any(d >= 0 and d != s for d, s in zip(spec.shape, arr.shape)):
                    raise _invalid(f"input '{k}' has shape {_shape_str(arr.shape)} but the signature expects "
                                   f"{_shape_str(spec.shape)}")
                if spec.shape and spec.shape[0] < 0 and arr.shape[0] > self.max_batch_size:
                    raise _invalid(f"batch size {arr.shape[0]} of input '{k}' is larger than the maximum batch "
                                   f"size {self.max_batch_size} (--max_batch_size)")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                bad = np.argwhere(~np.isfinite(arr))[0].tolist()
                raise _invalid(f"input '{k}' holds NaN or infinite values (first at index {bad}); "
                               "features must be finite")
            tensors[k] = tf.constant(arr)
        wanted = list(output_filter) or sig.outputs
        for alias in wanted:
            if alias not in sig.outputs:
                raise _invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                               f"the set {{{','.join(sig.outputs)}}}.")
        if len(set(wanted)) != len(wanted):
            raise _invalid("duplicate output tensor alias in output_filter")
        try:
            out = sig.fn(**tensors)
        except tf.errors.OpError as e:
            raise ServingError(_CODE_BY_INT.get(e.error_code, grpc.StatusCode.UNKNOWN), _clean_tf_message(e.message))
        return {k: out[k].numpy() for k in wanted}

    def metadata_json(self) -> dict:
        if self._metadata_json is None:
            resp = self.metadata_proto()
            sdm = get_model_metadata_pb2.SignatureDefMap()
            resp.metadata["signature_def"].Unpack(sdm)
            opts = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
            self._metadata_json = {"model_spec": json_format.MessageToDict(resp.model_spec, **opts),
                                   "metadata": {"signature_def": json_format.MessageToDict(sdm, **opts)}}
        return self._metadata_json

    def metadata_proto(self) -> get_model_metadata_pb2.GetModelMetadataResponse:
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        resp.model_spec.name = self.name
        resp.model_spec.version.value = self.version
        sdm = get_model_metadata_pb2.SignatureDefMap()
        for k, v in self.signature_defs.items():
            sdm.signature_def[k].CopyFrom(v)
        resp.metadata["signature_def"].Pack(sdm)
        return resp


def _shape_str(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


# ---------------------------------------------------------------------- models and versions
def _dir_stamp(path: Path) -> tuple:
    """Changes whenever files of a version directory are added, removed or rewritten."""
    items = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue
            items.append((os.path.relpath(os.path.join(root, f), path), st.st_size, st.st_mtime_ns))
    return tuple(items)


@dataclass
class ModelState:
    config: model_server_config_pb2.ModelConfig
    versions: dict[int, Servable] = field(default_factory=dict)
    failed: dict[int, tuple[tuple, str]] = field(default_factory=dict)  # version -> (stamp, error)
    seen: dict[int, tuple] = field(default_factory=dict)  # stamp at the previous scan

    @property
    def name(self) -> str:
        return self.config.name


class ModelManager:
    """Keeps the versions each model's policy asks for loaded; polls the file system for changes."""

    def __init__(self, config_path: str | Path | None = None, model_name: str | None = None,
                 model_base_path: str | None = None, poll_seconds: float = 1.0,
                 config_poll_seconds: float = 1.0, max_batch_size: int = 1024):
        if (config_path is None) == (model_base_path is None):
            raise ValueError("give either a model config file or --model_base_path")
        self.config_path = Path(config_path) if config_path else None
        self.single = (model_name or "default", model_base_path) if model_base_path else None
        self.poll_seconds, self.config_poll_seconds = poll_seconds, config_poll_seconds
        self.max_batch_size = max_batch_size
        self.models: dict[str, ModelState] = {}
        self._config_mtime = None
        self._last_config_check = 0.0
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._read_config(initial=True)

    # -- configuration
    def _parse_config(self) -> list[model_server_config_pb2.ModelConfig]:
        if self.single:
            c = model_server_config_pb2.ModelConfig(name=self.single[0], base_path=self.single[1],
                                                    model_platform="tensorflow")
            return [c]
        cfg = model_server_config_pb2.ModelServerConfig()
        text_format.Parse(self.config_path.read_text(), cfg)
        if cfg.WhichOneof("config") != "model_config_list":
            raise ValueError(f"{self.config_path}: expected a model_config_list")
        configs = list(cfg.model_config_list.config)
        names = [c.name for c in configs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{self.config_path}: duplicate model names {dup}")
        for c in configs:
            if not c.name or not c.base_path:
                raise ValueError(f"{self.config_path}: every config needs a name and a base_path")
            if c.model_platform not in ("", "tensorflow"):
                raise ValueError(f"{self.config_path}: model {c.name}: model_platform {c.model_platform!r} "
                                 "is not supported (only 'tensorflow')")
        return configs

    def _read_config(self, initial: bool = False) -> None:
        if self.single:
            if initial:
                self.models = {c.name: ModelState(c) for c in self._parse_config()}
            return
        mtime = self.config_path.stat().st_mtime_ns if self.config_path.exists() else None
        if not initial and mtime == self._config_mtime:
            return
        try:
            configs = self._parse_config()
        except Exception as e:  # noqa: BLE001
            if initial:
                raise
            log.error("could not re-read %s, keeping the models as they are: %s", self.config_path, e)
            self._config_mtime = mtime
            return
        self._config_mtime = mtime
        models = {}
        for c in configs:
            old = self.models.get(c.name)
            if old is not None and old.config.base_path == c.base_path:
                old.config = c
                models[c.name] = old
            else:
                models[c.name] = ModelState(c)
        for name in set(self.models) - set(models):
            log.info("model %s removed from the config: unloading it", name)
        for name in set(models) - set(self.models):
            if not initial:
                log.info("model %s added to the config", name)
        self.models = models  # readers see the old or the new dict, never a mix

    # -- versions
    @staticmethod
    def _aspired(state: ModelState, on_disk: list[int]) -> list[int]:
        policy = state.config.model_version_policy
        kind = policy.WhichOneof("policy_choice")
        if kind == "all":
            return on_disk
        if kind == "specific":
            return [v for v in on_disk if v in set(policy.specific.versions)]
        n = max(1, policy.latest.num_versions) if kind == "latest" else 1  # TF Serving's default: latest 1
        return sorted(on_disk)[-n:]

    def _scan(self, state: ModelState, initial: bool) -> None:
        base = Path(state.config.base_path)
        try:
            on_disk = sorted(int(p.name) for p in base.iterdir() if p.is_dir() and _VERSION_DIR.fullmatch(p.name))
        except OSError as e:
            if initial or state.versions or not state.failed.get(-1):
                log.error("model %s: cannot list base path %s: %s", state.name, base, e)
            state.failed[-1] = ((), f"cannot list base path {base}: {e}")
            on_disk = []
        else:
            state.failed.pop(-1, None)
        aspired = self._aspired(state, on_disk)
        versions = dict(state.versions)
        for v in list(versions):
            if v not in aspired:
                log.info("model %s: unloading version %d", state.name, v)
                del versions[v]
        for v in aspired:
            if v in versions:
                continue
            path = base / str(v)
            stamp = _dir_stamp(path)
            stable = initial or state.seen.get(v) == stamp  # unchanged since the last scan: not being written
            state.seen[v] = stamp
            if not stable or (v in state.failed and state.failed[v][0] == stamp):
                continue
            t0 = time.perf_counter()
            try:
                versions[v] = Servable(state.name, v, path, self.max_batch_size)
            except Exception as e:  # noqa: BLE001 - a broken version must not take the server down
                msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                state.failed[v] = (stamp, msg)
                log.error("model %s: version %d at %s failed to load (kept the other versions): %s",
                          state.name, v, path, msg)
                continue
            state.failed.pop(v, None)
            log.info("model %s: version %d loaded from %s in %.2f s (signatures: %s)", state.name, v, path,
                     time.perf_counter() - t0, ", ".join(sorted(versions[v].signatures)))
        for v in list(state.failed):
            if v >= 0 and v not in on_disk:
                del state.failed[v]
        for v in list(state.seen):
            if v not in on_disk:
                del state.seen[v]
        state.versions = versions  # atomic swap: requests see the old or the new set

    def refresh(self, initial: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if self.config_poll_seconds > 0 and now - self._last_config_check >= self.config_poll_seconds:
                self._last_config_check = now
                self._read_config()
            for state in list(self.models.values()):
                self._scan(state, initial)

    def start(self) -> None:
        self.refresh(initial=True)
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll, name="tfvae-serve-poll", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001
                log.exception("polling the model directories failed; trying again")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- lookup
    def state(self, name: str) -> ModelState:
        state = self.models.get(name)
        if state is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
        return state

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        state = self.models.get(name)
        versions = state.versions if state else {}
        if label:
            if state is None or label not in state.config.version_labels:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Label({name}, {label})")
            version = state.config.version_labels[label]
        if version is None:
            if not versions:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        servable = versions.get(int(version))
        if servable is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version})")
        return servable

    def resolve_spec(self, spec) -> Servable:
        """A servable from a ``tensorflow.serving.ModelSpec``."""
        if not spec.name:
            raise _invalid("Missing ModelSpec name")
        which = spec.WhichOneof("version_choice")
        return self.resolve(spec.name, spec.version.value if which == "version" else None,
                            spec.version_label if which == "version_label" else None)

    def status(self, name: str, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
        state = self.models.get(name)
        if state is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        resp = get_model_status_pb2.GetModelStatusResponse()
        # snapshots (one C-level copy each, atomic under the GIL): the poll thread mutates these while reloading
        versions, failed = dict(state.versions), dict(state.failed)
        entries = {v: ("AVAILABLE", 0, "") for v in versions}
        for v, (_, msg) in failed.items():
            if v >= 0 and v not in entries:
                entries[v] = ("END", 2, msg)  # UNKNOWN: failed to load
        if version is not None:
            if version not in entries:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}")
            entries = {version: entries[version]}
        if not entries:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        for v in sorted(entries, reverse=True):
            st, code, msg = entries[v]
            s = resp.model_version_status.add()
            s.version = v
            s.state = get_model_status_pb2.ModelVersionStatus.State.Value(st)
            s.status.error_code = code
            s.status.error_message = msg
        return resp


# ---------------------------------------------------------------------- REST
_PREDICT_RE = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)",
                         re.IGNORECASE)
_STATUS_RE = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?",
                        re.IGNORECASE)


def _json_type(v) -> str:
    return {dict: "Object", list: "Array", str: "String", bool: "True" if v is True else "False",
            type(None): "Null"}.get(type(v), "Number")


def _first_non_number(v):
    if isinstance(v, list):
        for x in v:
            bad = _first_non_number(x)
            if bad is not None:
                return bad
        return None
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) else (v,)


def _json_to_array(value, name: str, spec: InputSpec, scan: bool = False) -> np.ndarray:
    """A JSON value (nested lists) as an array of the input's dtype, checked like TF Serving does."""
    if spec.dtype == tf.string:
        arr = np.asarray(value, dtype=object)
        if not all(isinstance(x, str) for x in arr.flat):
            raise _invalid(f"input '{name}': JSON values must be strings for dtype string")
        return np.vectorize(lambda s: s.encode(), otypes=[object])(arr) if arr.size else arr
    bad = None
    try:
        arr = np.asarray(value)
    except ValueError:
        raise _invalid(f"input '{name}': the JSON lists are ragged; a tensor needs lists of equal length "
                       "at each level") from None
    if arr.dtype.kind not in "iuf" or scan:  # numpy reads true/false in a list of numbers as 1/0
        bad = _first_non_number(value)
    elif spec.dtype.is_integer and arr.dtype.kind == "f":
        raise _invalid(f"input '{name}': JSON numbers must be integers for dtype {spec.dtype.name}")
    if bad is not None or arr.dtype.kind not in "iuf":
        v = bad[0] if bad else value
        raise _invalid(f"JSON Value: {json.dumps(v)[:80]} Type: {_json_type(v)} is not of expected type: "
                       f"{spec.dtype.name} (input '{name}')")
    return arr.astype(spec.dtype.as_numpy_dtype, copy=False)


def _parse_json_body(body: bytes) -> dict:
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise _invalid(f"JSON Parse error: {e}") from None
    if not isinstance(req, dict):
        raise _invalid("JSON Parse error: the request body must be a JSON object")
    return req


def _parse_predict_body(req: dict, sig: Signature, scan: bool = False) -> tuple[dict[str, np.ndarray], str]:
    """Request JSON object -> (inputs, "row" | "columnar") for ``sig``.

    ``scan``: check every JSON value's type (needed only when the body holds ``true``/``false``).
    """
    has_rows, has_cols = "instances" in req, "inputs" in req
    if has_rows and has_cols:
        raise _invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    names = list(sig.inputs)
    if has_rows:
        rows = req["instances"]
        if not isinstance(rows, list):
            raise _invalid("'instances' must be a JSON list (one item per example)")
        if not rows:
            raise _invalid("'instances' is an empty list")
        if all(isinstance(r, dict) and set(r) != {"b64"} for r in rows):
            cols = {}
            for i, r in enumerate(rows):
                if set(r) != set(names):
                    missing, extra = sorted(set(names) - set(r)), sorted(set(r) - set(names))
                    raise _invalid(f"instance {i}: named inputs must be exactly {{{','.join(sorted(names))}}}"
                                   + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))
                for k in names:
                    cols.setdefault(k, []).append(r[k])
        elif len(names) == 1 and not any(isinstance(r, dict) for r in rows):
            cols = {names[0]: rows}
        else:
            raise _invalid(f"the signature has inputs {{{','.join(sorted(names))}}}: each instance must be an "
                           "object with one key per input" if len(names) > 1 else
                           "instances must all be values, or all objects keyed by the input name")
        return {k: _json_to_array(v, k, sig.inputs[k], scan) for k, v in cols.items()}, "row"
    if has_cols:
        value = req["inputs"]
        if isinstance(value, dict) and not (len(names) == 1 and set(value) == {"b64"}):
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise _invalid(f"JSON object: does not have named input: {unknown[0]}")
            cols = value
        elif len(names) == 1:
            cols = {names[0]: value}
        else:
            raise _invalid(f"the signature has inputs {{{','.join(sorted(names))}}}: 'inputs' must be an object "
                           "keyed by input name")
        return {k: _json_to_array(v, k, sig.inputs[k], scan) for k, v in cols.items()}, "columnar"
    raise _invalid("Missing 'inputs' or 'instances' key")


def _to_json_value(arr: np.ndarray, name: str):
    if arr.dtype == object or arr.dtype.kind == "S":
        import base64

        if name.endswith("_bytes"):
            conv = lambda b: {"b64": base64.b64encode(b).decode()}  # noqa: E731
        else:
            conv = lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)  # noqa: E731
        return np.vectorize(conv, otypes=[object])(arr).tolist() if arr.size else arr.tolist()
    return arr.tolist()


def _predict_response(outputs: dict[str, np.ndarray], fmt: str) -> dict:
    if fmt == "columnar":
        if len(outputs) == 1:
            return {"outputs": _to_json_value(next(iter(outputs.values())), next(iter(outputs)))}
        return {"outputs": {k: _to_json_value(v, k) for k, v in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": _to_json_value(next(iter(outputs.values())), next(iter(outputs)))}
    sizes = {v.shape[0] if v.ndim else None for v in outputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise _invalid("the outputs have different batch sizes; use the columnar ('inputs') format")
    cols = {k: _to_json_value(v, k) for k, v in outputs.items()}
    return {"predictions": [{k: cols[k][i] for k in cols} for i in range(sizes.pop())]}


class _RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "tfvae.serve"

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, fmt, *args):  # noqa: D401 - quiet unless debugging
        log.debug("REST %s: %s", self.address_string(), fmt % args)

    def setup(self) -> None:
        super().setup()
        # one small answer per request: do not let Nagle's algorithm wait for the client's delayed ACK
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n" + body)  # headers and body in one write
        self.flush_headers()

    def _error(self, e: ServingError) -> None:
        self._send(e.http_status, {"error": e.message})

    def _body(self) -> bytes:
        limit = self.server.app.max_request_bytes
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "chunked request bodies are not supported; "
                               "send Content-Length", http_status=411)
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.close_connection = True
            raise _invalid("bad Content-Length header") from None
        if n > limit:
            if n <= 16 * limit:  # read and drop it, so that the client reads our answer
                left = n
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
            else:
                self.close_connection = True
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"request body of {n} bytes is larger than the limit of {limit} bytes "
                               "(--max_request_bytes)", http_status=413)
        return self.rfile.read(n) if n else b""

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str) -> None:
        app: ServingApp = self.server.app
        with app.in_flight_lock:
            app.in_flight += 1
        try:
            self._dispatch(app, method)
        finally:
            with app.in_flight_lock:
                app.in_flight -= 1

    def _dispatch(self, app: "ServingApp", method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = self._body() if method == "POST" else b""
            if not path.lower().startswith("/v1/"):
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Not found: {method} {path}")
            m = _PREDICT_RE.fullmatch(path) if method == "POST" else _STATUS_RE.fullmatch(path)
            if m is None:
                raise _invalid(f"Malformed request: {method} {path}")
            name = urllib.parse.unquote(m.group(1)) if m.group(1) else ""
            version = int(m.group(2)) if m.group(2) else None
            label = urllib.parse.unquote(m.group(3)) if m.group(3) else None
            if method == "POST":
                if m.group(4).lower() != "predict":
                    raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                       f"{m.group(4)} is not implemented by tfvae.serve; use :predict")
                self._send(200, app.rest_predict(name, version, label, body))
            else:
                if not name:
                    raise _invalid("Missing model name in request.")
                if m.group(4):
                    self._send(200, app.manager.resolve(name, version, label).metadata_json())
                else:
                    if label:
                        version = app.manager.resolve(name, None, label).version
                    resp = app.manager.status(name, version)
                    self._send(200, json_format.MessageToDict(resp, preserving_proto_field_name=True,
                                                              always_print_fields_with_no_presence=True))
        except ServingError as e:
            self._error(e)
        except Exception as e:  # noqa: BLE001 - answer, log, keep serving
            log.exception("REST %s %s failed", method, path)
            self._error(ServingError(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}"))


class _RestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


# ---------------------------------------------------------------------- gRPC
def _tensor_to_array(name: str, t, spec: InputSpec | None) -> np.ndarray:
    if spec is not None and t.dtype != spec.dtype.as_datatype_enum:
        got = tf.dtypes.as_dtype(t.dtype).name if t.dtype else "DT_INVALID"
        raise _invalid(f"input '{name}' has dtype {got} but the signature expects {spec.dtype.name}")
    try:
        return tf.make_ndarray(t)
    except Exception as e:  # noqa: BLE001
        raise _invalid(f"input '{name}': malformed TensorProto: {e}") from None


def _fill_tensor(t, arr: np.ndarray) -> None:
    if arr.dtype == object or arr.dtype.kind in "SU":
        t.CopyFrom(tf.make_tensor_proto(arr))
        return
    t.dtype = tf.dtypes.as_dtype(arr.dtype).as_datatype_enum
    for d in arr.shape:
        t.tensor_shape.dim.add(size=int(d))
    t.tensor_content = np.ascontiguousarray(arr).tobytes()


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, app: "ServingApp"):
        self.app = app

    def Predict(self, request, context):  # noqa: N802
        try:
            servable = self.app.manager.resolve_spec(request.model_spec)
            sig = servable.signature(request.model_spec.signature_name, "grpc")
            if len(request.inputs) > len(sig.inputs) or any(k not in sig.inputs for k in request.inputs):
                inputs = {k: np.zeros(0) for k in request.inputs}  # reported by predict's size check
            else:
                inputs = {k: _tensor_to_array(k, t, sig.inputs[k]) for k, t in request.inputs.items()}
            outputs = servable.predict(sig, inputs, request.output_filter)
            resp = predict_pb2.PredictResponse()
            resp.model_spec.name = servable.name
            resp.model_spec.version.value = servable.version
            resp.model_spec.signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            for k, v in outputs.items():
                _fill_tensor(resp.outputs[k], v)
            return resp
        except ServingError as e:
            err = e
        except Exception as e:  # noqa: BLE001
            log.exception("gRPC Predict failed")
            err = ServingError(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
        context.abort(err.code, err.message)

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            if not request.model_spec.name:
                raise _invalid("Missing ModelSpec")
            if not request.metadata_field:
                raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for f in request.metadata_field:
                if f != "signature_def":
                    raise _invalid(f"Metadata field {f} is not supported")
            return self.app.manager.resolve_spec(request.model_spec).metadata_proto()
        except ServingError as e:
            err = e
        context.abort(err.code, err.message)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, app: "ServingApp"):
        self.app = app

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            spec = request.model_spec
            if not spec.name:
                raise _invalid("Missing ModelSpec")
            which = spec.WhichOneof("version_choice")
            version = spec.version.value if which == "version" else None
            if which == "version_label":
                version = self.app.manager.resolve(spec.name, None, spec.version_label).version
            return self.app.manager.status(spec.name, version)
        except ServingError as e:
            err = e
        context.abort(err.code, err.message)


# ---------------------------------------------------------------------- the server
class ServingApp:
    """REST and gRPC servers over one :class:`ModelManager`; ``start()`` / ``stop()``."""

    def __init__(self, manager: ModelManager, host: str = "0.0.0.0", rest_api_port: int = 8501, port: int = 8500,
                 max_request_bytes: int = 64 << 20, grpc_max_threads: int = 16):
        self.manager, self.host = manager, host
        self.rest_api_port, self.port = rest_api_port, port
        self.max_request_bytes, self.grpc_max_threads = max_request_bytes, grpc_max_threads
        self._rest: _RestServer | None = None
        self.in_flight, self.in_flight_lock = 0, threading.Lock()  # REST requests being answered
        self._rest_thread: threading.Thread | None = None
        self._grpc: grpc.Server | None = None

    def rest_predict(self, name, version, label, body: bytes) -> dict:
        servable = self.manager.resolve(name, version, label)
        req = _parse_json_body(body)
        sig_name = req.get("signature_name", "")
        if not isinstance(sig_name, str):
            raise _invalid(f"JSON Value: {json.dumps(sig_name)[:80]} not formatted correctly. 'signature_name' key "
                           "must be a string value.")
        sig = servable.signature(sig_name, "rest")
        inputs, fmt = _parse_predict_body(req, sig, scan=b"true" in body or b"false" in body)
        return _predict_response(servable.predict(sig, inputs), fmt)

    def start(self) -> "ServingApp":
        self.manager.start()
        if self.port >= 0:
            opts = [("grpc.max_receive_message_length", self.max_request_bytes),
                    ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)]
            self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=self.grpc_max_threads,
                                                                thread_name_prefix="tfvae-grpc"), options=opts)
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(self), self._grpc)
            model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self), self._grpc)
            bound = self._grpc.add_insecure_port(f"{self.host}:{self.port}")
            if bound == 0:
                raise OSError(f"cannot bind the gRPC port {self.host}:{self.port}")
            self.port = bound
            self._grpc.start()
            log.info("gRPC API at %s:%d", self.host, self.port)
        if self.rest_api_port >= 0:
            self._rest = _RestServer((self.host, self.rest_api_port), _RestHandler)
            self._rest.app = self
            self.rest_api_port = self._rest.server_address[1]
            self._rest_thread = threading.Thread(target=self._rest.serve_forever, kwargs={"poll_interval": 0.2},
                                                 name="tfvae-rest", daemon=True)
            self._rest_thread.start()
            log.info("REST API at http://%s:%d/v1/models/<name>", self.host, self.rest_api_port)
        return self

    def stop(self, grace: float = 2.0) -> None:
        """Stop accepting requests, give running ones ``grace`` seconds, stop polling."""
        done = self._grpc.stop(grace) if self._grpc is not None else None
        if self._rest is not None:
            self._rest.shutdown()
            self._rest.server_close()
            t0 = time.monotonic()
            while self.in_flight and time.monotonic() - t0 < grace:
                time.sleep(0.01)
        if done is not None:
            done.wait()
        self.manager.stop()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tfvae.serve", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve SavedModels over TF Serving's REST and gRPC predict APIs.")
    p.add_argument("--model_config_file", help="TF Serving models.config (model_config_list text format)")
    p.add_argument("--model_name", default="default", help="model name when serving --model_base_path")
    p.add_argument("--model_base_path", help="serve this one model directory (holding version directories)")
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free port, -1: no gRPC)")
    p.add_argument("--rest_api_port", type=int, default=8501, help="REST port (0: any free port, -1: no REST)")
    p.add_argument("--host", default="0.0.0.0", help="address to bind")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                   help="how often base paths are polled for new or removed versions (0: never)")
    p.add_argument("--model_config_file_poll_wait_seconds", type=float, default=1.0,
                   help="how often the config file is checked for changes (0: never)")
    p.add_argument("--max_batch_size", type=int, default=1024, help="largest batch a request may send")
    p.add_argument("--max_request_bytes", type=int, default=64 << 20,
                   help="largest REST body / gRPC message accepted")
    p.add_argument("--grpc_max_threads", type=int, default=16, help="gRPC worker threads")
    p.add_argument("--ready_file", help="write {'port', 'rest_api_port', 'pid'} as JSON here once serving")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s tfvae.serve %(levelname)s %(message)s")
    if bool(args.model_config_file) == bool(args.model_base_path):
        print("tfvae.serve: error: give --model_config_file or --model_base_path (one of them)", file=sys.stderr)
        return 2
    try:
        manager = ModelManager(args.model_config_file, args.model_name, args.model_base_path,
                               poll_seconds=args.file_system_poll_wait_seconds,
                               config_poll_seconds=args.model_config_file_poll_wait_seconds,
                               max_batch_size=args.max_batch_size)
        app = ServingApp(manager, args.host, args.rest_api_port, args.port, args.max_request_bytes,
                         args.grpc_max_threads).start()
    except (OSError, ValueError, text_format.ParseError) as e:
        print(f"tfvae.serve: error: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    if args.ready_file:
        tmp = Path(args.ready_file).with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": app.port, "rest_api_port": app.rest_api_port, "pid": os.getpid()}))
        os.replace(tmp, args.ready_file)
    log.info("serving %d model(s): %s", len(manager.models), ", ".join(sorted(manager.models)))
    while not stop.wait(1.0):
        pass
    log.info("shutting down")
    app.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
