"""One loaded model version: the SavedModel, its signature defs, warm-up and a validated predict."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from tfvae.serving.batching import BatchingOptions, BatchScheduler
from tfvae.serving.errors import _CODE_BY_INT, ServingError, _clean_tf_message, _invalid

DEFAULT_SIGNATURE = "serving_default"


@dataclass
class InputSpec:
    dtype: tf.DType
    shape: list[int] | None  # None: unknown rank; -1: any size


@dataclass
class Signature:
    fn: object
    inputs: dict[str, InputSpec]
    outputs: list[str]
    name: str = ""
    #: every input has a batch dimension (shape [-1, ...]): its requests may be merged into batches
    batchable: bool = False


#: TF Serving's warm-up file inside a version's ``assets.extra`` (see tfvae.speaker.export.write_warmup).
WARMUP_FILE = "tf_serving_warmup_requests"


class Servable:
    """One model version: the loaded SavedModel, its signature defs and a validated predict.

    With ``batching`` (:class:`~tfvae.serving.batching.BatchingOptions`), concurrent predicts of a
    signature are merged into batches by a :class:`~tfvae.serving.batching.BatchScheduler`, whose
    threads :meth:`close` stops (the manager calls it when the version is unloaded).
    """

    def __init__(self, name: str, version: int, path: Path, max_batch_size: int,
                 batching: BatchingOptions | None = None):
        self.name, self.version, self.path = name, version, path
        self.max_batch_size = max_batch_size
        self.batcher: BatchScheduler | None = None
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
            batchable = bool(inputs) and all(s.shape and s.shape[0] < 0 for s in inputs.values())
            self.signatures[key] = Signature(fn, inputs, sorted(sd.outputs), key, batchable)
        self._metadata_json: dict | None = None
        self._warm_up()
        if batching is not None:
            self.batcher = BatchScheduler(batching, f"{name}-{version}")

    def close(self) -> None:
        """Stop the batch threads once what is queued has run (later predicts run unbatched)."""
        if self.batcher is not None:
            self.batcher.close()

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
        """Validate ``inputs`` against ``sig`` and run it (batched with concurrent predicts when batching
        is on); raises :class:`ServingError`."""
        wanted = self._validate(sig, inputs, output_filter)
        queue = self._batch_queue(sig, inputs)
        if queue is not None:
            key, rows = queue
            return self.batcher.run(key, lambda x, w: self._run(sig, x, w), inputs, rows, wanted)
        return self._run(sig, inputs, wanted)

    def predict_async(self, sig: Signature, inputs: dict[str, np.ndarray], output_filter=(),
                      executor=None) -> "asyncio.Future":
        """:meth:`predict` for an asyncio front end (the ``grpc.aio`` server), from its event loop: an
        ``asyncio.Future`` of the outputs. With batching, the request is checked here (invalid inputs
        and a full batch queue raise at once) and queued; the batch thread resolves the future, so no
        thread waits for it. Any other request (batching off: checks included; inputs that cannot be
        batched) runs in ``executor`` (a thread pool; None: the loop's default), never in the loop."""
        loop = asyncio.get_running_loop()
        if self.batcher is None:
            return loop.run_in_executor(executor, self.predict, sig, inputs, output_filter)
        wanted = self._validate(sig, inputs, output_filter)
        queue = self._batch_queue(sig, inputs)
        if queue is None:
            return loop.run_in_executor(executor, self._run, sig, inputs, wanted)
        fut = loop.create_future()

        def done(result, error):  # in a batch thread (or here, when run alone)
            loop.call_soon_threadsafe(_resolve, fut, result, error)

        key, rows = queue
        self.batcher.submit(key, lambda x, w: self._run(sig, x, w), inputs, rows, wanted, done)
        return fut

    def _batch_queue(self, sig: Signature, inputs: dict[str, np.ndarray]) -> tuple | None:
        """(queue key, rows) of a validated request: the key is the signature and each input's dtype and
        non-batch shape. None if it is not batched: batching off, an input without a batch dimension,
        inputs of different row counts (a 1-row 'keep' broadcast over 5 rows of features cannot be
        stacked), or more rows than the batching max_batch_size."""
        if self.batcher is None or not sig.batchable:
            return None
        rows = {arr.shape[0] for arr in inputs.values()}
        if len(rows) != 1:
            return None
        n = rows.pop()
        key = (sig.name, *((k, arr.dtype.str, arr.shape[1:]) for k, arr in sorted(inputs.items())))
        return (key, n) if self.batcher.accepts(key, n) else None

    def _validate(self, sig: Signature, inputs: dict[str, np.ndarray], output_filter=()) -> list[str]:
        """Check ``inputs`` and ``output_filter`` against ``sig``; the output aliases wanted."""
        if set(inputs) != set(sig.inputs):
            sent, want = set(inputs), set(sig.inputs)
            raise _invalid(
                f"input size does not match signature: {len(sent)}!={len(want)} len({{{','.join(sorted(sent))}}}) "
                f"!= len({{{','.join(sorted(want))}}}). Sent extra: {{{','.join(sorted(sent - want))}}}. "
                f"Missing but required: {{{','.join(sorted(want - sent))}}}.")
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
        wanted = list(output_filter) or sig.outputs
        for alias in wanted:
            if alias not in sig.outputs:
                raise _invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                               f"the set {{{','.join(sig.outputs)}}}.")
        if len(set(wanted)) != len(wanted):
            raise _invalid("duplicate output tensor alias in output_filter")
        return wanted

    @staticmethod
    def _run(sig: Signature, inputs: dict[str, np.ndarray], wanted: list[str]) -> dict[str, np.ndarray]:
        """Call the signature on validated inputs (no batching); TF errors become :class:`ServingError`."""
        try:
            out = sig.fn(**{k: tf.constant(v) for k, v in inputs.items()})
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


def _resolve(fut: "asyncio.Future", result, error) -> None:
    if not fut.done():  # not cancelled meanwhile
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)


def _shape_str(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"
