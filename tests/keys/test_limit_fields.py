"""The key form's limits in the console: quota and the credit caps, requests per minute, tokens
per minute and calls at once. Empty is no limit; 0 is refused with a pointer to Pause."""

import re

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from keys.models import LIMIT_FIELDS, ApiKey
from tests.factories import AIModelFactory, RoutingGroupFactory, issue_key

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
COUNTS = ["rpm", "tpm", "max_concurrent"]
PAUSE_HINT = "A limit of 0 would stop the key."


@pytest.fixture
def group(db):
    group = RoutingGroupFactory(slug="default", name="Default")
    AIModelFactory(slug="text-small", groups=[group])
    return group


def create(client, group, **data):
    payload = {"name": "Backend", "group": group.pk, **data}
    return client.post(reverse("keys:key-create"), payload, **HTMX)


def edit(client, key, **data):
    """The edit form as the page renders it for ``key``, with ``data`` typed over it."""
    form = {
        "name": key.name,
        "expires_on": "",
        "ip_allowlist": "",
        "ip_denylist": "",
        **{field: "" for field in LIMIT_FIELDS},
        **data,
    }
    return client.post(reverse("keys:key-update", args=[key.public_id]), form, **HTMX)


# --- The form --------------------------------------------------------------------------------


def test_create_and_edit_forms_label_and_explain_the_new_limits(world, client_for, group):
    key, _ = issue_key(world.account, group, actor=world.owner)
    client = client_for(world.owner)
    pages = [
        client.get(reverse("keys:key-create"), **HTMX).text,
        client.get(reverse("keys:key-detail", args=[key.public_id])).text,
    ]
    for text in pages:
        assert "Request rate" in text
        assert "Requests per minute" in text
        assert "Tokens per minute (input + output)" in text
        assert "Calls at once" in text
        assert "Input and output tokens together, in any minute." in text
        for field in COUNTS:
            assert f'name="{field}"' in text and f'id="id_{field}_helptext"' in text


def test_create_with_request_limits(world, client_for, group):
    response = create(client_for(world.owner), group, rpm="60", tpm="100,000", max_concurrent="4")

    assert response.status_code == 200
    key = ApiKey.objects.get(name="Backend")
    assert (key.rpm, key.tpm, key.max_concurrent) == (60, 100_000, 4)


def test_create_with_every_limit_blank_has_no_limits(world, client_for, group):
    response = create(client_for(world.owner), group, **{field: "" for field in LIMIT_FIELDS})

    assert response.status_code == 200
    key = ApiKey.objects.get(name="Backend")
    assert all(getattr(key, field) is None for field in LIMIT_FIELDS)


@pytest.mark.parametrize(
    ("field", "zero"),
    [(field, "0") for field in LIMIT_FIELDS] + [("quota", "0.00"), ("rate_limit_1d", "0,000")],
)
def test_create_refuses_zero_and_points_to_pause(world, client_for, group, field, zero):
    response = create(client_for(world.owner), group, **{field: zero})

    assert response.status_code == 422
    assert PAUSE_HINT in response.text and "use Pause on its page" in response.text
    assert '<details class="disclosure" open>' in response.text
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "1 or more"),
        ("1.5", "whole number"),
        ("lots", "whole number"),
        (str(2**31), "at most 2,147,483,647"),
    ],
)
@pytest.mark.parametrize("field", ["rpm", "max_concurrent"])
def test_create_refuses_counts_that_are_no_positive_whole_number(
    world, client_for, group, field, value, message
):
    response = create(client_for(world.owner), group, **{field: value})

    assert response.status_code == 422 and message in response.text
    assert not ApiKey.objects.exists()


# --- Edit ------------------------------------------------------------------------------------


