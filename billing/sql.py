"""The few plain SQL statements the books' hot path is written in, portable between PostgreSQL
and SQLite: every data-plane call places a hold and settles or releases it, and its usage is
recorded, so billing/holds.py, billing/batches.py and billing/usage.py run these rather than
going through the ORM. Table and column names come from model metadata; values are parameters.

On PostgreSQL a settlement batch runs in ``pipeline()``: statements whose results nobody reads
(``write``, ``insert_rows``, ``upsert_add``) are sent without waiting for the server, so a
batch's writes and its COMMIT cost one round trip instead of one each. ``execute`` and
``queries`` wait for what was sent before them and their own results.
"""

import contextvars
from contextlib import contextmanager
from datetime import datetime

from django.db import connection

# The psycopg pipeline of the running batch, if any (PostgreSQL only).
_pipeline = contextvars.ContextVar("sql_pipeline", default=None)


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def db_value(value):
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


@contextmanager
def pipeline():
    """Send statements without waiting for each one's answer (PostgreSQL's pipeline mode); on
    SQLite, which has no round trips to save, nothing changes. Enter it outside the transaction,
    so that the COMMIT goes out with the writes before it."""
    if connection.vendor != "postgresql" or _pipeline.get() is not None:
        yield
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.pipeline() as sent:
        token = _pipeline.set(sent)
        try:
            yield
        finally:
            _pipeline.reset(token)


def _wait() -> None:
    """In a pipeline: wait for the answers to everything sent so far (errors included)."""
    sent = _pipeline.get()
    if sent is not None:
        with connection.wrap_database_errors:
            sent.sync()


def write(sql: str, params=()) -> None:
    """Run a statement whose result is not read (in a pipeline: without waiting for it)."""
    if _pipeline.get() is None:
        with connection.cursor() as cursor:
            cursor.execute(sql, [db_value(p) for p in params])
        return
    # psycopg's own cursor: its errors come when the pipeline is synced, where they are
    # wrapped as Django's; Django's cursor would only add its per-statement overhead.
    with connection.wrap_database_errors:
        connection.connection.cursor().execute(sql, params)


def execute(sql: str, params=()) -> tuple | None:
    """Run one statement; its first row (RETURNING or SELECT), if any."""
    with connection.cursor() as cursor:
        cursor.execute(sql, [db_value(p) for p in params])
        _wait()
        return cursor.fetchone() if cursor.description else None


def queries(statements: list[tuple[str, list]]) -> list[list[tuple]]:
    """Run several queries; the rows of each. In a pipeline they go out together, in order, and
    their answers come back in one round trip."""
    cursors = []
    try:
        for statement, params in statements:
            cursor = connection.cursor()
            cursors.append(cursor)
            cursor.execute(statement, [db_value(p) for p in params])
        _wait()
        return [cursor.fetchall() for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


def insert(model, values: dict, *, suffix: str = "") -> tuple | None:
    names = ", ".join(connection.ops.quote_name(c) for c in values)
    marks = ", ".join(["%s"] * len(values))
    return execute(
        f"INSERT INTO {table(model)} ({names}) VALUES ({marks}) {suffix}", list(values.values())
    )


def insert_rows(model, rows: list[dict], *, suffix: str = "") -> None:
    """One INSERT of many rows (all with the same columns); nothing it returns is read."""
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
    write(
        f"INSERT INTO {table(model)} ({names}) VALUES {', '.join([marks] * len(rows))} {suffix}",
        [row[c] for row in rows for c in columns],
    )


def upsert_add(model, keys: tuple, rows: list[dict], *, amounts) -> None:
    """INSERT rows, or add their ``amounts`` to the rows already there (one statement; ``rows``
    must not repeat a key)."""
    target = table(model)
    quote = connection.ops.quote_name
    conflict = ", ".join(quote(c) for c in keys)
    updates = ", ".join(f"{quote(c)} = {target}.{quote(c)} + excluded.{quote(c)}" for c in amounts)
    insert_rows(model, rows, suffix=f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}")
