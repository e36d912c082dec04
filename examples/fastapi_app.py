"""A FastAPI app: requests are traced, ``otel_bucket.asgi.BucketMiddleware`` says who the user is.

    otel-bucket devserver                                    # in another terminal
    BUCKET_ENDPOINT=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev python examples/fastapi_app.py
    curl -H 'x-user-id: 42' -H 'x-company-id: acme' http://127.0.0.1:8000/reports/weekly

``PORT`` picks the port (default 8000).
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.requests import HTTPConnection

from otel_bucket import feature, install
from otel_bucket.asgi import BucketMiddleware

install()  # BUCKET_TRACKING_KEY and BUCKET_ENDPOINT configure where the calls go

app = FastAPI()


async def identity(scope: Any) -> dict[str, Any] | None:
    """Who is signed in, as ``identify()`` arguments; None for an anonymous request.

    Your auth decides this (it may await a session or database lookup); the example trusts two
    headers. ``HTTPConnection(scope)`` gives the headers, cookies and session of the request.
    """
    headers = HTTPConnection(scope).headers
    user_id = headers.get("x-user-id")
    if not user_id:
        return None  # anonymous: nothing is sent to Bucket, nothing logged
    return {"user_id": user_id, "company_id": headers.get("x-company-id") or None}


# The identity is in effect for the whole request: async endpoints, sync endpoints (run in a
# thread pool with a copy of the context), streamed bodies and background tasks.
app.add_middleware(BucketMiddleware, resolver=identity)


@feature("Viewed report")
async def load_report(name: str) -> dict[str, str]:
    return {"report": name, "rows": "0"}


@feature("Shared report", attributes={"via": "link"})
def share_report(name: str) -> str:
    return f"https://example.com/reports/{name}"


@app.get("/reports/{name}")
async def get_report(name: str) -> dict[str, str]:
    return await load_report(name)


@app.post("/reports/{name}/share")
def post_share(name: str) -> dict[str, str]:
    return {"link": share_report(name)}


# The instrumentation puts its middleware outside every middleware added above, so its request
# span is current (and stamped with the identity) inside BucketMiddleware.
FastAPIInstrumentor.instrument_app(app)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
