"""The web processes run on uvloop and httptools: uvicorn picks both on its own ("auto", as
`manage.py serve` and the README's production command leave it) when they are installed, which
`uvicorn[standard]` in pyproject.toml makes sure of."""

import uvloop
from uvicorn.loops.auto import auto_loop_factory
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def test_uvicorn_runs_on_uvloop_and_httptools():
    assert AutoHTTPProtocol is HttpToolsProtocol
    loop = auto_loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
