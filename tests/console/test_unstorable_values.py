"""A value the database refuses is the request's fault, not an outage.

PostgreSQL takes no NUL character in text; its ``DataError`` is a ``DatabaseError``, which the
outage handling used to take for the database being down ("briefly unavailable", 503). The
console answers a 400 page that says the value is not valid, the management API a 400 in its
envelope; a real outage stays a 503.
"""

import pytest
from django.conf import settings
from django.db import DataError, OperationalError
from django.test import Client
from django.urls import reverse

from keys.services import management_key_issue
from tests.factories import issue_key

POSTGRESQL = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
NUL_REFUSED = "PostgreSQL text fields cannot contain NUL (0x00) bytes"


def console_client(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_a_value_the_database_refuses_is_a_400_page_not_the_outage_page(world, monkeypatch):
    def refuse(request):
        raise DataError(NUL_REFUSED)

    monkeypatch.setattr("generation.task_pages._list_context", refuse)
    client = console_client(world.owner)
    response = client.get(reverse("generation:tasks"), {"model": "x"})
    assert response.status_code == 400
    assert "Retry-After" not in response and "Back in a moment" not in response.text
    assert "holds a character the database cannot take" in response.text
    assert f'href="{reverse("generation:tasks")}"' in response.text  # the page without filters

    def down(request):
        raise OperationalError("connection refused")

    monkeypatch.setattr("generation.task_pages._list_context", down)
    outage = client.get(reverse("generation:tasks"))
    assert outage.status_code == 503 and outage["Retry-After"] == "5"


@pytest.mark.django_db
def test_the_management_api_answers_a_refused_value_as_400_in_its_envelope(world, monkeypatch):
    _, secret = management_key_issue(account=world.account, actor=world.owner, name="CI")

    def refuse(account):
        raise DataError(NUL_REFUSED)

    monkeypatch.setattr("keys.api.groups_available", refuse)
    response = Client().get("/api/v1/groups/available", headers={"x-api-key": secret})
    assert response.status_code == 400 and "Retry-After" not in response
    assert response.json()["error"]["code"] == "invalid_param"


NUL = "x\x00"


@pytest.mark.skipif(not POSTGRESQL, reason="needs DATABASE_URL (PostgreSQL): SQLite stores NUL")
@pytest.mark.django_db(transaction=True)  # autocommit, as in production: the error aborts no test
def test_a_nul_in_a_console_filter_or_id_is_a_400_on_postgresql(world):
    from catalogue.demo import seed_catalogue

    issue_key(world.account, seed_catalogue()["default"], actor=world.owner)
    client = console_client(world.owner)
    pages = [
        (reverse("billing:usage"), {"model": NUL}),
        (reverse("billing:usage"), {"api_key_id": NUL}),
        (reverse("billing:usage-export"), {"model": NUL}),
        (reverse("generation:tasks"), {"model": NUL}),
        (reverse("generation:tasks"), {"key": NUL}),
        (reverse("generation:task-detail", args=[f"task_{NUL}"]), None),
        (reverse("keys:key-detail", args=[f"key_{NUL}"]), None),
    ]
    for url, params in pages:
        response = client.get(url, params)
        assert response.status_code == 400, (url, params, response.status_code)
        assert "holds a character the database cannot take" in response.text
    _, secret = management_key_issue(account=world.account, actor=world.owner, name="CI")
    api = Client().get(f"/api/v1/keys/key_{NUL}", headers={"x-api-key": secret})
    assert api.status_code == 400 and api.json()["error"]["code"] == "invalid_param"
