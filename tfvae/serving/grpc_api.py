"""TF Serving's gRPC API: TensorProto <-> array, and the ``PredictionService`` (Predict,
GetModelMetadata) and ``ModelService`` (GetModelStatus) servicers of a ``grpc.aio`` server."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from tfvae.serving.errors import ServingError, _invalid
from tfvae.serving.metrics import RequestInfo
from tfvae.serving.servable import DEFAULT_SIGNATURE, InputSpec

if TYPE_CHECKING:
    from tfvae.serving.app import ServingApp

log = logging.getLogger("tfvae.serve")


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


def predict_response(servable, request, outputs: dict) -> predict_pb2.PredictResponse:
    """The ``PredictResponse`` of ``request`` answered by ``servable`` with ``outputs`` (arrays)."""
    resp = predict_pb2.PredictResponse()
    resp.model_spec.name = servable.name
    resp.model_spec.version.value = servable.version
    resp.model_spec.signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    for k, v in outputs.items():
        _fill_tensor(resp.outputs[k], v)
    return resp


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata on the ``grpc.aio`` server of :class:`~tfvae.serving.app.ServingApp`:
    requests are parsed and checked in its event loop; the model runs in a batch thread (batching on)
    or in the app's pool of ``grpc_max_threads`` threads, so the loop never waits for TensorFlow."""

    def __init__(self, app: "ServingApp"):
        self.app = app

    async def Predict(self, request, context):  # noqa: N802
        info = RequestInfo("grpc")
        try:
            info.known_model(self.app.manager, request.model_spec.name)
            servable = self.app.manager.resolve_spec(request.model_spec)
            info.servable(servable)
            sig = self.app.policy.signature(servable, request.model_spec.signature_name, "grpc")
            info.signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
            if len(request.inputs) > len(sig.inputs) or any(k not in sig.inputs for k in request.inputs):
                inputs = {k: np.zeros(0) for k in request.inputs}  # reported by predict's size check
            else:
                inputs = {k: _tensor_to_array(k, t, sig.inputs[k]) for k, t in request.inputs.items()}
            outputs = await servable.predict_async(sig, inputs, request.output_filter, executor=self.app.grpc_pool)
            resp = predict_response(servable, request, outputs)
            self.app.metrics.observe(info, "OK")
            return resp
        except ServingError as e:
            err = e
        except Exception as e:  # noqa: BLE001
            log.exception("gRPC Predict failed")
            err = ServingError(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
        self.app.metrics.observe(info, err.code.name)
        await context.abort(err.code, err.message)

    async def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            if not request.model_spec.name:
                raise _invalid("Missing ModelSpec")
            if not request.metadata_field:
                raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for f in request.metadata_field:
                if f != "signature_def":
                    raise _invalid(f"Metadata field {f} is not supported")
            return self.app.policy.metadata_proto(self.app.manager.resolve_spec(request.model_spec))
        except ServingError as e:
            err = e
        await context.abort(err.code, err.message)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, app: "ServingApp"):
        self.app = app

    async def GetModelStatus(self, request, context):  # noqa: N802
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
        await context.abort(err.code, err.message)
