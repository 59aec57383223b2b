"""OpenTelemetry traces, on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set; nothing at all otherwise.

``setup()`` runs once per process (web: console/asgi.py, workers and beat: console/celery.py):
it installs a tracer provider that exports in batches over OTLP/HTTP, configured by the standard
``OTEL_*`` variables (service name, headers, sampler), and instruments the libraries: every
request (the ASGI application, data plane and console alike), the upstream HTTP clients (httpx,
aiohttp), PostgreSQL statements (psycopg) and Celery jobs, with the trace context carried from
the request that enqueues a job into the worker that runs it.

ByteSpike's own steps are spans made with ``span(name, **attributes)``: key authentication,
admission, each upstream attempt, the wait for settlement, and a task's steps. Unset, ``span``
returns one shared no-op context: a call pays a global lookup per step, nothing more.
Attributes name models, upstream channels, request and task ids and public key ids; never a
secret or a prompt.
"""

import os
from contextlib import nullcontext

_NO_SPAN = nullcontext()
_tracer = None
_provider = None
_INSTRUMENTORS: list = []


def configured() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    return _tracer is not None


def setup(exporter=None) -> bool:
    """Start tracing in this process (once): to the OTLP endpoint the environment names, or to
    ``exporter`` (tests: an in-memory exporter, spans exported as they end). False when there
    is nowhere to send spans."""
    global _tracer, _provider
    if _tracer is not None:
        return True
    if exporter is None and not configured():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "bytespike")})
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)  # for any other library that traces
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _instrument(provider)
    _provider, _tracer = provider, provider.get_tracer("bytespike")
    return True


def _instrument(provider) -> None:
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    for instrumentor in (
        HTTPXClientInstrumentor(),
        AioHttpClientInstrumentor(),
        PsycopgInstrumentor(),
        CeleryInstrumentor(),
    ):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
            _INSTRUMENTORS.append(instrumentor)


def shutdown() -> None:
    """Stop tracing in this process: flush what is buffered, remove the instrumentations
    (tests; a process that ends flushes at exit by itself)."""
    global _tracer, _provider
    for instrumentor in _INSTRUMENTORS:
        instrumentor.uninstrument()
    _INSTRUMENTORS.clear()
    if _provider is not None:
        _provider.force_flush()
    _tracer = _provider = None


def wrap_asgi(application):
    """The ASGI application, with a span per HTTP request when tracing is on (health checks and
    metric scrapes left out)."""
    if _tracer is None:
        return application
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        application,
        excluded_urls="healthz,readyz,metrics",
        exclude_spans=["receive", "send"],
        tracer_provider=_provider,
    )


def span(name: str, **attributes):
    """A span around a step of ByteSpike's own (``with span("admission"): ...``); a shared no-op
    when tracing is off."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, attributes=attributes)


def annotate(**attributes) -> None:
    """Add attributes to the current span (the request's), when tracing is on."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(attributes)
