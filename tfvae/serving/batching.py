"""Server-side batching (TF Serving's ``--enable_batching``): concurrent requests to one signature
are merged into one call of the SavedModel.

:class:`BatchScheduler` keeps one queue per key (the servable's signature and the non-batch shapes
and dtypes of its inputs: requests whose rows cannot be stacked never share a batch). A request's
rows join the queue's open batch; a batch is handed to one of ``num_batch_threads`` threads once it
holds ``max_batch_size`` rows or ``batch_timeout_micros`` after its first request arrived (and a
thread is free). ``max_enqueued_batches`` bounds each queue: a request that would need one more
batch is refused at once with UNAVAILABLE (HTTP 503). The outputs are split back by rows, so every
request gets exactly its own rows. If a batch fails (e.g. a graph assertion raised by one request's
values), each of its requests is run again alone, so only the bad one gets the error. A request of
more than ``max_batch_size`` rows is already a batch: it runs alone, at once (TF Serving would need
``enable_large_batch_splitting``), up to the server's own request limit (``--max_batch_size``).

The options are TF Serving's ``BatchingParameters`` (``--batching_parameters_file``, protobuf text
format, tensorflow_serving/servables/tensorflow/session_bundle_config.proto)::

    max_batch_size { value: 64 }
    batch_timeout_micros { value: 1000 }
    num_batch_threads { value: 1 }
    max_enqueued_batches { value: 100 }

read by :func:`read_batching_parameters` / :func:`parse_batching_parameters`. A field left out keeps
tfvae's default (above, from bench/serving.py section 6), not TF Serving's (1000 rows, 0 us, one
thread per CPU, 10 batches): a timeout of 0 runs a batch as soon as a thread is free, which on
2 cores gives smaller batches and less throughput for many one-utterance clients.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc
import numpy as np
from google.protobuf import text_format

from tfvae.serving.errors import ServingError

log = logging.getLogger("tfvae.serve")

#: What ``--enable_batching`` uses without ``--batching_parameters_file``; tuned on 2 CPU cores for
#: 8 concurrent clients sending one utterance each (bench/serving.py, section 6).
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_BATCH_TIMEOUT_MICROS = 1000
DEFAULT_NUM_BATCH_THREADS = 1
DEFAULT_MAX_ENQUEUED_BATCHES = 100

_PROTO_NAME = "tensorflow.serving.BatchingParameters"


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's ``BatchingParameters``; ``thread_pool_name`` names the batch threads.

    ``allowed_batch_sizes`` (increasing, the last equal to ``max_batch_size``): a batch is padded
    (with copies of its first row) up to the next allowed size. ``pad_variable_length_inputs`` is
    accepted and has no effect: requests whose non-batch shapes differ are never merged.
    """

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS
    num_batch_threads: int = DEFAULT_NUM_BATCH_THREADS
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self):
        for f, low in (("max_batch_size", 1), ("batch_timeout_micros", 0), ("num_batch_threads", 1),
                       ("max_enqueued_batches", 1)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"batching parameter {f} must be an integer >= {low}, got {v!r}")
        sizes = tuple(int(s) for s in self.allowed_batch_sizes)
        object.__setattr__(self, "allowed_batch_sizes", sizes)
        if sizes:
            if any(s < 1 for s in sizes) or any(b <= a for a, b in zip(sizes, sizes[1:])):
                raise ValueError(f"batching parameter allowed_batch_sizes must be positive and increasing, "
                                 f"got {list(sizes)}")
            if sizes[-1] != self.max_batch_size:
                raise ValueError(f"batching parameter allowed_batch_sizes: the last entry ({sizes[-1]}) must "
                                 f"equal max_batch_size ({self.max_batch_size})")

    def describe(self) -> str:
        return (f"max_batch_size {self.max_batch_size}, batch_timeout_micros {self.batch_timeout_micros}, "
                f"num_batch_threads {self.num_batch_threads}, max_enqueued_batches {self.max_enqueued_batches}"
                + (f", allowed_batch_sizes {list(self.allowed_batch_sizes)}" if self.allowed_batch_sizes else ""))


