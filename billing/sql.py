"""The few plain SQL statements the books' hot path is written in, portable between PostgreSQL
and SQLite: every data-plane call places a hold and settles or releases it, and its usage is
recorded, so billing/holds.py, billing/batches.py and billing/usage.py run these rather than
going through the ORM. Table and column names come from model metadata; values are parameters.
"""

from datetime import datetime

from django.db import connection


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def db_value(value):
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


def execute(sql: str, params=()) -> tuple | None:
    """Run one statement; its first row (RETURNING or SELECT), if any."""
    with connection.cursor() as cursor:
        cursor.execute(sql, [db_value(p) for p in params])
        return cursor.fetchone() if cursor.description else None


def insert(model, values: dict, *, suffix: str = "") -> tuple | None:
    names = ", ".join(connection.ops.quote_name(c) for c in values)
    marks = ", ".join(["%s"] * len(values))
    return execute(
        f"INSERT INTO {table(model)} ({names}) VALUES ({marks}) {suffix}", list(values.values())
    )


def insert_rows(model, rows: list[dict], *, suffix: str = "") -> None:
    """One INSERT of many rows (all with the same columns)."""
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
    values = [db_value(row[c]) for row in rows for c in columns]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table(model)} ({names}) VALUES {', '.join([marks] * len(rows))} "
            f"{suffix}",
            values,
        )


def upsert_add(model, keys: tuple, rows: list[dict], *, amounts) -> None:
    """INSERT rows, or add their ``amounts`` to the rows already there (one statement; ``rows``
    must not repeat a key)."""
    target = table(model)
    quote = connection.ops.quote_name
    conflict = ", ".join(quote(c) for c in keys)
    updates = ", ".join(f"{quote(c)} = {target}.{quote(c)} + excluded.{quote(c)}" for c in amounts)
    insert_rows(model, rows, suffix=f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}")
