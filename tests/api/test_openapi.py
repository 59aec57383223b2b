"""The OpenAPI 3 document at /api/v1/openapi.json and the Swagger UI page at /api/v1/docs, which
works under the site's strict Content Security Policy (tests/api/test_docs_browser.py checks it
in Chromium)."""

import re

import pytest

from keys.models import LIMIT_FIELDS


@pytest.fixture
def schema(client, db) -> dict:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_document_lists_every_endpoint(schema):
    assert schema["openapi"].startswith("3.")
    operations = {
        (method.upper(), path) for path, item in schema["paths"].items() for method in item
    }
    assert operations == {
        ("GET", "/api/v1/groups/available"),
        ("GET", "/api/v1/projects"),
        ("POST", "/api/v1/projects"),
        ("GET", "/api/v1/projects/{project_id}"),
        ("PATCH", "/api/v1/projects/{project_id}"),
        ("DELETE", "/api/v1/projects/{project_id}"),
        ("GET", "/api/v1/projects/{project_id}/members"),
        ("POST", "/api/v1/projects/{project_id}/members"),
        ("DELETE", "/api/v1/projects/{project_id}/members/{member_id}"),
        ("GET", "/api/v1/keys"),
        ("POST", "/api/v1/keys"),
        ("GET", "/api/v1/keys/{key_id}"),
        ("PATCH", "/api/v1/keys/{key_id}"),
        ("DELETE", "/api/v1/keys/{key_id}"),
        ("POST", "/api/v1/keys/{key_id}/roll"),
        ("POST", "/api/v1/keys/{key_id}/revoke"),
        ("GET", "/api/v1/usage"),
        ("GET", "/api/v1/usage/records"),
        ("GET", "/api/v1/billing/transactions"),
        ("GET", "/api/v1/account"),
        ("GET", "/api/v1/budgets"),
        ("PUT", "/api/v1/budgets/account"),
        ("PUT", "/api/v1/budgets/members/{member_id}"),
        ("DELETE", "/api/v1/budgets/members/{member_id}"),
        ("GET", "/api/v1/alert-channels"),
        ("POST", "/api/v1/alert-channels"),
        ("GET", "/api/v1/alert-channels/{channel_id}"),
        ("PATCH", "/api/v1/alert-channels/{channel_id}"),
        ("DELETE", "/api/v1/alert-channels/{channel_id}"),
        ("POST", "/api/v1/alert-channels/{channel_id}/test"),
        ("GET", "/api/v1/alert-rules"),
        ("POST", "/api/v1/alert-rules"),
        ("GET", "/api/v1/alert-rules/{rule_id}"),
        ("PATCH", "/api/v1/alert-rules/{rule_id}"),
        ("DELETE", "/api/v1/alert-rules/{rule_id}"),
        ("GET", "/api/v1/alerts"),
    }


def test_every_operation_needs_the_management_key_header(schema):
    schemes = schema["components"]["securitySchemes"]
    assert list(schemes.values()) == [{"type": "apiKey", "in": "header", "name": "x-api-key"}]
    for item in schema["paths"].values():
        for operation in item.values():
            assert operation["security"] == [{name: []} for name in schemes]


def test_errors_are_documented_in_the_envelope(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"] == "#/components/schemas/ErrorDetail"
    detail = schema["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"message", "type", "param", "code"}
    keys = schema["paths"]["/api/v1/keys/{key_id}"]
    for operation in keys.values():
        assert {"400", "401", "404"} <= set(operation["responses"])
    assert "404" not in schema["paths"]["/api/v1/keys"]["get"]["responses"]


def test_create_documents_its_body_and_the_one_time_secret(schema):
    create = schema["paths"]["/api/v1/keys"]["post"]
    assert set(create["responses"]) >= {"201", "400", "401"}
    body = schema["components"]["schemas"]["KeyCreateIn"]
    assert body["required"] == ["name", "group_id"]
    assert body["additionalProperties"] is False
    assert "key" in schema["components"]["schemas"]["KeyWithSecretOut"]["properties"]
    assert "key" not in schema["components"]["schemas"]["KeyOut"]["properties"]
    # The PATCH body does not advertise a group it will refuse.
    assert "group_id" not in schema["components"]["schemas"]["KeyUpdateIn"]["properties"]


def test_usage_report_documents_its_csv_form_and_the_404_for_a_foreign_key(schema):
    report = schema["paths"]["/api/v1/usage"]["get"]
    assert set(report["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    parameters = {parameter["name"] for parameter in report["parameters"]}
    assert parameters == {
        "api_key_id",
        "project_id",
        "member",
        "model",
        "family",
        "tag",
        "since",
        "until",
        "group_by",
        "format",
    }
    records = schema["paths"]["/api/v1/usage/records"]["get"]
    assert {"page", "page_size", "api_key_id", "project_id", "member"} <= {
        p["name"] for p in records["parameters"]
    }
    for operation in (report, records):
        assert {"400", "401", "404"} <= set(operation["responses"])


def test_docs_page_loads_only_our_own_static_files(client, db):
    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "/static/ninja/swagger-ui.css" in html
    assert "cdn" not in html.lower()
    # The one inline <script> is a JSON data block, which a CSP does not treat as a script.
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)
    assert [attributes.strip() for attributes in inline] == [
        'type="application/json" id="swagger-settings"'
    ]
    assert "style=" not in html and "<style" not in html


def test_docs_page_keeps_the_strict_content_security_policy(client, db):
    csp = client.get("/api/v1/docs").headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert "'unsafe-inline'" not in directives["style-src"]


@pytest.mark.parametrize("body", ["KeyCreateIn", "KeyUpdateIn"])
def test_key_bodies_document_every_limit_as_optional_and_nullable(schema, body):
    properties = schema["components"]["schemas"][body]["properties"]
    for field in LIMIT_FIELDS:
        prop = properties[field]
        assert {"type": "null"} in prop["anyOf"], field
        assert "no limit" in prop["description"] and '"paused"' in prop["description"], field
        assert field not in schema["components"]["schemas"][body].get("required", [])
    for field in ("rpm", "tpm", "max_concurrent"):
        assert {"type": "integer", "minimum": 1} in properties[field]["anyOf"], field
    assert "minute" in properties["rpm"]["description"]
    assert "input and output" in properties["tpm"]["description"]
    assert "at once" in properties["max_concurrent"]["description"]


def test_key_answers_document_limits_as_null_for_none_and_the_paused_status(schema):
    key_out = schema["components"]["schemas"]["KeyOut"]
    for field in LIMIT_FIELDS:
        assert field in key_out["required"]
        assert {"type": "null"} in key_out["properties"][field]["anyOf"], field
        assert "null: no limit" in key_out["properties"][field]["description"], field
    assert key_out["properties"]["status"]["enum"] == ["active", "paused", "revoked", "expired"]


def test_patch_documents_pausing_and_the_409_for_a_revoked_key(schema):
    status = schema["components"]["schemas"]["KeyUpdateIn"]["properties"]["status"]
    assert status["enum"] == ["active", "paused"]
    assert "revoke" in status["description"]
    assert "status" not in schema["components"]["schemas"]["KeyCreateIn"]["properties"]
    patch = schema["paths"]["/api/v1/keys/{key_id}"]["patch"]
    assert "409" in patch["responses"]
    assert "pause" in patch["description"]
