"""A Flask app: requests are traced, ``otel_bucket.wsgi.BucketMiddleware`` says who the user is.

    otel-bucket devserver                                    # in another terminal
    BUCKET_ENDPOINT=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev python examples/flask_app.py
    curl -H 'X-User-Id: 42' -H 'X-Company-Id: acme' http://127.0.0.1:5000/export
    curl -H 'X-User-Id: 42' -H 'X-Company-Id: acme' -d 'hi' http://127.0.0.1:5000/messages

``PORT`` picks the port (default 5000). For several worker processes, see ``gunicorn.conf.py``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, request
from opentelemetry.instrumentation.flask import FlaskInstrumentor

from otel_bucket import feature, install, set_event_attributes, track
from otel_bucket.wsgi import BucketMiddleware

install()  # BUCKET_TRACKING_KEY and BUCKET_ENDPOINT configure where the calls go

app = Flask(__name__)
FlaskInstrumentor().instrument_app(app)

# Stand-in for your user store: the name and plan sent as user and company attributes.
USERS = {"42": "Ada Lovelace", "7": "Grace Hopper"}
PLANS = {"acme": "enterprise", "globex": "team"}


def identity(environ: dict[str, Any]) -> dict[str, Any] | None:
    """Who is signed in, as ``identify()`` arguments; None for an anonymous request.

    Your auth decides this; the example trusts two headers. It runs before Flask, so it reads
    the WSGI environ (``werkzeug.Request(environ)`` parses cookies, if you need them).
    """
    user_id = environ.get("HTTP_X_USER_ID")
    if not user_id:
        return None  # anonymous: nothing is sent to Bucket for this request, nothing logged
    company_id = environ.get("HTTP_X_COMPANY_ID") or None
    return {
        "user_id": user_id,
        "company_id": company_id,
        "user_attributes": {"name": USERS.get(user_id, "unknown")},
        "company_attributes": {"plan": PLANS.get(company_id or "", "free")},
    }


app.wsgi_app = BucketMiddleware(app.wsgi_app, identity)  # type: ignore[method-assign]


@feature("Exported CSV", attributes={"format": "csv"})
def export_rows(rows: list[tuple[str, str]]) -> str:
    set_event_attributes({"rows": len(rows)})  # per-call data on this call's event
    return "".join(f"{a},{b}\n" for a, b in rows)


@feature  # the event is named after the function: "send_message"
def send_message(text: str) -> int:
    if "@" in text:
        track("Mentioned someone")  # an event for one branch, not a whole function
    return len(text)


@app.get("/export")
def export() -> Response:
    body = export_rows([("id", "name"), ("1", "widget")])
    return Response(body, mimetype="text/csv")


@app.post("/messages")
def messages() -> dict[str, int]:
    return {"length": send_message(request.get_data(as_text=True))}


@app.get("/health")
def health() -> str:
    return "ok"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
