"""Request errors: :class:`ServingError` (gRPC status code + message), TF Serving's HTTP status for
each code, and the cleaning of TF runtime error messages."""

from __future__ import annotations

import re

import grpc

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
