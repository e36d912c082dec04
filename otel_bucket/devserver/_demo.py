"""``otel-bucket demo``: a sample app, the real install/identify/feature path, a local devserver.

The sample app uses its own SDK ``TracerProvider`` (passed explicitly, never set as the global
one), so the demo runs the same way in a fresh process or inside another program.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

import requests
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_bucket import BucketSpanExporter, ExporterStats, feature, identify, install
from otel_bucket.devserver import DevServer, Snapshot, format_line

__all__ = ["COMPANIES", "USERS", "VISITS", "play", "run_demo"]

Echo = Callable[[str], None]

COMPANIES: Final = {
    "acme": {"name": "Acme Corp", "plan": "enterprise"},
    "globex": {"name": "Globex", "plan": "team"},
    "initech": {"name": "Initech", "plan": "trial"},
}
# user id -> (name, company id)
USERS: Final = {
    "ada": ("Ada Lovelace", "acme"),
    "alan": ("Alan Turing", "acme"),
    "grace": ("Grace Hopper", "globex"),
    "linus": ("Linus Torvalds", "globex"),
    "margaret": ("Margaret Hamilton", "initech"),
}
# One "request" per entry: who signs in and which features they use in it.
VISITS: Final = [
    ("ada", ["export_csv", "send_message"]),
    ("alan", ["send_message", "send_message"]),
    ("grace", ["export_csv", "create_report"]),
    ("linus", ["send_message"]),
    ("ada", ["export_csv"]),
    ("margaret", []),  # signs in, uses nothing: only the user and company calls
]


def _sample_app(provider: TracerProvider) -> Callable[[str, list[str]], None]:
    """The app: three marked features and a request handler that says who the user is."""
    tracer = provider.get_tracer("otel-bucket-demo")

    @feature(tracer_provider=provider)  # event name: the function's name, "export_csv"
    def export_csv() -> str:
        return "id,name\n"

    @feature("Sent message", attributes={"channel": "chat"}, tracer_provider=provider)
    def send_message() -> None:
        pass

    @feature("Created report", tracer_provider=provider)
    async def create_report() -> None:
        await asyncio.sleep(0)

    def handle_request(user_id: str, features: list[str]) -> None:
        name, company_id = USERS[user_id]
        with (
            tracer.start_as_current_span("GET /app"),
            identify(
                user_id=user_id,
                company_id=company_id,
                user_attributes={"name": name},
                company_attributes=COMPANIES[company_id],
            ),
        ):
            for used in features:
                if used == "export_csv":
                    export_csv()
                elif used == "send_message":
                    send_message()
                else:
                    asyncio.run(create_report())

    return handle_request


def _expected() -> tuple[int, set[str], set[str]]:
    events = sum(len(features) for _, features in VISITS)
    users = {user for user, _ in VISITS}
    return events, users, {USERS[user][1] for user in users}


def play(endpoint: str) -> ExporterStats:
    """Run the sample app's visits through ``install()`` against ``endpoint``; flush; stats."""
    provider = TracerProvider(resource=Resource.create({"service.name": "demo-app"}))
    with requests.Session() as session:
        session.trust_env = False  # loopback only: never through a configured proxy
        processor = install(provider, tracking_key="demo", endpoint=endpoint, session=session)
        handle_request = _sample_app(provider)
        for user_id, features in VISITS:
            handle_request(user_id, features)
        provider.force_flush()
        provider.shutdown()
    exporter = processor.exporter
    assert isinstance(exporter, BucketSpanExporter)  # install() built it
    return exporter.stats


def _report(echo: Echo, snapshot: Snapshot, stats: ExporterStats, known: list[str]) -> bool:
    counts = snapshot.counts
    events, users, companies = _expected()
    echo("")
    echo(
        f"The devserver received {counts['user']} user, {counts['company']} company and "
        f"{counts['event']} event calls ({counts['rejected']} rejected)."
    )
    echo(
        f"The exporter delivered {stats.delivered}, skipped {stats.deduplicated} duplicates "
        f"and retried {stats.retried} times."
    )
    echo("")
    echo(f"  {'feature':<16}{'companies':>10}{'users':>7}   users per company")
    for row in snapshot.adoption:
        # Every company, those that did not use the feature too: that is the signal.
        columns = known + [c for c in row.by_company if c not in known]
        per_company = ", ".join(
            f"{company or '(none)'}: {row.by_company.get(company, (0, ''))[0]}"
            for company in columns
        )
        echo(f"  {row.feature:<16}{row.companies:>10}{row.users:>7}   {per_company}")
    seen_users = {c.user_id for c in snapshot.calls if c.method == "user"}
    seen_companies = {c.company_id for c in snapshot.calls if c.method == "company"}
    problems = []
    if counts["event"] != events:
        problems.append(f"expected {events} event calls, got {counts['event']}")
    if seen_users != users or seen_companies != companies:
        problems.append("some users or companies did not arrive")
    if counts["rejected"]:
        problems.append(f"{counts['rejected']} calls were rejected")
    echo("")
    if problems:
        echo(f"Something went wrong: {'; '.join(problems)} (exporter: {stats}).")
        return False
    echo("Every call arrived. Where to look next:")
    echo("  otel-bucket devserver           a devserver that stays up: http://127.0.0.1:8787/")
    echo("  otel-bucket demo --serve        this demo, keeping its page open to browse")
    echo("  examples/quickstart.py          the same in your own script (see examples/README.md)")
    echo("  docs/getting-started.md         the setup for your own app, then docs/conventions.md")
    return True


def run_demo(echo: Echo, *, verbose: bool = True, serve: bool = False) -> int:
    """Run the demo, writing its report line by line to ``echo``; returns the exit code."""
    on_call = (lambda call: echo("  devserver: " + format_line(call))) if verbose else None
    with tempfile.TemporaryDirectory(prefix="otel-bucket-demo-") as folder:
        server = DevServer(port=0, db_path=Path(folder) / "demo.sqlite3", on_call=on_call)
        server.start()
        try:
            echo(f"otel-bucket demo: a devserver on {server.url}, a sample app with 3 companies,")
            echo(f"{len(USERS)} users and 3 features, sending through otel_bucket.install().")
            if verbose:
                echo("")
            stats = play(server.url)
            known = sorted(c for c in server.app.overview().companies if c)
            ok = _report(echo, server.snapshot(limit=1000), stats, known)
            if serve:
                echo("")
                echo(f"Serving the demo's page at {server.url}/ until Ctrl-C.")
                with contextlib.suppress(KeyboardInterrupt):
                    server.wait()
            return 0 if ok else 1
        finally:
            server.stop()