# ------------------------------------------------------------------ the parameters file
_proto_class = None


def _batching_parameters_class():
    """The ``BatchingParameters`` message class: tensorflow-serving-api's module if it ships one (it
    does not, as of 2.21), else the same message built from its descriptor in a private pool."""
    global _proto_class
    if _proto_class is not None:
        return _proto_class
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2  # type: ignore

        _proto_class = session_bundle_config_pb2.BatchingParameters
        return _proto_class
    except ImportError:
        pass
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    f = descriptor_pb2.FileDescriptorProto(name="tfvae/serving/batching_parameters.proto",
                                           package="tensorflow.serving", syntax="proto3",
                                           dependency=["google/protobuf/wrappers.proto"])
    m = f.message_type.add(name="BatchingParameters")
    fd = descriptor_pb2.FieldDescriptorProto
    for number, (name, kind) in enumerate(
            [("max_batch_size", "Int64Value"), ("batch_timeout_micros", "Int64Value"),
             ("max_enqueued_batches", "Int64Value"), ("num_batch_threads", "Int64Value"),
             ("thread_pool_name", "StringValue"), ("allowed_batch_sizes", None),
             ("pad_variable_length_inputs", None)], start=1):
        field = m.field.add(name=name, number=number, json_name=name)
        if kind:
            field.type, field.type_name, field.label = fd.TYPE_MESSAGE, f".google.protobuf.{kind}", fd.LABEL_OPTIONAL
        elif name == "allowed_batch_sizes":
            field.type, field.label = fd.TYPE_INT64, fd.LABEL_REPEATED
        else:
            field.type, field.label = fd.TYPE_BOOL, fd.LABEL_OPTIONAL
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(f.SerializeToString())
    _proto_class = message_factory.GetMessageClass(pool.FindMessageTypeByName(_PROTO_NAME))
    return _proto_class


