"""Logging filters."""

import logging
import re

# Google-style clients may send the API key as ?key=; access logs print the full path.
_SECRET_IN_QUERY = re.compile(r"([?&](?:key|api_key|token)=)[^&\s\"]+", re.IGNORECASE)
_SECRET_KEY = re.compile(r"sk-byts-[A-Za-z0-9-]{8,}")


def redact(text: str) -> str:
    return _SECRET_KEY.sub("sk-byts-[redacted]", _SECRET_IN_QUERY.sub(r"\1[redacted]", text))


class RedactSecrets(logging.Filter):
    """Blank out API keys in a record's message and arguments before any handler sees it."""

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
