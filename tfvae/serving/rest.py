"""TF Serving's REST API: JSON request parsing (row and columnar formats), JSON responses, and the
``http.server`` handler for ``/v1/models/...`` (predict, status, metadata)."""

from __future__ import annotations

import json
import logging
import re
import socket
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format

from tfvae.serving.errors import ServingError, _invalid
from tfvae.serving.servable import InputSpec, Signature

if TYPE_CHECKING:
    from tfvae.serving.app import ServingApp

log = logging.getLogger("tfvae.serve")

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
