"""A one-file Django project: ``otel_bucket.django.BucketMiddleware`` identifies signed-in users.

    otel-bucket devserver                                    # in another terminal
    BUCKET_ENDPOINT=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev python examples/django_app.py
    curl -H 'X-User-Id: 42' -H 'X-Company-Id: acme' http://127.0.0.1:8000/reports/weekly
    curl -X POST -H 'X-User-Id: 42' -H 'X-Company-Id: acme' http://127.0.0.1:8000/messages

With no arguments it runs ``runserver 127.0.0.1:$PORT --noreload`` (``PORT`` default 8000);
any arguments go to Django's command line instead (``python examples/django_app.py check``).
Set ``OTEL_INSTRUMENT_DJANGO=0`` to run without ``opentelemetry-instrumentation-django``: the
features still carry the identity, only the request span is missing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from otel_bucket import feature, install, set_event_attributes, track

settings.configure(
    DEBUG=False,
    SECRET_KEY="example only",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
    MIDDLEWARE=[
        f"{__name__}.HeaderAuthentication",  # stands in for AuthenticationMiddleware
        "otel_bucket.django.BucketMiddleware",  # after authentication: request.user is known
    ],
    # A callable taking the request of a signed-in user: more identify() arguments.
    OTEL_BUCKET_IDENTITY=f"{__name__}.bucket_identity",
    DATABASES={},
)
django.setup()
install()  # BUCKET_TRACKING_KEY and BUCKET_ENDPOINT configure where the calls go
if os.environ.get("OTEL_INSTRUMENT_DJANGO", "1") != "0":
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    DjangoInstrumentor().instrument()  # puts its middleware first: the request span


PLANS = {"acme": "enterprise", "globex": "team"}


class HeaderAuthentication:
    """Your auth decides who is signed in; this example trusts two headers (no database)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        from django.contrib.auth.models import AnonymousUser, User  # once the apps are set up

        user_id = request.headers.get("X-User-Id", "")
        if user_id.isdigit():
            request.user = User(pk=int(user_id), username=f"user{user_id}")
        else:
            request.user = AnonymousUser()
        return self.get_response(request)


def bucket_identity(request: HttpRequest) -> dict[str, Any]:
    """``OTEL_BUCKET_IDENTITY``: the company and attributes of a signed-in user's request."""
    company = request.headers.get("X-Company-Id") or None
    return {
        "company_id": company,
        "user_attributes": {"name": request.user.get_username()},
        "company_attributes": {"plan": PLANS.get(company or "", "free")},
    }


@feature("Viewed report")
def load_report(name: str) -> dict[str, Any]:
    rows = [{"week": name, "total": 3}]
    set_event_attributes({"rows": len(rows)})  # per-call data on this call's event
    return {"report": name, "rows": rows}


def report(request: HttpRequest, name: str) -> JsonResponse:
    return JsonResponse(load_report(name))


def messages(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    track("Sent message", {"channel": "chat"})  # an event that is a branch, not a function
    return JsonResponse({"sent": True})


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("reports/<str:name>", report),
    path("messages", messages),
    path("health", health),
]


if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    args = sys.argv[1:] or [
        "runserver",
        f"127.0.0.1:{os.environ.get('PORT', '8000')}",
        "--noreload",
    ]
    execute_from_command_line([sys.argv[0], *args])
