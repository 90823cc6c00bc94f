"""Numbered schema migrations of the SQLite store.

``MIGRATIONS[n - 1]`` is the SQL script that takes a database from version ``n - 1`` to
version ``n``; the ``schema_version`` table records every version applied (the current
one is the largest). Migrations run in order, all in one ``BEGIN IMMEDIATE`` transaction,
so a crash or a second process never sees a half-migrated file.

A file written by a newer tether is refused with :class:`~tether.errors.SchemaVersionError`
*before anything is written to it*: no migration, no journal-mode change.

Never edit a released migration; append a new one.
"""

from __future__ import annotations

import sqlite3

from tether.errors import SchemaVersionError

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "check_version",
    "migrate",
    "schema_version",
    "split_statements",
]

_V1 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    agent_ref TEXT,
    user_id TEXT,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,        -- unix seconds, database clock
    updated_at REAL NOT NULL,
    finished_at REAL,
    lease_owner TEXT,
    lease_expires_at REAL,
    lease_epoch INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    event_count INTEGER NOT NULL DEFAULT 0
);
-- claim next: pending or expired running runs, oldest first
CREATE INDEX runs_claim ON runs (status, lease_expires_at, created_at);
-- list_runs: newest first, optionally by agent
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_agent ON runs (agent, created_at);
-- prune
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,            -- 1 for run_started, then contiguous
    kind TEXT NOT NULL,
    body TEXT NOT NULL,              -- tether.store.codec: the event without run_id, kind
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""

_V2 = """
-- claim next (see sqlite.py): each status in creation order, lease at hand
CREATE INDEX runs_queue ON runs (status, created_at, lease_expires_at);
"""

_V3 = """
-- events keyed by an integer run key instead of the 36-character run id (about 35 bytes
-- less per event row): runs get run_key, an alias of their rowid (so claim order, which
-- breaks created_at ties by rowid, is kept), and both tables are copied.
CREATE TABLE runs_v3 (
    run_key INTEGER PRIMARY KEY,     -- the rowid; what events refer to
    run_id TEXT NOT NULL UNIQUE,
    agent TEXT NOT NULL,
    agent_ref TEXT,
    user_id TEXT,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,        -- unix seconds, database clock
    updated_at REAL NOT NULL,
    finished_at REAL,
    lease_owner TEXT,
    lease_expires_at REAL,
    lease_epoch INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    event_count INTEGER NOT NULL DEFAULT 0
);
INSERT INTO runs_v3 (run_key, run_id, agent, agent_ref, user_id, task, status, created_at,
    updated_at, finished_at, lease_owner, lease_expires_at, lease_epoch, attempts,
    event_count)
SELECT rowid, run_id, agent, agent_ref, user_id, task, status, created_at, updated_at,
    finished_at, lease_owner, lease_expires_at, lease_epoch, attempts, event_count
FROM runs;

CREATE TABLE events_v3 (
    run_key INTEGER NOT NULL REFERENCES runs_v3 (run_key) ON DELETE CASCADE,
    seq INTEGER NOT NULL,            -- 1 for run_started, then contiguous
    kind TEXT NOT NULL,
    body TEXT NOT NULL,              -- tether.store.codec: the event without run_id, kind
    PRIMARY KEY (run_key, seq)
) WITHOUT ROWID;
INSERT INTO events_v3 (run_key, seq, kind, body)
SELECT runs_v3.run_key, events.seq, events.kind, events.body
FROM events JOIN runs_v3 ON runs_v3.run_id = events.run_id;

-- Children first, so dropping runs cascades into nothing. Renaming runs_v3 also renames
-- the reference in events_v3 (SQLite >= 3.26 rewrites foreign keys on RENAME).
DROP TABLE events;
DROP TABLE runs;
ALTER TABLE runs_v3 RENAME TO runs;
ALTER TABLE events_v3 RENAME TO events;

-- The indexes of versions 1 and 2, dropped with the old table. The two claim-next indexes
-- now hold only runs with an agent_ref (the only ones claim next may take), so the claim
-- queries read the index alone, and runs without one never touch them.
CREATE INDEX runs_claim ON runs (status, lease_expires_at, created_at)
    WHERE agent_ref IS NOT NULL;
CREATE INDEX runs_queue ON runs (status, created_at, lease_expires_at)
    WHERE agent_ref IS NOT NULL;
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_agent ON runs (agent, created_at);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
"""

_V4 = """
-- values remembered across runs for a while, such as a deduplicated tool call's result
CREATE TABLE remembered (
    namespace TEXT NOT NULL,         -- for example 'tool:charge'
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    source TEXT,                     -- the run that remembered it
    expires_at REAL NOT NULL,        -- unix seconds, database clock
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX remembered_expiry ON remembered (expires_at);
"""

_V5 = """
-- the audit log: append-only, hash-chained (tether.governance.audit)
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,         -- 1, 2, 3, ... in append order
    at REAL NOT NULL,                -- unix seconds, database clock
    actor TEXT,                      -- who: a user id, 'worker:<owner>', 'system'
    action TEXT NOT NULL,            -- allow, deny, approval_requested, budget_denied, ...
    run_id TEXT,
    step INTEGER,
    subject TEXT,                    -- the tool, budget or grant concerned
    args_hash TEXT,                  -- sha256 of the canonical arguments, if any
    reason TEXT,
    body TEXT NOT NULL,              -- canonical JSON of the row's fields (what is hashed)
    prev_hash TEXT NOT NULL,         -- hash of row seq - 1 ('' for the first)
    hash TEXT NOT NULL               -- sha256(prev_hash + body)
);
"""

