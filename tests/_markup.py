"""Calls whose ids, names, attributes and bodies carry markup: pages must show it as text."""

from __future__ import annotations

from typing import Final

import requests

SCRIPT: Final = "<script>document.title='pwned'</script>"
IMG: Final = '"><img src=x onerror="document.title=\'pwned\'">'
SVG: Final = "'><svg onload=alert(1)>"
CLOSE: Final = "</code></td></tr></table><u>bold</u>"

COMPANY: Final = f"co{SCRIPT}"
USER: Final = f"us{IMG}"
EVENT: Final = f"Export {SVG}"
EVERY: Final = (SCRIPT, IMG, SVG, CLOSE)


def post_markup(url: str) -> None:
    """Send the hostile calls (all valid but one) to the devserver at ``url``."""
    calls = [
        ("company", {"companyId": COMPANY, "userId": USER, "attributes": {"name": IMG}}),
        ("company", {"companyId": "plain", "userId": USER, "attributes": {"name": SCRIPT}}),
        ("user", {"userId": USER, "attributes": {"name": SVG, CLOSE: SCRIPT}}),
        ("event", {"event": EVENT, "userId": USER, "attributes": {IMG: CLOSE}}),
        ("event", {"event": SCRIPT, "userId": USER}),
    ]
    for method, body in calls:
        reply = requests.post(f"{url}/{SCRIPT}/{method}", json=body, timeout=5)
        assert reply.status_code == 404, reply.text  # the tracking key is not a path segment
        reply = requests.post(f"{url}/key/{method}", json=body, timeout=5)
        assert reply.status_code == 200, reply.text
    rejected = {"userId": USER, SCRIPT: IMG}
    assert requests.post(f"{url}/key/user", json=rejected, timeout=5).status_code == 400
