"""A FastAPI app: requests are traced, an HTTP middleware says who the user is.

otel-bucket devserver                                    # in another terminal
BUCKET_ENDPOINT=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev python examples/fastapi_app.py
curl -H 'x-user-id: 42' -H 'x-company-id: acme' http://127.0.0.1:8000/reports/weekly
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from otel_bucket import feature, identify, install

install()  # BUCKET_TRACKING_KEY and BUCKET_ENDPOINT configure where the calls go

app = FastAPI()


@app.middleware("http")
async def identify_user(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    # Your auth decides who is signed in; this example trusts two headers. The endpoint runs
    # in a task that copies this context, so its features carry the identity.
    user_id = request.headers.get("x-user-id")
    if not user_id:
        return await call_next(request)  # anonymous: nothing is sent to Bucket
    with identify(user_id=user_id, company_id=request.headers.get("x-company-id") or None):
        return await call_next(request)


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


# After the routes and middleware: the instrumentation wraps the whole app, so its request span
# is current in the middleware above.
FastAPIInstrumentor.instrument_app(app)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