_V6 = """
-- money budgets (tether.governance.budgets); amounts in integer micro-dollars
CREATE TABLE budget_windows (
    budget TEXT NOT NULL,            -- for example 'user:ana:day', 'global:hour', 'run:<id>'
    window_start REAL NOT NULL,      -- unix seconds, database clock
    limit_micros INTEGER NOT NULL,
    spent_micros INTEGER NOT NULL DEFAULT 0,
    reserved_micros INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (budget, window_start),
    CHECK (spent_micros >= 0 AND reserved_micros >= 0)
) WITHOUT ROWID;
CREATE TABLE budget_reservations (
    reservation_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    lease_epoch INTEGER NOT NULL,    -- released when this lease of the run is gone
    amount_micros INTEGER NOT NULL,
    windows TEXT NOT NULL,           -- JSON [[budget, window_start], ...]
    created_at REAL NOT NULL
);
CREATE INDEX budget_reservations_run ON budget_reservations (run_id);
"""

_V7 = """
-- tool permissions (tether.governance.permissions): deny by default
CREATE TABLE principals (
    user_id TEXT PRIMARY KEY,
    roles TEXT NOT NULL              -- JSON ["admin", ...]
);
CREATE TABLE grants (
    grant_id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,         -- 'user:<id>' or 'role:<name>'
    tool TEXT NOT NULL,              -- a tool name or '*'
    max_args TEXT,                   -- JSON {argument: ceiling}, or NULL
    expires_at REAL,                 -- unix seconds, database clock; NULL: never
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX grants_principal ON grants (principal);
"""

_V8 = """
-- single-use approvals of tool calls (tether.governance.approvals)
CREATE TABLE approvals (
    approval_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    tool TEXT NOT NULL,
    args_hash TEXT NOT NULL,         -- sha256 of the canonical JSON of the arguments
    reasons TEXT,                    -- JSON ["why ask", ...]
    requested_at REAL NOT NULL,      -- unix seconds, database clock
    expires_at REAL NOT NULL,
    status TEXT NOT NULL,            -- pending|approved|denied|expired|used
    decided_by TEXT,
    decided_at REAL,
    comment TEXT,
    UNIQUE (run_id, step)
);
CREATE INDEX approvals_status ON approvals (status, requested_at);
"""

_V9 = """
-- the role a person must hold to decide an approval request
ALTER TABLE approvals ADD COLUMN approver_role TEXT;
"""

_V10 = """
-- what people added to a budget window's configured limit (tether budgets raise)
ALTER TABLE budget_windows ADD COLUMN raised_micros INTEGER NOT NULL DEFAULT 0;
"""

_V11 = """
-- observability (tether.observe): per-run metrics, user feedback, drift alerts
CREATE TABLE run_metrics (
    run_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    user_id TEXT,
    status TEXT NOT NULL,
    finished_at REAL NOT NULL,       -- unix seconds
    duration_s REAL NOT NULL,
    steps INTEGER NOT NULL,
    tool_calls INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_micros INTEGER,             -- NULL: unknown
    tool_errors INTEGER NOT NULL,
    error_class TEXT,
    escalations INTEGER NOT NULL,
    degraded INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX run_metrics_agent ON run_metrics (agent, finished_at);
CREATE TABLE feedback (
    run_id TEXT PRIMARY KEY,         -- the latest feedback replaces earlier feedback
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment TEXT,
    by_user TEXT,
    at REAL NOT NULL                 -- unix seconds, database clock
);
CREATE TABLE alerts (
    alert_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    metric TEXT NOT NULL,
    baseline REAL NOT NULL,
    recent REAL NOT NULL,
    ratio REAL NOT NULL,
    evidence TEXT NOT NULL,          -- JSON
    at REAL NOT NULL                 -- unix seconds
);
CREATE INDEX alerts_at ON alerts (agent, metric, at);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11)
"""SQL scripts; ``MIGRATIONS[n - 1]`` moves a database from version ``n - 1`` to ``n``."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The newest schema version this tether knows (and creates)."""

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at REAL NOT NULL         -- unix seconds, database clock
)
"""
_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the schema version of the open database (0 for an empty file). Read-only."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0])


def check_version(conn: sqlite3.Connection, *, name: str) -> int:
    """Return the database's schema version after checking this tether can use it. Read-only.

    Args:
        conn: An open connection.
        name: How to call the database in the error message (its path).

    Raises:
        SchemaVersionError: The database was written by a newer tether.
    """
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{name} has schema version {found}, but this tether supports versions up to "
            f"{SCHEMA_VERSION}: upgrade tether to open it (the file was not changed)"
        )
    return found


def migrate(conn: sqlite3.Connection, *, name: str) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; return the version it had before.

    Needs a connection in autocommit mode (``isolation_level=None``); applies the missing
    migrations in one ``BEGIN IMMEDIATE`` transaction, so concurrent openers migrate once.

    Raises:
        SchemaVersionError: The database was written by a newer tether (nothing written).
    """
    if check_version(conn, name=name) == SCHEMA_VERSION:
        return SCHEMA_VERSION
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated between the check above and our write lock.
        found = check_version(conn, name=name)
        conn.execute(_VERSION_TABLE)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in split_statements(MIGRATIONS[version - 1]):
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO schema_version (version, applied_at) VALUES (?, {_NOW})", (version,)
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


def split_statements(script: str) -> list[str]:
    """Split an SQL script into statements (``executescript`` would commit our transaction).

    Uses :func:`sqlite3.complete_statement`, so semicolons inside strings, comments and
    trigger bodies do not split.
    """
    statements: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \t\r\n;"):
                statements.append(current.strip())
            current = ""
    if current.strip(" \t\r\n;"):
        statements.append(current.strip())  # no final semicolon; SQLite will judge it
    return statements
