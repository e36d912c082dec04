"""The smallest otel-bucket program: mark features, say who the user is, and send.

Run a devserver in one terminal and this script in another:

    otel-bucket devserver
    BUCKET_ENDPOINT=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev python examples/quickstart.py

then open http://127.0.0.1:8787/. With your app's real tracking key in BUCKET_TRACKING_KEY and
no BUCKET_ENDPOINT, the same script sends to Bucket.
"""

from __future__ import annotations

from otel_bucket import feature, identify, install

# Adds otel-bucket's processor to the global SDK TracerProvider (creating one if needed);
# the tracking key and the endpoint come from BUCKET_TRACKING_KEY and BUCKET_ENDPOINT.
install()


@feature  # the event is named after the function: "export_csv"
def export_csv(rows: list[dict[str, str]]) -> str:
    header = ",".join(rows[0])
    return "\n".join([header, *(",".join(row.values()) for row in rows)])


@feature("Sent message", attributes={"channel": "chat"})
def send_message(text: str) -> None:
    print(f"sent: {text}")


def main() -> None:
    # In an app this wraps the handling of one request, once you know who is signed in.
    with identify(
        user_id=42,
        company_id="acme",
        user_attributes={"name": "Ada Lovelace"},
        company_attributes={"name": "Acme Corp", "plan": "enterprise"},
    ):
        print(export_csv([{"id": "1", "name": "widget"}]))
        send_message("hello")


if __name__ == "__main__":
    main()
    # No flush needed: the SDK's TracerProvider delivers what is queued when Python exits.
