"""Structured logs: the format every process writes, a request's context, and its access line
(docs/operations.md#logs).

Every line goes through the standard library's logging, formatted by structlog's
``ProcessorFormatter``, so Django's, uvicorn's and Celery's lines come out like ours:
``BYTESPIKE_LOG_FORMAT=text`` (the default) one readable line, ``json`` one JSON object per line
(timestamp in ISO-8601 UTC, level, logger, message, then the context and the event's fields).
Either way the rendered line is redacted last (``redact``), whatever field or traceback a secret
got into.

A request's context (its request id, then its account and key once known) lives in contextvars
(``structlog.contextvars``) and is added to every line logged while the request runs, in any
thread its work moves to (asgiref copies the context there and back). ``Access`` is the line
each request ends with. Nothing here reads the database: the ids come from what the request
already holds (the cached key principal, the session's membership).
"""

import contextvars
import logging
import logging.config
import re
import time
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson
import structlog
from structlog.contextvars import (
    bind_contextvars,
    bound_contextvars,
    clear_contextvars,
    get_contextvars,
    merge_contextvars,
)
from structlog.processors import format_exc_info
from structlog.stdlib import ProcessorFormatter

FORMATS = ("text", "json")

# --- Redaction -----------------------------------------------------------------------------------

# Google-style clients may send the API key as ?key=; access logs print the full path. (Not
# past a backslash: in a JSON line, that may escape the quote that ends the string.)
_SECRET_IN_QUERY = re.compile(r"([?&](?:key|api_key|token)=)[^&\s\"\\]+", re.IGNORECASE)
_SECRET_KEY = re.compile(r"sk-byts-[A-Za-z0-9-]{8,}")


def redact(text: str) -> str:
    """``text`` with ByteSpike keys and key-like query parameters blanked out."""
    return _SECRET_KEY.sub("sk-byts-[redacted]", _SECRET_IN_QUERY.sub(r"\1[redacted]", text))


# --- Rendering -----------------------------------------------------------------------------------


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _shape(_, __, event: dict) -> dict:
    """The line's fields in reading order: when, how bad, who said it, what, then the rest.

    The time is the record's (when it was logged, not when it was formatted). A line our code
    logs through structlog also names its event (``event``: ``request``, ``task.transition``,
    ``callback.attempt``); a plain logging call's line has a message only.
    """
    record: logging.LogRecord = event.pop("_record")
    native = event.pop("_from_structlog")
    message = event.pop("event", "")
    line = {
        "timestamp": _timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": message,
    }
    if native:
        line["event"] = message
    if "request_id" in event:
        line["request_id"] = event.pop("request_id")
    event.pop("stack_info", None)
    exception = event.pop("exception", None)
    line.update(event)
    if exception:
        line["exception"] = exception
    return line


def _render_json(_, __, line: dict) -> str:
    return redact(orjson.dumps(line, default=str).decode())


def _text_value(value) -> str:
    if isinstance(value, str):
        if value and not any(ch in value for ch in ' "=\n'):
            return value
        return orjson.dumps(value).decode()
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    return str(value)


def _render_text(_, __, line: dict) -> str:
    head = f"{line.pop('timestamp')} {line.pop('level').upper()} {line.pop('logger')}"
    text = f"{head} {line.pop('message')}"
    line.pop("event", None)
    exception = line.pop("exception", None)
    if line:
        text += " " + " ".join(f"{name}={_text_value(value)}" for name, value in line.items())
    if exception:
        text += "\n" + exception
    return redact(text)


def formatter(fmt: str = "text") -> ProcessorFormatter:
    """The formatter of every handler (``LOGGING``'s ``()`` factory): ``text`` or ``json``."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown log format {fmt!r}: use one of {', '.join(FORMATS)}.")
    return ProcessorFormatter(
        # Lines from plain logging calls (Django, uvicorn, Celery, ours) get the context too.
        foreign_pre_chain=[merge_contextvars],
        processors=[format_exc_info, _shape, _render_json if fmt == "json" else _render_text],
    )


class TracebacksOnly(logging.Filter):
    """For ``django.request``: its one-line summaries of 4xx and 5xx answers ("Not Found:
    /path"), logged after the request's context has ended, say less than the access line every
    request has; the errors it logs with a traceback (an exception in a view) stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is not None


def logging_config(fmt: str, level: str) -> dict:
    """``LOGGING`` for the settings: one handler on stderr, in ``fmt``, at ``level``.

    In json mode uvicorn's own loggers (its startup lines, its access log when on) are sent to
    the same handler, so a process writes nothing but JSON lines; in text mode uvicorn keeps
    its own format.
    """
    if fmt not in FORMATS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"BYTESPIKE_LOG_FORMAT is {fmt!r}: it must be one of {', '.join(FORMATS)}."
        )
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"bytespike": {"()": "core.logs.formatter", "fmt": fmt}},
        "filters": {
            "redact": {"()": "console.logfilters.RedactSecrets"},
            "tracebacks_only": {"()": "core.logs.TracebacksOnly"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "bytespike",
                "filters": ["redact"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.request": {"filters": ["tracebacks_only"]},
            "django.db.backends": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},  # one INFO line per upstream request is noise
        },
    }
    if fmt == "json":
        for name in ("uvicorn", "uvicorn.access"):
            config["loggers"][name] = {"handlers": ["console"], "propagate": False}
    return config


