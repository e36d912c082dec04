"""Which calls the calls page and ``/api/calls`` list: a filter, as SQL for the calls table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CallFilter", "accepted_sql"]


@dataclass(frozen=True)
class CallFilter:
    """Which calls to list; every field left None matches all.

    ``company_id`` matches the company's own calls and the user and event calls of its users;
    ``status`` is ``"accepted"``, ``"rejected"`` (anything but 200) or a status code.
    """

    method: str | None = None
    user_id: str | None = None
    company_id: str | None = None
    event: str | None = None
    status: str | None = None

    def narrow(self) -> bool:
        """Whether it names a user, company or event (each has an index of its own)."""
        return any(value is not None for value in (self.user_id, self.company_id, self.event))

    def where(self, *, listing: bool = False) -> tuple[str, tuple[Any, ...]]:
        """The SQL condition and its parameters.

        Args:
            listing: the condition picks the newest calls (``ORDER BY id DESC LIMIT``).
        """
        accepted = accepted_sql(listing, self)
        terms: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("method", self.method),
            ("user_id", self.user_id),
            ("event", self.event),
        ):
            if value is not None:
                terms.append(f"{column} = ?")
                params.append(value)
        if self.company_id is not None:
            terms.append(
                "(company_id = ? OR (+company_id IS NULL"
                " AND user_id IN (SELECT user_id FROM members WHERE company_id = ?)))"
            )
            params += [self.company_id, self.company_id]
        if self.status == "accepted":
            terms.append(accepted)
        elif self.status == "rejected":
            terms.append("status != 200")
        elif self.status is not None:
            terms.append("status = ?")
            params.append(int(self.status) if self.status.isdigit() else -1)
        return (" AND ".join(terms) or "1"), tuple(params)


def accepted_sql(listing: bool, where: CallFilter) -> str:
    """The condition "accepted", written so that SQLite picks the right index.

    Most calls are accepted, so ``status = 200`` narrows nothing down, but SQLite has no
    statistics to know it. The unary ``+`` keeps it from using the status index: it then uses
    the index of the user, company or event asked for (each holds the status), or walks back
    from the newest call to list them. The status index serves a method asked for, and the
    count of all accepted calls.
    """
    if where.narrow() or (listing and where.method is None):
        return "+status = 200"
    return "status = 200"
