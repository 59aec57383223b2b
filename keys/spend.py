"""What a key has spent, for the key pages.

The books are billing's, and billing builds on keys, so keys cannot ask billing directly:
billing installs its reader here when it starts (``billing/apps.py``), as it opens an account's
wallet on accounts' signal. The pages only know this interface.
"""

from dataclasses import dataclass
from typing import Protocol

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class KeySpend:
    """Micro-credits a key was charged: over the last 30 days, and ever (against its quota)."""

    last_30_days: int = 0
    lifetime: int = 0


class SpendReader(Protocol):
    def spend_by_key(self, account, api_keys: list) -> dict[int, KeySpend]:
        """Each key's spend, by the key's pk, in a fixed number of queries whatever the keys."""
        ...

    def usage_panel(self, account, api_key) -> dict:
        """The template context of a key page's usage section: ``usage_report`` (totals since
        ``usage_report.filter.since``), ``usage_chart`` (daily spend) and ``usage_url``."""
        ...


_reader: SpendReader | None = None


def install(reader: SpendReader) -> None:
    global _reader
    _reader = reader


def reader() -> SpendReader:
    if _reader is None:
        raise ImproperlyConfigured("No key spend reader: billing installs it when it starts.")
    return _reader