def test_edit_sets_and_clears_request_limits(world, client_for, group):
    key, _ = issue_key(world.account, group, actor=world.owner, quota=5_000_000)
    client = client_for(world.owner)

    response = edit(client, key, quota="5", rpm="120", tpm="1 000 000", max_concurrent="8")

    assert response.status_code == 200 and "Saved." in response.text
    key.refresh_from_db()
    assert (key.rpm, key.tpm, key.max_concurrent) == (120, 1_000_000, 8)
    event = AuditEvent.objects.get(action="api_key.update")
    assert event.details["fields"] == ["max_concurrent", "rpm", "tpm"]
    assert event.details["before"] == {"max_concurrent": None, "rpm": None, "tpm": None}

    cleared = edit(client, key, quota="", rpm="", tpm="1000000", max_concurrent="8")

    assert cleared.status_code == 200
    key.refresh_from_db()
    assert (key.quota, key.rpm, key.tpm, key.max_concurrent) == (None, None, 1_000_000, 8)


def test_the_edit_form_shows_the_current_limits_and_blank_for_none(world, client_for, group):
    key, _ = issue_key(world.account, group, actor=world.owner, rate_limit_1d=2_500_000, rpm=30)

    text = client_for(world.owner).get(reverse("keys:key-detail", args=[key.public_id])).text

    form = text.split('id="key-limits"')[1]
    assert 'name="rate_limit_1d" value="2.5"' in form
    assert 'name="rpm" value="30"' in form
    assert 'name="quota" value=' not in form and 'name="tpm" value=' not in form


@pytest.mark.parametrize("field", LIMIT_FIELDS)
def test_edit_refuses_zero_and_keeps_the_limit(world, client_for, group, field):
    key, _ = issue_key(world.account, group, actor=world.owner, **{field: 7})

    response = edit(client_for(world.owner), key, **{field: "0"})

    assert response.status_code == 422 and PAUSE_HINT in response.text
    assert response.text.lstrip().startswith('<section class="card" id="key-limits"')
    key.refresh_from_db()
    assert getattr(key, field) == 7


# --- Where the limits show -------------------------------------------------------------------


def test_the_key_page_and_list_show_request_limits(world, client_for, group):
    limited, _ = issue_key(
        world.account, group, name="Limited", actor=world.owner, rpm=60, tpm=100_000
    )
    free, _ = issue_key(world.account, group, name="Free", actor=world.owner)
    client = client_for(world.viewer)

    page = client.get(reverse("keys:key-detail", args=[limited.public_id])).text
    facts = page.split('id="key-facts"')[1].split("</section>")[0]
    assert "<dt>Requests per minute</dt><dd>60</dd>" in facts
    assert "<dt>Tokens per minute</dt><dd>100,000</dd>" in facts
    assert "<dt>Calls at once</dt><dd>Unlimited</dd>" in facts

    listing = client.get(reverse("keys:keys")).text
    assert "Rate limits" in listing
    limited_row = listing.split(f'id="key-row-{limited.public_id}"')[1].split("</tr>")[0]
    assert "60 <span" in limited_row and "rpm" in limited_row and "100,000" in limited_row
    assert "at once" not in limited_row
    free_row = listing.split(f'id="key-row-{free.public_id}"')[1].split("</tr>")[0]
    assert "rpm" not in free_row and free_row.count("Unlimited") == 2  # quota and rate


def field_group(text: str, field: str) -> str:
    """The field's own group in the form: its label, input, help and errors."""
    chunks = re.split(r'(?=<div class="field[ "])', text)
    (group,) = [chunk for chunk in chunks if f'name="{field}"' in chunk]
    return group


@pytest.mark.parametrize("field", LIMIT_FIELDS)
def test_zero_is_refused_next_to_its_own_field_on_create_and_edit_and_stays_zero(
    world, client_for, group, field
):
    client = client_for(world.owner)
    key, _ = issue_key(world.account, group, name="Existing", actor=world.owner)

    for response in (create(client, group, **{field: "0"}), edit(client, key, **{field: "0"})):
        assert response.status_code == 422 and "Saved." not in response.text
        own = field_group(response.text, field)
        assert 'class="field-errors"' in own and PAUSE_HINT in own
        assert f'id="id_{field}_error"' in own and 'aria-invalid="true"' in own
        assert 'value="0"' in own  # what was typed stays, never shown back as "Unlimited"
        others = [f for f in LIMIT_FIELDS if f != field]
        assert all(PAUSE_HINT not in field_group(response.text, f) for f in others)
    key.refresh_from_db()
    assert getattr(key, field) is None and ApiKey.objects.count() == 1
