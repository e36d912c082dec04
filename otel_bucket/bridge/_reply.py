"""OTLP/HTTP answers, in the encoding of the request: ``ExportTraceServiceResponse`` for a
(partial) success and ``google.rpc.Status`` for every 4xx and 5xx, as the OTLP specification
asks."""

from __future__ import annotations

from typing import Final

import google.rpc.code_pb2 as code_pb2
import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otel_bucket.bridge._decode import JSON

__all__ = ["CONTENT_TYPES", "encode", "export_response", "status"]

CONTENT_TYPES: Final = {JSON: "application/json", "protobuf": "application/x-protobuf"}

# OTLP leaves Status.code to the server; these are the gRPC codes that name each HTTP answer.
_CODES: Final = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    404: code_pb2.NOT_FOUND,
    405: code_pb2.UNIMPLEMENTED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    503: code_pb2.UNAVAILABLE,
}


def export_response(rejected: int = 0, error_message: str = "") -> ExportTraceServiceResponse:
    """A success; ``partial_success`` is set only when spans were rejected (OTLP: it MUST be
    left unset on a full success)."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = error_message
    return response


def status(http_status: int, message: str) -> status_pb2.Status:
    """The body of an error answer; a 400 also says what was wrong in a ``BadRequest``."""
    answer = status_pb2.Status(code=_CODES.get(http_status, code_pb2.UNKNOWN), message=message)
    if http_status == 400:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field="ExportTraceServiceRequest", description=message
        )
        answer.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return answer


def encode(message: Message, encoding: str) -> bytes:
    """``message`` in the request's encoding (OTLP JSON uses lowerCamelCase names)."""
    if encoding == JSON:
        return json_format.MessageToJson(message, indent=None).encode("utf-8")
    return message.SerializeToString()
