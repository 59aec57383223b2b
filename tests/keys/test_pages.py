"""API key pages: list, create (secret once), detail, edit, roll, revoke, delete; management keys
and the audit log. Every page for each role and for an outsider."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, GroupGrant, Role
from catalogue.models import AIModel, Channel, Deployment, RoutingGroup
from keys.models import ApiKey, ManagementKey
from keys.services import api_key_issue, key_digest, management_key_issue

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


# --- Catalogue helpers ---------------------------------------------------------------------


def make_group(slug="claude-default", *, exclusive=False, multiplier="1.000", **fields):
    fields.setdefault("name", slug.replace("-", " ").title())
    fields.setdefault("description", f"The {slug} group.")
    return RoutingGroup.objects.create(
        slug=slug, exclusive=exclusive, rate_multiplier=multiplier, **fields
    )


def make_model(slug, *, groups, family="text", **fields):
    channel, _ = Channel.objects.get_or_create(
        slug="sandbox-test", defaults={"name": "Sandbox", "kind": "openai"}
    )
    fields.setdefault("display_name", slug.title())
    model = AIModel.objects.create(slug=slug, family=family, **fields)
    Deployment.objects.create(model=model, channel=channel, upstream_model=slug)
    model.groups.set(groups)
    return model


@pytest.fixture
def group(db):
    group = make_group()
    make_model(
        "claude-sonnet",
        groups=[group],
        display_name="Claude Sonnet",
        input_price=3_000_000,
        output_price=15_000_000,
    )
    return group


def issue(world, group, *, by=None, name="Production", **options):
    return api_key_issue(
        account=world.account, group=group, name=name, actor=by or world.owner, **options
    )


def create(client, chosen_group, headers=HTMX, **data):
    payload = {"name": "Backend", "group": chosen_group.pk, **data}
    return client.post(reverse("keys:key-create"), payload, **headers)


def key_url(name, key):
    return reverse(f"keys:{name}", args=[key.public_id])


# --- The list --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_every_member_reads_the_keys_list(world, client_for, group, role):
    key, _ = issue(world, group, name="Shared key", quota=12_500_000)
    response = client_for(world.member(role)).get(reverse("keys:keys"))
    assert response.status_code == 200
    text = response.text
    assert "Shared key" in text and key_url("key-detail", key) in text
    assert key.masked in text and "Claude Default" in text
    assert "owner@acme.test" in text and "Never" in text and "12.50" in text
    assert 'data-status="active"' in text
    can_create = role not in (Role.VIEWER, Role.FINANCE)
    assert ('data-dialog-open="key-create-dialog"' in text) == can_create
    assert ('id="key-create-dialog"' in text) == can_create
    assert (key_url("key-revoke", key) in text) == (role in (Role.OWNER, Role.ADMIN))
    assert ("Management keys" in text) == (role in (Role.OWNER, Role.ADMIN))


def test_list_shows_unlimited_quota_api_creator_and_last_use(world, client_for, group):
    via, _ = management_key_issue(account=world.account, actor=world.owner, name="CI")
    key, _ = api_key_issue(account=world.account, group=group, name="From CI", via_key=via)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - timedelta(hours=2))
    text = client_for(world.admin).get(reverse("keys:keys")).text
    row = text.split(f'id="key-row-{key.public_id}"')[1].split("</tr>")[0]
    assert ">API<" in row and "Unlimited" in row and "2\xa0hours ago" in row


def test_the_list_is_empty_for_another_account(world, client_for, group):
    issue(world, group, name="Acme secret project")
    text = client_for(world.outsider).get(reverse("keys:keys")).text
    assert "Acme secret project" not in text and "No API keys yet" in text


def test_deleted_keys_are_not_listed(world, client_for, group):
    key, _ = issue(world, group, name="Gone")
    ApiKey.objects.filter(pk=key.pk).update(deleted_at=timezone.now())
    assert "Gone" not in client_for(world.owner).get(reverse("keys:keys")).text


def test_developer_can_revoke_only_their_own_keys_from_the_list(world, client_for, group):
    own, _ = issue(world, group, by=world.developer, name="Mine")
    theirs, _ = issue(world, group, by=world.admin, name="Theirs")
    text = client_for(world.developer).get(reverse("keys:keys")).text
    assert key_url("key-revoke", own) in text
    assert key_url("key-revoke", theirs) not in text
    assert "Theirs" in text


def test_key_pages_need_login(db, client, group):
    for url in (reverse("keys:keys"), reverse("keys:groups"), reverse("accounts:audit")):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("account_login"))


# --- Create ----------------------------------------------------------------------------------


def test_create_shows_the_secret_once_and_adds_the_row(world, client_for, group):
    client = client_for(world.developer)
    response = create(client, group, name="Backend")
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    key = ApiKey.objects.get(account=world.account, name="Backend")
    secret = response.text.split('id="new-key-secret"')[1].split('value="')[1].split('"')[0]
    assert secret.startswith("sk-byts-") and len(secret) >= 40
    # In the readonly input and the four "Try it" snippets of the dialog only, not in the row.
    assert response.text.count(secret) == 5
    dialog, row = response.text.split("<template>")
    assert dialog.count(secret) == 5 and secret not in row
    assert dialog.count('<pre id="new-key-') == 4
    assert 'data-copy="#new-key-secret"' in response.text
    assert "shown again" in response.text
    # The new row comes out of band, at the top of the table, without the secret.
    assert 'hx-swap-oob="afterbegin:#keys-rows"' in response.text
    assert f'id="key-row-{key.public_id}"' in response.text
    assert "<html" not in response.text
    # The database keeps a digest and a display hint only.
    assert key.digest == key_digest(secret) and secret not in key.digest
    assert key.prefix == secret[:12] and key.last4 == secret[-4:]
    stored = [str(value) for value in ApiKey.objects.filter(pk=key.pk).values().get().values()]
    assert not any(secret in value for value in stored)
    assert not any(secret in str(e.details) + e.target for e in AuditEvent.objects.all())
    assert key.created_by == world.developer
    # No later page shows it.
    for url in (reverse("keys:keys"), key_url("key-detail", key), reverse("accounts:audit")):
        later = client_for(world.owner).get(url)
        assert secret not in later.text and key.masked in later.text


def test_create_with_every_limit(world, client_for, group):
    response = create(
        client_for(world.owner),
        group,
        quota="12.5",
        expires_in_days="30",
        rate_limit_5h="1",
        rate_limit_1d="2.25",
        rate_limit_7d="1,000",
        ip_allowlist="10.0.0.0/8\n203.0.113.7",
        ip_denylist="10.1.0.0/16",
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="Backend")
    assert key.quota == 12_500_000
    assert (key.rate_limit_5h, key.rate_limit_1d, key.rate_limit_7d) == (
        1_000_000,
        2_250_000,
        1_000_000_000,
    )
    assert key.ip_allowlist == ["10.0.0.0/8", "203.0.113.7/32"]
    assert key.ip_denylist == ["10.1.0.0/16"]
    assert abs(key.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert AuditEvent.objects.filter(action="api_key.create", actor=world.owner).exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ip_allowlist": "10.0.0.0/33"}, "is not an IP address or CIDR block"),
        ({"ip_denylist": "not-an-ip"}, "is not an IP address or CIDR block"),
        ({"quota": "-1"}, "cannot be negative"),
        ({"quota": "0.0000001"}, "at most six decimal places"),
        ({"rate_limit_1d": "lots"}, "Enter an amount in credits"),
        ({"name": "x" * 101}, "at most 100 characters"),
        ({"name": "   "}, "This field is required"),
        ({"expires_in_days": "0"}, "greater than or equal to 1"),
        ({"group": ""}, "Choose the group"),
        ({"group": "999999"}, "Choose one of the groups available"),
        ({"group": "abc"}, "Choose one of the groups available"),
    ],
)
def test_invalid_create_answers_422_with_the_error_and_creates_nothing(
    world, client_for, group, data, message
):
    response = create(client_for(world.owner), group, **data)
    assert response.status_code == 422
    assert message in response.text
    assert 'id="key-create"' in response.text and "sk-byts-" not in response.text
    assert not ApiKey.objects.exists()


def test_an_exclusive_group_needs_a_grant(world, client_for, group):
    exclusive = make_group("enterprise", exclusive=True, name="Enterprise")
    client = client_for(world.owner)
    page = client.get(reverse("keys:keys")).text
    assert "Enterprise" not in page
    response = create(client, exclusive)
    assert response.status_code == 422
    assert "Choose one of the groups available" in response.text
    assert not ApiKey.objects.exists()

    GroupGrant.objects.create(account=world.account, group=exclusive)
    assert "Enterprise" in client.get(reverse("keys:keys")).text
    assert create(client, exclusive).status_code == 200
    assert ApiKey.objects.get().group == exclusive


def test_the_form_keeps_input_and_opens_the_limits_on_error(world, client_for, group):
    response = create(client_for(world.owner), group, name="Keep me", quota="-3")
    assert 'value="Keep me"' in response.text and 'value="-3"' in response.text
    assert '<details class="disclosure" open>' in response.text
    assert f'value="{group.pk}" aria-labelledby' in response.text
    assert "checked" in response.text.split(f'value="{group.pk}"')[1].split(">")[0]


def test_create_without_javascript_renders_whole_pages(world, client_for, group):
    client = client_for(world.owner)
    page = client.get(reverse("keys:key-create") + f"?group={group.pk}")
    assert page.status_code == 200 and "<html" in page.text
    assert "checked" in page.text.split(f'value="{group.pk}"')[1].split(">")[0]
    invalid = create(client, group, headers={}, name="")
    assert invalid.status_code == 422 and "<html" in invalid.text
    done = create(client, group, headers={}, name="No JS")
    assert done.status_code == 200 and "<html" in done.text
    assert 'id="new-key-secret"' in done.text and "hx-swap-oob" not in done.text
    assert ApiKey.objects.filter(name="No JS").exists()


def test_the_blank_form_fragment_resets_the_dialog(world, client_for, group):
    response = client_for(world.owner).get(reverse("keys:key-create"), **HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="key-create"')
    assert "Claude Sonnet" in response.text  # the picker lists the group's models


def test_viewer_cannot_open_or_post_the_create_form(world, client_for, group):
    client = client_for(world.viewer)
    assert client.get(reverse("keys:key-create")).status_code == 403
    assert create(client, group).status_code == 403
    assert not ApiKey.objects.exists()


# --- Detail and edit -------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_every_member_reads_a_key(world, client_for, group, role):
    key, secret = issue(world, group, by=world.admin, ip_allowlist=["10.0.0.0/8"])
    response = client_for(world.member(role)).get(key_url("key-detail", key))
    assert response.status_code == 200
    text = response.text
    assert key.public_id in text and key.masked in text and "10.0.0.0/8" in text
    assert "admin@acme.test" in text and secret not in text
    manages = role in (Role.OWNER, Role.ADMIN)
    assert (key_url("key-update", key) in text) == manages
    assert (key_url("key-roll", key) in text) == manages
    assert (key_url("key-delete", key) in text) == manages


def test_developer_sees_a_teammates_key_without_controls(world, client_for, group):
    key, _ = issue(world, group, by=world.owner)
    text = client_for(world.developer).get(key_url("key-detail", key)).text
    assert "Only owner@acme.test, admins and owners can change this key." in text
    assert "<form" not in text.split('id="key-detail"')[1]


def test_outsider_gets_404_for_another_accounts_key(world, client_for, group):
    key, _ = issue(world, group)
    client = client_for(world.outsider)
    assert client.get(key_url("key-detail", key)).status_code == 404
    for name in ("key-update", "key-roll", "key-revoke", "key-delete"):
        assert client.post(key_url(name, key), {"name": "Mine now"}).status_code == 404, name
    key.refresh_from_db()
    assert key.is_active and key.name == "Production" and key.deleted_at is None


def edit(client, key, **data):
    payload = {
        "name": key.name,
        "quota": "",
        "expires_on": "",
        "rate_limit_5h": "",
        "rate_limit_1d": "",
        "rate_limit_7d": "",
        "ip_allowlist": "",
        "ip_denylist": "",
        **data,
    }
    return client.post(key_url("key-update", key), payload, **HTMX)


def test_owner_edits_name_limits_expiry_and_ip_lists(world, client_for, group):
    key, _ = issue(world, group, by=world.developer)
    day = (timezone.now() + timedelta(days=10)).date()
    response = edit(
        client_for(world.owner),
        key,
        name="Renamed",
        quota="5",
        rate_limit_7d="0.5",
        expires_on=day.isoformat(),
        ip_denylist="192.0.2.0/24",
    )
    assert response.status_code == 200
    assert "Saved." in response.text
    assert 'id="key-facts"' in response.text and 'hx-swap-oob="true"' in response.text
    assert '<h1 id="key-title" hx-swap-oob="true">Renamed</h1>' in response.text
    key.refresh_from_db()
    assert key.name == "Renamed" and key.quota == 5_000_000 and key.rate_limit_7d == 500_000
    assert key.ip_denylist == ["192.0.2.0/24"]
    assert key.expires_at.date() == day + timedelta(days=1)  # works through the chosen day
    event = AuditEvent.objects.get(action="api_key.update")
    assert set(event.details["fields"]) == {
        "name",
        "quota",
        "rate_limit_7d",
        "expires_at",
        "ip_denylist",
    }


def test_edit_clears_the_expiry_and_leaves_an_untouched_past_expiry_alone(world, client_for, group):
    key, _ = issue(world, group, expires_at=timezone.now() + timedelta(days=3))
    client = client_for(world.owner)
    shown_day = (key.expires_at - timedelta(microseconds=1)).date().isoformat()
    assert edit(client, key, expires_on=shown_day).text.count("Nothing to save.") == 1
    assert edit(client, key, expires_on="").status_code == 200
    key.refresh_from_db()
    assert key.expires_at is None

    past = timezone.now() - timedelta(days=2)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=past)
    key.refresh_from_db()
    form_day = (past - timedelta(microseconds=1)).date().isoformat()
    assert form_day in client.get(key_url("key-detail", key)).text
    assert edit(client, key, name="Still expired", expires_on=form_day).status_code == 200
    key.refresh_from_db()
    assert key.name == "Still expired" and key.expires_at == past


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"expires_on": "2001-01-01"}, "Choose today or a later day."),
        ({"ip_allowlist": "300.1.1.1"}, "is not an IP address or CIDR block"),
        ({"quota": "1.1234567"}, "at most six decimal places"),
        ({"rate_limit_5h": "-2"}, "cannot be negative"),
        ({"name": ""}, "This field is required"),
        ({"name": "n" * 101}, "at most 100 characters"),
    ],
)
def test_invalid_edit_answers_422_and_changes_nothing(world, client_for, group, data, message):
    key, _ = issue(world, group)
    response = edit(client_for(world.owner), key, **data)
    assert response.status_code == 422 and message in response.text
    assert response.text.lstrip().startswith('<section class="card" id="key-limits"')
    fresh = ApiKey.objects.get(pk=key.pk)
    assert (fresh.name, fresh.quota, fresh.expires_at, fresh.ip_allowlist) == (
        "Production",
        None,
        None,
        [],
    )


# --- Roll, revoke, delete --------------------------------------------------------------------


def models_status(client, secret) -> int:
    return client.get("/v1/models", headers={"x-api-key": secret}).status_code


def test_roll_shows_the_new_secret_once_and_the_old_one_stops_working(
    world, client_for, client, group, django_capture_on_commit_callbacks
):
    key, old = issue(world, group)
    api = Client()
    assert models_status(api, old) == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.owner).post(key_url("key-roll", key), **HTMX)
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    new = response.text.split('id="rolled-key-secret"')[1].split('value="')[1].split('"')[0]
    assert new != old and new.startswith("sk-byts-")
    assert response.text.count(new) == 1
    assert "data-dialog-show" in response.text and 'id="key-facts"' in response.text
    key.refresh_from_db()
    assert key.digest == key_digest(new) and key.rolled_at is not None
    assert models_status(api, old) == 401
    assert models_status(api, new) == 200
    assert new not in client.get(key_url("key-detail", key)).text
    assert AuditEvent.objects.filter(action="api_key.roll").count() == 1


def test_a_revoked_key_cannot_be_rolled(world, client_for, group):
    key, _ = issue(world, group)
    client = client_for(world.owner)
    client.post(key_url("key-revoke", key), **HTMX)
    response = client.post(key_url("key-roll", key), **HTMX)
    assert response.status_code == 422 and "cannot be rolled" in response.text
    assert "sk-byts-" not in response.text


def test_revoke_from_the_row_rerenders_the_row(
    world, client_for, group, django_capture_on_commit_callbacks
):
    key, secret = issue(world, group)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.admin).post(
            key_url("key-revoke", key), HTTP_HX_TARGET=f"key-row-{key.public_id}", **HTMX
        )
    assert response.status_code == 200
    row = f'<tr id="key-row-{key.public_id}" class="is-inactive">'
    assert response.text.lstrip().startswith(row)
    assert 'data-status="revoked"' in response.text and "Revoked" in response.text
    assert key_url("key-revoke", key) not in response.text  # nothing left to revoke
    assert "announce" in response.headers["HX-Trigger"]
    key.refresh_from_db()
    assert key.status == "revoked"
    assert models_status(Client(), secret) == 401


def test_revoke_from_the_detail_page_rerenders_the_detail(world, client_for, group):
    key, _ = issue(world, group)
    response = client_for(world.owner).post(
        key_url("key-revoke", key), HTTP_HX_TARGET="key-detail", **HTMX
    )
    assert response.text.lstrip().startswith('<div id="key-detail"')
    assert "Key revoked." in response.text and 'data-status="revoked"' in response.text
    assert key_url("key-roll", key) not in response.text
    assert key_url("key-delete", key) in response.text


def test_revoke_without_javascript_redirects_to_the_key(world, client_for, group):
    key, _ = issue(world, group)
    response = client_for(world.owner).post(key_url("key-revoke", key))
    assert response.status_code == 302 and response.url == key_url("key-detail", key)


def test_delete_redirects_to_the_list_with_a_message(world, client_for, group):
    key, _ = issue(world, group, name="Old key")
    client = client_for(world.owner)
    response = client.post(key_url("key-delete", key), **HTMX)
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == reverse("keys:keys")
    key.refresh_from_db()
    assert key.deleted_at is not None and key.status == "revoked"
    page = client.get(reverse("keys:keys")).text
    assert "Deleted Old key." in page and key.public_id not in page
    assert client.get(key_url("key-detail", key)).status_code == 404


def test_developer_manages_own_keys_but_not_a_teammates(world, client_for, group):
    own, _ = issue(world, group, by=world.developer, name="Mine")
    theirs, _ = issue(world, group, by=world.owner, name="Theirs")
    client = client_for(world.developer)
    for name in ("key-update", "key-roll", "key-revoke", "key-delete"):
        assert client.post(key_url(name, theirs), {"name": "x"}, **HTMX).status_code == 403
    theirs.refresh_from_db()
    assert theirs.is_active and theirs.name == "Theirs" and theirs.deleted_at is None

    assert edit(client, own, name="Mine, renamed").status_code == 200
    assert client.post(key_url("key-roll", own), **HTMX).status_code == 200
    assert client.post(key_url("key-revoke", own), **HTMX).status_code == 200
    assert client.post(key_url("key-delete", own), **HTMX).status_code == 200
    own.refresh_from_db()
    assert own.name == "Mine, renamed" and own.deleted_at is not None


def post_urls(key, mkey):
    return [
        reverse("keys:key-create"),
        key_url("key-update", key),
        key_url("key-roll", key),
        key_url("key-revoke", key),
        key_url("key-delete", key),
        reverse("keys:management-key-create"),
        reverse("keys:management-key-revoke", args=[mkey.public_id]),
    ]


def test_viewer_gets_403_on_every_post(world, client_for, group):
    key, _ = issue(world, group, by=world.viewer)  # even a key they are named creator of
    mkey, _ = management_key_issue(account=world.account, actor=world.owner, name="CI")
    client = client_for(world.viewer)
    for url in post_urls(key, mkey):
        assert client.post(url, {"name": "x", "group": group.pk}, **HTMX).status_code == 403, url
    key.refresh_from_db()
    mkey.refresh_from_db()
    assert key.is_active and key.deleted_at is None and mkey.is_active
    assert ApiKey.objects.count() == 1 and ManagementKey.objects.count() == 1


def test_every_form_needs_the_csrf_token(world, group):
    key, _ = issue(world, group)
    mkey, _ = management_key_issue(account=world.account, actor=world.owner, name="CI")
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner)
    for url in post_urls(key, mkey):
        assert client.post(url, {"name": "x", "group": group.pk}, **HTMX).status_code == 403, url
    key.refresh_from_db()
    mkey.refresh_from_db()
    assert key.is_active and key.deleted_at is None and key.rolled_at is None and mkey.is_active
    assert ApiKey.objects.count() == 1 and ManagementKey.objects.count() == 1


# --- Escaping --------------------------------------------------------------------------------


def test_names_render_as_text_everywhere(world, client_for, group):
    hostile = make_group("hostile", name=XSS, description=XSS)
    key, _ = issue(world, hostile, name=XSS)
    management_key_issue(account=world.account, actor=world.owner, name=XSS)
    client = client_for(world.owner)
    pages = [
        client.get(reverse("keys:keys")),
        client.get(key_url("key-detail", key)),
        client.get(reverse("keys:management-keys")),
        client.get(reverse("keys:groups")),
        client.get(reverse("accounts:audit")),
        create(client, hostile, name=XSS),
        create(client, hostile, name=XSS, quota="-1"),
        client.post(key_url("key-revoke", key), HTTP_HX_TARGET=f"key-row-{key.public_id}", **HTMX),
    ]
    for response in pages:
        assert response.status_code in (200, 422)
        assert XSS not in response.text, response.request["PATH_INFO"]
        assert ESCAPED in response.text, response.request["PATH_INFO"]


# --- Management keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.OWNER, 200), (Role.ADMIN, 200), (Role.DEVELOPER, 403), (Role.VIEWER, 403)],
)
def test_management_keys_are_for_owners_and_admins(world, client_for, role, status):
    mkey, secret = management_key_issue(account=world.account, actor=world.owner, name="Deploys")
    client = client_for(world.member(role))
    response = client.get(reverse("keys:management-keys"))
    assert response.status_code == status
    if status == 200:
        assert "Deploys" in response.text and mkey.masked in response.text
        assert "owner@acme.test" in response.text and secret not in response.text
    assert client.get(reverse("keys:management-key-create")).status_code == status


def test_outsider_sees_only_their_own_management_keys(world, client_for):
    mkey, _ = management_key_issue(account=world.account, actor=world.owner, name="Acme CI")
    client = client_for(world.outsider)
    assert "Acme CI" not in client.get(reverse("keys:management-keys")).text
    url = reverse("keys:management-key-revoke", args=[mkey.public_id])
    assert client.post(url, **HTMX).status_code == 404
    mkey.refresh_from_db()
    assert mkey.is_active


def test_management_key_secret_is_shown_once(world, client_for):
    client = client_for(world.admin)
    response = client.post(reverse("keys:management-key-create"), {"name": "CI"}, **HTMX)
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    secret = response.text.split('id="new-management-secret"')[1].split('value="')[1].split('"')[0]
    assert secret.startswith("sk-byts-admin-") and response.text.count(secret) == 1
    assert 'hx-swap-oob="afterbegin:#mkey-rows"' in response.text
    mkey = ManagementKey.objects.get(account=world.account)
    assert mkey.digest == key_digest(secret) and mkey.created_by == world.admin
    assert secret not in client.get(reverse("keys:management-keys")).text


def test_management_key_needs_a_name(world, client_for):
    response = client_for(world.owner).post(
        reverse("keys:management-key-create"), {"name": " "}, **HTMX
    )
    assert response.status_code == 422 and "This field is required" in response.text
    assert not ManagementKey.objects.exists()


def test_management_key_without_javascript(world, client_for):
    client = client_for(world.owner)
    page = client.get(reverse("keys:management-key-create"))
    assert page.status_code == 200 and 'id="mkey-create-dialog"' not in page.text
    assert 'id="mkey-create"' in page.text
    done = client.post(reverse("keys:management-key-create"), {"name": "CI"})
    assert done.status_code == 200 and 'id="new-management-secret"' in done.text


def test_revoke_a_management_key_in_place(world, client_for):
    mkey, _ = management_key_issue(account=world.account, actor=world.owner, name="CI")
    response = client_for(world.admin).post(
        reverse("keys:management-key-revoke", args=[mkey.public_id]), **HTMX
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith(f'<tr id="mkey-row-{mkey.public_id}"')
    assert 'data-status="revoked"' in response.text
    mkey.refresh_from_db()
    assert not mkey.is_active
    assert AuditEvent.objects.filter(action="management_key.revoke", actor=world.admin).exists()


# --- Audit log -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.OWNER, 200), (Role.ADMIN, 200), (Role.DEVELOPER, 403), (Role.VIEWER, 403)],
)
def test_audit_log_is_for_owners_and_admins(world, client_for, role, status):
    client = client_for(world.member(role))
    assert client.get(reverse("accounts:audit")).status_code == status
    settings_page = client.get(reverse("accounts:settings")).text
    assert ("Audit log" in settings_page) == (status == 200)


def test_audit_log_lists_key_actions(world, client_for, group):
    client = client_for(world.owner)
    create(client, group, name="Audited")
    key = ApiKey.objects.get(name="Audited")
    edit(client, key, quota="3")
    client.post(key_url("key-roll", key), **HTMX)
    client.post(key_url("key-revoke", key), **HTMX)
    text = client.get(reverse("accounts:audit")).text
    for action in ("api_key.create", "api_key.update", "api_key.roll", "api_key.revoke"):
        assert action in text
    assert "Created an API key" in text and "Audited (" in text and "owner@acme.test" in text


def test_audit_log_pages_by_fifty(world, client_for):
    for number in range(60):
        AuditEvent.objects.create(
            account=world.account, actor=world.owner, action="account.rename", target=f"N{number}"
        )
    AuditEvent.objects.create(account=world.outsider_account, action="x", target="Other Co")
    client = client_for(world.owner)
    first = client.get(reverse("accounts:audit")).text
    assert "N59" in first and "N10<" in first and "N9<" not in first
    assert "Page 1 of 2" in first and "?page=2" in first
    second = client.get(reverse("accounts:audit"), {"page": 2}, **HTMX)
    assert second.text.lstrip().startswith('<section class="card card-flush" id="audit-events"')
    assert "N9<" in second.text and "N0<" in second.text and "N59" not in second.text
    assert "Other Co" not in first + second.text
    assert client.get(reverse("accounts:audit"), {"page": "zzz"}).status_code == 200
