"""No key secret is stored or logged in plaintext: issue, roll and use keys every way there is,
then search every table and everything logged for the secrets."""

import logging

import pytest
from django.db import connection

from catalogue.models import Channel
from keys import services as keys
from tests.factories import AIModelFactory, RoutingGroupFactory, issue_key

pytestmark = pytest.mark.django_db


def every_stored_value() -> str:
    """Every column of every row of every table, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_key_secrets_are_never_stored_or_logged(
    world, client, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    group = RoutingGroupFactory(slug="default")
    AIModelFactory(slug="gpt-4.1", groups=[group])
    secrets = []

    key, secret = issue_key(world.account, group, actor=world.owner)
    secrets.append(secret)
    with django_capture_on_commit_callbacks(execute=True):
        secrets.append(keys.api_key_roll(key=key, actor=world.owner))
    _, management_secret = keys.management_key_issue(
        account=world.account, actor=world.owner, name="ci"
    )
    secrets.append(management_secret)
    # Use them, successfully and not: authentication logs must not echo what was presented.
    client.get("/v1/models", headers={"x-api-key": secrets[1]})
    client.get("/v1/models", headers={"x-api-key": secrets[0]})
    client.get("/v1/models", headers={"authorization": f"Bearer {management_secret}"})
    client.get(f"/v1/models?key={secrets[1]}")

    channel = Channel.objects.create(slug="live", name="Live", kind="openai")
    upstream_secret = "sk-proj-UPSTREAMsecretVALUE0123456789"
    channel.set_secret(upstream_secret)
    channel.save()
    secrets.append(upstream_secret)

    stored = every_stored_value()
    logged = "\n".join(record.getMessage() for record in caplog.records) + caplog.text
    for secret in secrets:
        body = secret.split("-")[-1]  # the random part, whatever prefix surrounds it
        assert body not in stored, "a secret is stored in plaintext"
        assert body not in logged, "a secret was logged"
