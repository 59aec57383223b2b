"""Logging filters."""

import logging

from core.logs import redact

__all__ = ["RedactSecrets", "redact"]


class RedactSecrets(logging.Filter):
    """Blank out API keys in a record's message and arguments before any handler sees it.

    Our own handler's formatter (core/logs.py) redacts each rendered line again, text or JSON,
    which covers what a filter cannot see: structured fields and tracebacks. This filter keeps
    handlers that are not ours (uvicorn's access log in text mode) clean too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True
