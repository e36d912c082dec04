"""What the pages read instead of the calls: aggregates SQLite keeps up to date as calls arrive.

Triggers on the calls table update, in the same transaction as each insert:

- ``uses``: one row per feature and user: events, distinct UTC days, first and last event,
  and when the user adopted the feature (their first event of the second distinct day);
- ``use_days``: one row per feature, user and UTC day (what ``uses`` is computed from when
  events arrive out of order, and the daily counts);
- ``use_weeks``: one row per feature, ISO week (its Monday, UTC) and user: weekly activity;
- ``company_weeks``: one row per feature, week and company: how many of its users were active
  (kept when a user is active, and when a user joins a company after being active);
- ``feature_days``: events per feature and UTC day;
- ``members``: which users each company's calls named;
- ``entities``: every user and company: accepted calls, first and last seen, latest name;
- ``tallies``: calls per method and status.

A database written before these tables existed is brought up to date once, when it is opened,
by inserting its calls again in their order: the triggers are the only code that aggregates.
"""

from __future__ import annotations

import sqlite3
from typing import Final

__all__ = ["VERSION", "install", "monday_sql"]

VERSION: Final = 1  # PRAGMA user_version once the aggregates exist and are complete


def monday_sql(day: str) -> str:
    """SQL for the Monday (ISO week start) of the date expression ``day`` ('YYYY-MM-DD')."""
    return f"date({day}, printf('-%d days', (CAST(strftime('%w', {day}) AS INTEGER) + 6) % 7))"


def _name(kind: str) -> str:
    """SQL for the ``name`` attribute a ``kind`` call carries, as text; NULL when it has none."""
    return (
        f"(CASE WHEN NEW.method = '{kind}' AND json_valid(NEW.body)"
        " AND json_type(NEW.body, '$.attributes.name') IN ('text', 'integer', 'real')"
        " THEN CAST(json_extract(NEW.body, '$.attributes.name') AS TEXT) END)"
    )


def _entity(kind: str) -> str:
    """The trigger that keeps the ``entities`` row of a call's user or company."""
    return f"""
CREATE TRIGGER IF NOT EXISTS calls_{kind} AFTER INSERT ON calls
WHEN NEW.status = 200 AND NEW.{kind}_id IS NOT NULL
BEGIN
    INSERT INTO entities VALUES ('{kind}', NEW.{kind}_id, 1, NEW.ts, NEW.ts, {_name(kind)})
        ON CONFLICT DO UPDATE SET calls = calls + 1, {_EARLIER},
        name = coalesce(excluded.name, name);
END;"""


_TABLES: Final = """
CREATE TABLE IF NOT EXISTS uses (
    event TEXT NOT NULL, user_id TEXT NOT NULL,
    events INTEGER NOT NULL, days INTEGER NOT NULL,
    first_ts TEXT NOT NULL, last_ts TEXT NOT NULL, adopted_at TEXT,
    PRIMARY KEY (event, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uses_user ON uses (user_id);
CREATE TABLE IF NOT EXISTS use_days (
    event TEXT NOT NULL, user_id TEXT NOT NULL, day TEXT NOT NULL,
    events INTEGER NOT NULL, first_ts TEXT NOT NULL, last_ts TEXT NOT NULL,
    PRIMARY KEY (event, user_id, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS use_weeks (
    event TEXT NOT NULL, week TEXT NOT NULL, user_id TEXT NOT NULL, events INTEGER NOT NULL,
    PRIMARY KEY (event, week, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS use_weeks_user ON use_weeks (user_id, event);
CREATE TABLE IF NOT EXISTS company_weeks (
    event TEXT NOT NULL, week TEXT NOT NULL, company_id TEXT NOT NULL, users INTEGER NOT NULL,
    PRIMARY KEY (event, week, company_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS company_weeks_company ON company_weeks (company_id, week);
CREATE TABLE IF NOT EXISTS feature_days (
    event TEXT NOT NULL, day TEXT NOT NULL, events INTEGER NOT NULL,
    PRIMARY KEY (day, event)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    company_id TEXT NOT NULL, user_id TEXT NOT NULL,
    PRIMARY KEY (company_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_user ON members (user_id, company_id);
CREATE TABLE IF NOT EXISTS entities (
    kind TEXT NOT NULL, id TEXT NOT NULL, calls INTEGER NOT NULL,
    first_ts TEXT NOT NULL, last_ts TEXT NOT NULL, name TEXT,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tallies (
    method TEXT NOT NULL, status INTEGER NOT NULL, calls INTEGER NOT NULL,
    PRIMARY KEY (method, status)
) WITHOUT ROWID;
"""

