"""Public identifiers: a type prefix and a ULID (sortable by creation time, unguessable)."""

from ulid import ULID


def new_public_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"
