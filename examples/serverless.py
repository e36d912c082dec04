"""A serverless handler (AWS Lambda style): flush before returning.

    otel-bucket devserver                                    # in another terminal
    BUCKET_ENDPOINT=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev python examples/serverless.py

A function platform may freeze the process as soon as the handler returns, and later end it
without running ``atexit`` hooks or signal handlers: whatever is still queued then never leaves.
So the handler calls ``otel_bucket.flush()`` last; it returns once the calls are delivered, or
after ``timeout`` seconds (keep it well inside the function's own time limit). Run directly, this
file plays three invocations and then ends the way a reclaimed sandbox does, with ``os._exit``:
every event has arrived already.
"""

from __future__ import annotations

import os
from typing import Any

import otel_bucket
from otel_bucket import feature, identify

otel_bucket.install()  # once per cold start, outside the handler


@feature("Generated invoice", attributes={"channel": "api"})
def generate_invoice(invoice_id: str) -> dict[str, str]:
    return {"invoice": invoice_id, "status": "generated"}


def handler(event: dict[str, Any], context: object = None) -> dict[str, str]:
    """The function's entry point: who is calling, then the work, then the flush."""
    with identify(user_id=event["user_id"], company_id=event.get("company_id")):
        result = generate_invoice(event["invoice_id"])
    delivered = otel_bucket.flush(timeout=5)  # the process may be frozen right after this
    result["analytics"] = "delivered" if delivered else "queued"
    return result


if __name__ == "__main__":
    for n, user in enumerate(["42", "43", "42"]):
        print(handler({"user_id": user, "company_id": "acme", "invoice_id": f"inv-{n}"}))
    os._exit(0)  # no atexit, no provider shutdown: only what flush() delivered counts