_THIS_USE: Final = "event = NEW.event AND user_id = NEW.user_id"
# The first event of the user's second distinct day with the feature: when they adopted it.
_ADOPTED: Final = f"(SELECT first_ts FROM use_days WHERE {_THIS_USE} ORDER BY day LIMIT 1 OFFSET 1)"
_EARLIER: Final = (
    "first_ts = min(first_ts, excluded.first_ts), last_ts = max(last_ts, excluded.last_ts)"
)

_TRIGGERS: Final = f"""
CREATE TRIGGER IF NOT EXISTS calls_tally AFTER INSERT ON calls BEGIN
    INSERT INTO tallies VALUES (NEW.method, NEW.status, 1)
        ON CONFLICT DO UPDATE SET calls = calls + 1;
END;
CREATE TRIGGER IF NOT EXISTS calls_use AFTER INSERT ON calls
WHEN NEW.status = 200 AND NEW.method = 'event' AND NEW.event IS NOT NULL
    AND NEW.user_id IS NOT NULL
BEGIN
    INSERT INTO uses VALUES (NEW.event, NEW.user_id, 1, 0, NEW.ts, NEW.ts, NULL)
        ON CONFLICT DO UPDATE SET events = events + 1, {_EARLIER};
    INSERT INTO use_days VALUES (NEW.event, NEW.user_id, substr(NEW.ts, 1, 10), 1, NEW.ts, NEW.ts)
        ON CONFLICT DO UPDATE SET events = events + 1, {_EARLIER};
    INSERT INTO use_weeks
        VALUES (NEW.event, {monday_sql("substr(NEW.ts, 1, 10)")}, NEW.user_id, 1)
        ON CONFLICT DO UPDATE SET events = events + 1;
    INSERT INTO feature_days VALUES (NEW.event, substr(NEW.ts, 1, 10), 1)
        ON CONFLICT DO UPDATE SET events = events + 1;
END;
CREATE TRIGGER IF NOT EXISTS use_new_week AFTER INSERT ON use_weeks BEGIN
    INSERT INTO company_weeks
        SELECT NEW.event, NEW.week, company_id, 1 FROM members WHERE user_id = NEW.user_id
        ON CONFLICT DO UPDATE SET users = users + 1;
END;
CREATE TRIGGER IF NOT EXISTS member_weeks AFTER INSERT ON members BEGIN
    INSERT INTO company_weeks
        SELECT event, week, NEW.company_id, 1 FROM use_weeks WHERE user_id = NEW.user_id
        ON CONFLICT DO UPDATE SET users = users + 1;
END;
CREATE TRIGGER IF NOT EXISTS use_new_day AFTER INSERT ON use_days BEGIN
    UPDATE uses SET days = days + 1, adopted_at = {_ADOPTED} WHERE {_THIS_USE};
END;
CREATE TRIGGER IF NOT EXISTS use_earlier_in_day AFTER UPDATE OF first_ts ON use_days
WHEN NEW.first_ts < OLD.first_ts
BEGIN
    UPDATE uses SET adopted_at = {_ADOPTED} WHERE {_THIS_USE};
END;
CREATE TRIGGER IF NOT EXISTS calls_member AFTER INSERT ON calls
WHEN NEW.status = 200 AND NEW.method = 'company' AND NEW.company_id IS NOT NULL
    AND NEW.user_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO members VALUES (NEW.company_id, NEW.user_id);
END;
{_entity("user")}{_entity("company")}"""

_AGGREGATES: Final = (
    "uses",
    "use_days",
    "use_weeks",
    "company_weeks",
    "feature_days",
    "members",
    "entities",
    "tallies",
)


def install(db: sqlite3.Connection) -> None:
    """Create the aggregate tables and their triggers; fill them from older calls once.

    One transaction: a database is never left with half its aggregates.
    """
    [(version,)] = db.execute("PRAGMA user_version").fetchall()
    if version >= VERSION:
        return
    empty = "".join(f"DELETE FROM {table};" for table in _AGGREGATES)
    # Replay the calls through the triggers, in their order (so the latest name wins).
    replay = (
        "CREATE TEMP TABLE replay AS SELECT * FROM calls; DELETE FROM calls;"
        " INSERT INTO calls SELECT * FROM replay ORDER BY id; DROP TABLE replay;"
    )
    try:
        db.executescript(
            f"BEGIN IMMEDIATE;{_TABLES}{empty}{_TRIGGERS}{replay}"
            f"PRAGMA user_version = {VERSION}; COMMIT;"
        )
    except sqlite3.Error:
        if db.in_transaction:
            db.rollback()
        raise