def parse_batching_parameters(text: str, source: str = "batching parameters") -> BatchingOptions:
    """:class:`BatchingOptions` from TF Serving's ``BatchingParameters`` text format; fields left out
    keep tfvae's defaults. Raises ValueError naming ``source`` and the bad field."""
    msg = _batching_parameters_class()()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as e:
        hint = " (the numeric fields are wrappers: write e.g. 'max_batch_size { value: 64 }')" \
            if 'Expected "{"' in str(e) else ""
        raise ValueError(f"{source}: {e}{hint}") from None
    kw = {}
    for f in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
        if msg.HasField(f):
            kw[f] = int(getattr(msg, f).value)
    if msg.HasField("thread_pool_name"):
        kw["thread_pool_name"] = msg.thread_pool_name.value or "batch_threads"
    kw["allowed_batch_sizes"] = tuple(msg.allowed_batch_sizes)
    kw["pad_variable_length_inputs"] = msg.pad_variable_length_inputs
    try:
        return BatchingOptions(**kw)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def read_batching_parameters(path: str | Path) -> BatchingOptions:
    """:func:`parse_batching_parameters` of the file ``path`` (``--batching_parameters_file``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"cannot read the batching parameters file {path}: {e}") from None
    return parse_batching_parameters(text, str(path))


def queue_full_error(options: BatchingOptions) -> ServingError:
    return ServingError(
        grpc.StatusCode.UNAVAILABLE,
        "The batch scheduling queue to which this task was submitted is full: "
        f"{options.max_enqueued_batches} batches (max_enqueued_batches) of up to {options.max_batch_size} rows "
        f"are waiting for the {options.num_batch_threads} batch thread(s); retry later")


# ------------------------------------------------------------------ the scheduler
#: runs one (possibly merged) request: (inputs, output aliases wanted) -> {alias: array}
RunFn = Callable[[dict, list], dict]


class _Task:
    __slots__ = ("inputs", "rows", "wanted", "result", "error", "done", "callback", "_lock")

    def __init__(self, inputs: dict, rows: int, wanted: list, callback=None):
        self.inputs, self.rows, self.wanted = inputs, rows, wanted
        self.result = self.error = None
        self.done = False
        self.callback = callback
        self._lock = None
        if callback is None:
            self._lock = threading.Lock()
            self._lock.acquire()  # released by finish(): cheaper than a threading.Event

    def finish(self, result=None, error=None) -> None:
        if self.done:
            return
        self.result, self.error, self.done = result, error, True
        if self._lock is not None:
            self._lock.release()
            return
        try:
            self.callback(result, error)
        except Exception:  # noqa: BLE001 - a broken callback must not stop the batch thread
            log.exception("batching: a request's completion callback failed")

    def wait(self) -> dict:
        self._lock.acquire()
        if self.error is not None:
            raise self.error
        return self.result


class _Batch:
    __slots__ = ("tasks", "rows", "deadline")

    def __init__(self, deadline: float):
        self.tasks: list[_Task] = []
        self.rows, self.deadline = 0, deadline


class _Queue:
    __slots__ = ("key", "fn", "batches")

    def __init__(self, key, fn: RunFn):
        self.key, self.fn = key, fn
        self.batches: deque[_Batch] = deque()


class BatchScheduler:
    """Batches the requests of one servable (see the module doc). Threads start with the first
    batched request; :meth:`close` lets them finish what is queued and stops them.

    ``stats`` counts ``batches`` run, ``tasks`` (requests) and ``rows`` in them, ``retried_batches``
    (failed batches whose requests were run again alone) and ``rejected`` (queue full).
    """

    def __init__(self, options: BatchingOptions, name: str = "servable"):
        self.options, self.name = options, name
        self._cond = threading.Condition(threading.Lock())
        self._queues: dict[object, _Queue] = {}  # only queues holding batches (an empty one is dropped)
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._timeout = options.batch_timeout_micros / 1e6
        self.stats = {"batches": 0, "tasks": 0, "rows": 0, "retried_batches": 0, "rejected": 0}
        self.unbatchable: set = set()  # keys whose outputs turned out not to be split by rows

    @property
    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    @property
    def closed(self) -> bool:
        return self._closed

    def accepts(self, key, rows: int) -> bool:
        """Whether a request of ``rows`` rows under ``key`` goes through the batches (else: run it alone)."""
        return not self._closed and 0 < rows <= self.options.max_batch_size and key not in self.unbatchable

    def run(self, key, fn: RunFn, inputs: dict, rows: int, wanted: list) -> dict:
        """Queue a request (``rows`` rows in every input) and wait for its outputs; requests that
        :meth:`accepts` refuses, or that arrive after :meth:`close`, are run alone in this thread.
        Raises the request's error, or :func:`queue_full_error` at once when the queue is full."""
        if not self.accepts(key, rows):
            return fn(inputs, wanted)
        task = _Task(inputs, rows, wanted)
        if not self._enqueue(key, fn, task):
            return fn(inputs, wanted)
        return task.wait()

    def submit(self, key, fn: RunFn, inputs: dict, rows: int, wanted: list, callback) -> None:
        """:meth:`run` without waiting (for asyncio front ends): ``callback(outputs, error)`` is called
        once, from a batch thread, or from this thread when the request is run alone. A full queue
        raises :func:`queue_full_error` here, before anything is queued."""
        task = _Task(inputs, rows, wanted, callback)
        if not self.accepts(key, rows) or not self._enqueue(key, fn, task):
            self._run_alone_fn(fn, task)

    def _enqueue(self, key, fn: RunFn, task: _Task) -> bool:
        """Add ``task`` to its queue's open batch (or a new batch); False once closed."""
        opts, rows = self.options, task.rows
        with self._cond:
            if self._closed:
                return False
            q = self._queues.get(key)
            if q is None:
                q = self._queues[key] = _Queue(key, fn)
            b = q.batches[-1] if q.batches else None
            if b is None or b.rows + rows > opts.max_batch_size:
                if len(q.batches) >= opts.max_enqueued_batches:
                    self.stats["rejected"] += 1
                    if not q.batches:
                        del self._queues[key]
                    raise queue_full_error(opts)
                b = _Batch(time.monotonic() + self._timeout)
                q.batches.append(b)
            b.tasks.append(task)
            b.rows += rows
            if len(self._threads) < opts.num_batch_threads:
                self._start_threads()
            self._cond.notify()
        return True

    def _start_threads(self) -> None:
        for i in range(len(self._threads), self.options.num_batch_threads):
            t = threading.Thread(target=self._loop, name=f"{self.options.thread_pool_name}-{self.name}-{i}",
                                 daemon=True)
            self._threads.append(t)
            t.start()

    def _take(self) -> tuple[_Queue, _Batch] | None:
        """(under the lock) the next batch to run, waiting for one that is full or timed out: of those,
        the one whose first request came first."""
        max_rows = self.options.max_batch_size
        while True:
            now = time.monotonic()
            best, wake = None, None
            for q in self._queues.values():
                b = q.batches[0]
                if self._closed or len(q.batches) > 1 or b.rows >= max_rows or b.deadline <= now:
                    if best is None or b.deadline < best.batches[0].deadline:
                        best = q
                elif wake is None or b.deadline < wake:
                    wake = b.deadline
            if best is not None:
                b = best.batches.popleft()
                if not best.batches:
                    del self._queues[best.key]
                st = self.stats
                st["batches"] += 1
                st["tasks"] += len(b.tasks)
                st["rows"] += b.rows
                return best, b
            if self._closed:
                return None
            self._cond.wait(None if wake is None else max(wake - now, 0.0))

    def _loop(self) -> None:
        while True:
            with self._cond:
                got = self._take()
            if got is None:
                return
            q, b = got
            try:
                self._execute(q, b)
            except BaseException as e:  # noqa: BLE001 - never leave a request waiting
                log.exception("batch thread of %s failed", self.name)
                for t in b.tasks:
                    t.finish(error=e if isinstance(e, Exception) else RuntimeError(repr(e)))

    def _execute(self, q: _Queue, b: _Batch) -> None:
        tasks = b.tasks
        if len(tasks) == 1:
            self._run_alone(q, tasks[0])
            return
        wanted = list(dict.fromkeys(a for t in tasks for a in t.wanted))
        size = next((s for s in self.options.allowed_batch_sizes if s >= b.rows), b.rows)
        merged = {}
        for k in tasks[0].inputs:
            parts = [t.inputs[k] for t in tasks]
            if size > b.rows:  # pad up to an allowed batch size with copies of the first row
                parts.append(np.repeat(parts[0][:1], size - b.rows, axis=0))
            merged[k] = np.concatenate(parts, axis=0)
        try:
            out = q.fn(merged, wanted)
            if any(np.ndim(v) == 0 or np.shape(v)[0] != size for v in out.values()):
                self.unbatchable.add(q.key)
                log.warning("%s: the outputs of a batch of %d rows are not split by rows (%s); requests of "
                            "this signature are run alone from now on", self.name, size,
                            {k: list(np.shape(v)) for k, v in out.items()})
                raise _NotSplittable()
        except Exception:  # noqa: BLE001 - a failed batch: run each request alone, so only the bad one fails
            with self._cond:
                self.stats["retried_batches"] += 1
            for t in tasks:
                self._run_alone(q, t)
            return
        start = 0
        for t in tasks:
            end = start + t.rows
            t.finish({a: out[a][start:end] for a in t.wanted})
            start = end

    @staticmethod
    def _run_alone(q: _Queue, t: _Task) -> None:
        BatchScheduler._run_alone_fn(q.fn, t)

    @staticmethod
    def _run_alone_fn(fn: RunFn, t: _Task) -> None:
        try:
            res = fn(t.inputs, t.wanted)
        except Exception as e:  # noqa: BLE001 - handed to the request's thread
            t.finish(error=e)
        else:
            t.finish(res)

    def pending(self) -> int:
        """Requests queued and not yet handed to a batch thread."""
        with self._cond:
            return sum(len(b.tasks) for q in self._queues.values() for b in q.batches)

    def close(self, timeout: float = 10.0) -> None:
        """Run what is queued, stop the threads (waiting up to ``timeout`` s); later requests run alone."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(deadline - time.monotonic(), 0.0))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("%s: batch threads still running after %.0f s: %s", self.name, timeout, alive)


class _NotSplittable(Exception):
    pass

