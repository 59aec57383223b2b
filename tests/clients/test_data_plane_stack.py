"""The data plane runs on its own middleware-free handler; the console on the full stack."""

import httpx

from console.asgi import DATA_PLANE_PREFIXES, DataPlaneHandler, data_plane


def test_the_data_plane_handler_has_no_middleware():
    handler = DataPlaneHandler()
    handler.load_middleware(is_async=True)
    assert handler._view_middleware == [] and handler._exception_middleware == []
    assert data_plane is not None and DATA_PLANE_PREFIXES == ("/v1/", "/v1beta/")


def test_only_console_answers_pass_through_console_middleware(gateway, demo):
    api = httpx.get(f"{gateway}/v1/models", headers={"x-api-key": demo["keys"]["default"]})
    assert api.status_code == 200
    # Console middleware would add these; the data plane answers without them.
    assert "content-security-policy" not in api.headers
    assert "x-frame-options" not in api.headers
    assert "set-cookie" not in api.headers
    console = httpx.get(f"{gateway}/auth/login/")
    assert "content-security-policy" in console.headers
    assert console.headers["x-frame-options"] == "DENY"
