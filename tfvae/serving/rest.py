"""TF Serving's REST API: JSON request parsing (row and columnar formats), JSON responses, and
:class:`RestServer`, the aiohttp front end for ``/v1/models/...`` and ``/monitoring/prometheus/metrics``.

Built for hostile clients: aiohttp parses HTTP and closes connections idle for ``idle_timeout_s``; a
body over ``max_request_bytes`` is refused from its Content-Length (413) before it is read; a body must
arrive within ``idle_timeout_s`` (408); predicts run in a bounded worker pool, with 503 at once beyond
``num_threads + max_queue`` and 504 after ``timeout_s``; a body that is not a valid request is a 400.
With ``ssl_context`` it serves HTTPS only. Metadata lists the signatures the app's policy allows."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import threading
import time
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc
import numpy as np
import tensorflow as tf
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf import json_format

from tfvae.serving.errors import ServingError, _invalid
from tfvae.serving.metrics import PROMETHEUS_PATH, Metrics, RequestInfo
from tfvae.serving.servable import InputSpec, Signature

if TYPE_CHECKING:
    from tfvae.serving.app import ServingApp

log = logging.getLogger("tfvae.serve")

_PREDICT_RE = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d{1,18})|/labels/([^/:]+))?:(classify|regress|predict)",
                         re.IGNORECASE)
_STATUS_RE = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d{1,18})|/labels/([^/:]+))?(?:/(metadata))?",
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
        return np.vectorize(lambda s: s.encode("utf-8", "surrogatepass"), otypes=[object])(arr) if arr.size else arr
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
    except (ValueError, UnicodeDecodeError) as e:  # invalid JSON or invalid UTF-8/16/32
        raise _invalid(f"JSON Parse error: {e}") from None
    except RecursionError:
        raise _invalid("JSON Parse error: the JSON is nested too deeply") from None
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


def _json(status: int, payload, close: bool = False, headers=None) -> web.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    resp = web.Response(status=status, body=body, content_type="application/json", headers=headers)
    if close:
        resp.force_close()
    return resp


class _Refused(ServingError):
    """A request the front end refuses before it reaches a model (counted by reason)."""

    def __init__(self, code, message, http_status, reason, close=False, headers=None):
        super().__init__(code, message, http_status)
        self.reason, self.close, self.headers = reason, close, headers


class RestServer:
    """TF Serving's REST API on aiohttp: one event loop in a background thread, model calls in a
    bounded ``ThreadPoolExecutor``; ``start()`` binds (port 0: any free port), ``stop(grace)``."""

    def __init__(self, app: "ServingApp", host: str, port: int, *, max_request_bytes: int, num_threads: int,
                 max_queue: int, timeout_s: float, idle_timeout_s: float, metrics: Metrics,
                 ssl_context: ssl.SSLContext | None = None):
        if num_threads < 1 or max_queue < 0 or timeout_s <= 0 or idle_timeout_s <= 0:
            raise ValueError("the REST worker pool needs >= 1 thread, a queue limit >= 0 and positive timeouts")
        self.app, self.host, self.port = app, host, port
        self.max_request_bytes, self.num_threads, self.max_queue = max_request_bytes, num_threads, max_queue
        self.timeout_s, self.idle_timeout_s, self.metrics = timeout_s, idle_timeout_s, metrics
        self.ssl_context = ssl_context
        # bodies being received hold at most what the admitted requests may hold
        self.body_budget = (num_threads + max_queue) * max_request_bytes
        self._pool = ThreadPoolExecutor(num_threads, thread_name_prefix="tfvae-rest")
        self._lock = threading.Lock()
        self._admitted = 0  # predicts queued or running in the pool
        self._receiving = 0  # bytes reserved by bodies being received (event-loop thread only)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        metrics.in_flight.set_function(lambda: self._admitted)

    # -- lifecycle
    def start(self) -> "RestServer":
        started: Future = Future()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(started,), name="tfvae-rest-loop", daemon=True)
        self._thread.start()
        self.port = started.result()  # re-raises a failed bind
        return self

    def _serve(self, started) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            port = self._loop.run_until_complete(self._setup())
        except BaseException as e:  # noqa: BLE001 - reported to start()
            self._loop.close()
            started.set_exception(e)
            return
        started.set_result(port)
        self._loop.run_forever()
        tasks = asyncio.all_tasks(self._loop)  # connections still lingering after the runner's cleanup
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _setup(self) -> int:
        webapp = web.Application(client_max_size=self.max_request_bytes)
        webapp.router.add_route("*", "/{tail:.*}", self._handle)
        webapp.on_response_prepare.append(_server_header)
        self._runner = web.AppRunner(webapp, access_log=None, logger=_http_log, keepalive_timeout=self.idle_timeout_s,
                                     lingering_time=min(self.idle_timeout_s, 2.0), shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024, reuse_address=True,
                           ssl_context=self.ssl_context)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            raise OSError(f"cannot bind the REST port {self.host}:{self.port}: {e}") from None
        return self._runner.addresses[0][1]

    def stop(self, grace: float = 2.0) -> None:
        """Stop accepting connections, give running requests ``grace`` seconds, stop the loop."""
        if self._loop is None or self._loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=grace + 10)
        except Exception:  # noqa: BLE001
            log.exception("stopping the REST server")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- requests
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.rel_url.raw_path
        if method == "GET" and path == PROMETHEUS_PATH:
            text, content_type = self.metrics.render()
            return web.Response(body=text, headers={"Content-Type": content_type})
        try:
            if method not in ("GET", "POST"):
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Method not allowed: {method}", http_status=405)
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
                return await self._predict(request, name, version, label)
            manager = self.app.manager
            if not name:
                raise _invalid("Missing model name in request.")
            if m.group(4):
                return _json(200, self.app.policy.metadata_json(manager.resolve(name, version, label)))
            if label:
                version = manager.resolve(name, None, label).version
            return _json(200, json_format.MessageToDict(manager.status(name, version), preserving_proto_field_name=True,
                                                        always_print_fields_with_no_presence=True))
        except ServingError as e:
            return _json(e.http_status, {"error": e.message})
        except Exception as e:  # noqa: BLE001 - answer, log, keep serving
            log.exception("REST %s %s failed", method, path)
            return _json(500, {"error": f"internal error: {type(e).__name__}: {e}"})

    async def _predict(self, request: web.Request, name, version, label) -> web.Response:
        info = RequestInfo("rest")
        info.known_model(self.app.manager, name)
        try:
            status, body, code = await self._run_predict(request, name, version, label, info)
        except _Refused as e:
            self.metrics.rejected.labels(e.reason).inc()
            self.metrics.observe(info, e.code.name)
            return _json(e.http_status, {"error": e.message}, close=e.close, headers=e.headers)
        self.metrics.observe(info, code)
        return _json(status, body)

    async def _run_predict(self, request, name, version, label, info) -> tuple[int, bytes, str]:
        deadline = info.t0 + self.timeout_s
        limit, n = self.max_request_bytes, request.content_length  # None: chunked
        if n is not None and n > limit:
            raise _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request body of {n} bytes is larger than the "
                           f"limit of {limit} bytes (--max_request_bytes)", 413, "too_large")
        reserve = limit if n is None else n
        if self._receiving + reserve > self.body_budget:
            raise _overloaded("request bodies being received")
        self._receiving += reserve
        try:
            wait = max(0.0, min(self.idle_timeout_s, deadline - time.perf_counter()))
            body = await asyncio.wait_for(request.read(), wait)
        except asyncio.TimeoutError:
            flag = "--rest_idle_timeout_s" if wait == self.idle_timeout_s else "--rest_api_timeout_in_ms"
            raise _Refused(grpc.StatusCode.DEADLINE_EXCEEDED, f"the request body did not arrive within {wait:.3g} s "
                           f"({flag})", 408, "body_timeout", close=True) from None
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request body is larger than the limit of {limit} "
                           "bytes (--max_request_bytes)", 413, "too_large", close=True) from None
        except Exception as e:  # noqa: BLE001 - a malformed chunked body, a client gone, and the like
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"could not read the request body: {e}", 400,
                           "bad_body", close=True) from None
        finally:
            self._receiving -= reserve
        with self._lock:
            full = self._admitted >= self.num_threads + self.max_queue
            if not full:
                self._admitted += 1
        if full:
            raise _overloaded("predict requests queued or running")
        try:
            job = self._pool.submit(_predict_job, self.app, name, version, label, body, info)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self._release(None)
            raise _Refused(grpc.StatusCode.UNAVAILABLE, "the server is shutting down", 503, "overloaded", close=True)
        job.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job), max(0.0, deadline - time.perf_counter()))
        except asyncio.TimeoutError:  # a queued job is cancelled; a running one finishes and frees its slot then
            raise _Refused(grpc.StatusCode.DEADLINE_EXCEEDED, f"the request was not answered within "
                           f"{self.timeout_s * 1000:.0f} ms (--rest_api_timeout_in_ms)", 504, "deadline") from None

    def _release(self, _job) -> None:
        with self._lock:
            self._admitted -= 1


def _overloaded(what: str) -> _Refused:
    return _Refused(grpc.StatusCode.UNAVAILABLE, f"the server is overloaded ({what} at the limit of "
                    "--rest_api_num_threads + --rest_max_queue); retry later", 503, "overloaded",
                    headers={"Retry-After": "1"})


def _predict_job(app: "ServingApp", name, version, label, body: bytes, info: RequestInfo) -> tuple[int, bytes, str]:
    """The worker-thread part of a predict: (HTTP status, JSON body, status-code name)."""
    try:
        return 200, json.dumps(app.rest_predict(name, version, label, body, info)).encode(), "OK"
    except ServingError as e:
        return e.http_status, json.dumps({"error": e.message}).encode(), e.code.name
    except Exception as e:  # noqa: BLE001 - answer, log, keep serving
        log.exception("REST predict of %s failed", name)
        return 500, json.dumps({"error": f"internal error: {type(e).__name__}: {e}"}).encode(), "INTERNAL"


class _ClientErrorsAtDebug(logging.Filter):
    """aiohttp logs a malformed request (the client's fault) as an error with a traceback: log floods."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and (exc.code or 400) < 500:
            log.debug("REST: malformed request: %s", str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
            return False
        return True


_http_log = logging.getLogger("tfvae.serve.http")
_http_log.addFilter(_ClientErrorsAtDebug())


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "tfvae.serve"
