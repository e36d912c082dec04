"""A Flask app: requests are traced, a ``before_request`` hook says who the user is.

    otel-bucket devserver                                    # in another terminal
    BUCKET_ENDPOINT=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev python examples/flask_app.py
    curl -H 'X-User-Id: 42' -H 'X-Company-Id: acme' http://127.0.0.1:5000/export
    curl -H 'X-User-Id: 42' -H 'X-Company-Id: acme' -d 'hi' http://127.0.0.1:5000/messages

For several worker processes, see ``gunicorn.conf.py``.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from flask import Flask, Response, g, request
from opentelemetry.instrumentation.flask import FlaskInstrumentor

from otel_bucket import feature, identify, install

install()  # BUCKET_TRACKING_KEY and BUCKET_ENDPOINT configure where the calls go

app = Flask(__name__)
FlaskInstrumentor().instrument_app(app)  # before our hooks, so its request span is current

# Stand-in for your user store: the name and plan sent as user and company attributes.
USERS = {"42": "Ada Lovelace", "7": "Grace Hopper"}
PLANS = {"acme": "enterprise", "globex": "team"}


@app.before_request
def identify_user() -> None:
    # Your auth decides who is signed in; this example trusts two headers.
    user_id = request.headers.get("X-User-Id")
    if not user_id:
        return  # anonymous: nothing is sent to Bucket for this request
    company_id = request.headers.get("X-Company-Id") or None
    stack = ExitStack()
    stack.enter_context(
        identify(
            user_id=user_id,
            company_id=company_id,
            user_attributes={"name": USERS.get(user_id, "unknown")},
            company_attributes={"plan": PLANS.get(company_id or "", "free")},
        )
    )
    g.bucket_identity = stack  # left in teardown_request, once the response is done


@app.teardown_request
def forget_user(exc: BaseException | None) -> None:
    stack = g.pop("bucket_identity", None)
    if stack is not None:
        stack.close()


@feature("Exported CSV", attributes={"format": "csv"})
def export_rows(rows: list[tuple[str, str]]) -> str:
    return "".join(f"{a},{b}\n" for a, b in rows)


@feature  # the event is named after the function: "send_message"
def send_message(text: str) -> int:
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