def configure(logging_settings: dict) -> None:
    """Django's ``LOGGING_CONFIG``: structlog, then the standard library's ``dictConfig``.

    structlog's own loggers (``get_logger``) hand their events to the standard library, whose
    handler renders them with the formatter above, like any other line.
    """
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            merge_contextvars,
            ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(logging_settings)
    logging.captureWarnings(True)  # a warning is a line in the same format (py.warnings)
    # No line shows where in the source it was logged, nor its thread, process or asyncio task:
    # not looking them up saves a fifth of an access line (the Logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = False
    logging.logMultiprocessing = logging.logAsyncioTasks = False


get_logger = structlog.stdlib.get_logger


# --- A request's context -------------------------------------------------------------------------


def bind(**fields) -> None:
    """Add ``fields`` to every line logged in this context from now on (the request's)."""
    bind_contextvars(**fields)


def bound(**fields):
    """Add ``fields`` to every line logged inside the ``with`` block; restored on leaving it."""
    return bound_contextvars(**fields)


def clear() -> None:
    """Forget every field bound in this context (a worker between jobs)."""
    clear_contextvars()


def context() -> dict:
    """The fields bound in this context (``request_id``, ``account_id``, ...)."""
    return get_contextvars()


def fresh_context() -> contextvars.Context:
    """A new, empty context but for this one's log fields."""
    fresh = contextvars.Context()
    fresh.run(bind_contextvars, **get_contextvars())
    return fresh


def request_id() -> str:
    """The current request's id, or ``""`` outside any request."""
    return get_contextvars().get("request_id", "")


# --- The access line -----------------------------------------------------------------------------

_access_logger = logging.getLogger("bytespike.access")
# The access line's fields in reading order (those a request has; docs/operations.md#logs).
ACCESS_FIELDS = (
    "request_id", "surface", "method", "route", "protocol", "status", "error", "account_id",
    "key_id", "user_id", "model", "upstream", "stream", "stream_end", "duration_ms",
    "first_byte_ms", "upstream_ms", "credits_micro",
)  # fmt: skip
_access: contextvars.ContextVar["Access | None"] = contextvars.ContextVar(
    "bytespike_access", default=None
)


class Access:
    """A request's access line, as a context: the request's id is bound to its log context on
    entering it, and on leaving it the ``request`` line is logged (unless the answer is a stream
    that logs it at its end: ``defer``) and the context is cleared.

    The line carries what was gathered on the way: ``note`` adds fields (credits, error code),
    and the data plane's metrics call (``call``) gives the model, upstream and status.
    """

    __slots__ = (
        "_token", "call", "deferred", "fields", "first_byte_ms", "level", "logged", "saved",
        "started",
    )  # fmt: skip

    def __init__(self, request_id: str, **fields):
        self.fields = {"request_id": request_id, **fields}
        self.call = None
        self.deferred = False
        self.first_byte_ms: float | None = None
        self.level: int | None = None  # by the status unless set: 5xx warning, else info
        self.logged = False
        self.saved: dict = {}

    def __enter__(self) -> "Access":
        self.started = time.perf_counter()
        # (Nothing to clear first: each request runs in a context of its own, and every Access
        # clears the context it leaves.)
        bind_contextvars(request_id=self.fields["request_id"])
        self._token = _access.set(self)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        _access.reset(self._token)
        try:
            if kind is not None:
                # An exception becomes Django's 500; a request cancelled because its client
                # left is a 499 (nginx's "client closed request").
                failed = issubclass(kind, Exception)
                self.fields["status"] = 500 if failed else 499
                self.fields.setdefault("error", kind.__name__ if failed else "client_left")
            if self.deferred:
                self.first_byte_ms = self._elapsed_ms()
                self.saved = get_contextvars()
            else:
                self.log()
        finally:
            clear_contextvars()

    def note(self, **fields) -> None:
        self.fields.update(fields)

    def _elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 2)

    def log(self, **fields) -> None:
        """Log the line now (a deferred stream calls this at its end, from any thread); once."""
        if self.logged:
            return
        self.logged = True
        found = {**(self.saved or get_contextvars()), **self.fields, **fields}
        call = self.call
        if call is not None:
            found.setdefault("status", call.status)
            found["model"] = call.model
            found["upstream"] = call.upstream
            if call.upstream_seconds:
                found["upstream_ms"] = round(call.upstream_seconds * 1000, 2)
        found["duration_ms"] = self._elapsed_ms()
        if self.first_byte_ms is not None:
            found["first_byte_ms"] = self.first_byte_ms
        line = {name: found.pop(name) for name in ACCESS_FIELDS if name in found}
        line.update(found)
        level = self.level
        if level is None:
            level = logging.WARNING if line.get("status", 0) >= 500 else logging.INFO
        if _access_logger.isEnabledFor(level):
            # Straight to the standard library's logger, as structlog's own loggers hand it
            # their events: the line holds its context already, and the hot path saves their
            # processing.
            name = logging.getLevelName(level).lower()
            args, kwargs = ProcessorFormatter.wrap_for_formatter(
                _access_logger, name, {"event": "request", **line}
            )
            _access_logger.log(level, *args, **kwargs)

    @contextmanager
    def resumed(self):
        """The request's context again, while a deferred stream is sent or closed. (Set and
        cleared, not reset by token: a stream's generator may be closed from another task.)"""
        _access.set(self)
        bind_contextvars(**self.saved)
        try:
            yield self
        finally:
            _access.set(None)
            clear_contextvars()


def access() -> Access | None:
    """The current request's access line, if any."""
    return _access.get()


def note(**fields) -> None:
    """Add ``fields`` to the current request's access line (nothing outside a request)."""
    line = _access.get()
    if line is not None:
        line.fields.update(fields)


def defer() -> Access | None:
    """The current request answers with a stream that logs its access line when it ends
    (``Access.log``): the line is not logged when the view returns."""
    line = _access.get()
    if line is not None:
        line.deferred = True
    return line
