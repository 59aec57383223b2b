"""Sign-up, email verification, log in and out, password reset, two-factor and rate limits."""

import re
import time

import pytest
from allauth.mfa import app_settings as mfa_settings
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import (
    SECRET_SESSION_KEY,
    format_hotp_value,
    hotp_value,
)
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import Membership, Role
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Another-strong-pass-77"


def link_in(message) -> str:
    return re.search(r"https?://testserver(/\S+)", message.body).group(1)


def log_in(client, email, password=PASSWORD):
    return client.post(reverse("account_login"), {"login": email, "password": password})


def test_sign_up_creates_an_account_owned_by_the_new_user_and_asks_to_verify():
    client = Client()
    response = client.post(
        reverse("account_signup"),
        {
            "email": "Founder@Startup.test",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            "name": "Fay Founder",
            "account_name": "Startup Inc",
        },
    )
    assert response.status_code == 302
    membership = Membership.objects.get(user__email="founder@startup.test")
    assert membership.role == Role.OWNER and membership.account.name == "Startup Inc"
    assert membership.user.name == "Fay Founder"
    # Verification is mandatory: the console stays closed until the link is followed.
    assert client.get(reverse("console:dashboard")).status_code == 302
    (message,) = mail.outbox
    assert message.to == ["founder@startup.test"]
    confirm = link_in(message)
    assert client.post(confirm).status_code == 302
    assert membership.user.emailaddress_set.get().verified
    assert client.get(reverse("console:dashboard")).status_code == 200


def test_sign_up_without_an_account_name_gets_a_default_one():
    Client().post(
        reverse("account_signup"),
        {"email": "solo@dev.test", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert Membership.objects.get(user__email="solo@dev.test").account.name == "solo's account"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "bad", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}, "valid email"),
        ({"email": "a@b.test", "password1": "short", "password2": "short"}, "too short"),
        ({"email": "a@b.test", "password1": NEW_PASSWORD, "password2": "other"}, "same password"),
    ],
)
def test_invalid_sign_up_shows_errors(data, message):
    response = Client().post(reverse("account_signup"), data)
    assert response.status_code == 200
    assert message in response.text
    assert not Membership.objects.exists()


def test_log_in_and_out(world):
    client = Client()
    response = log_in(client, "owner@acme.test")
    assert response.status_code == 302 and response.url == reverse("console:dashboard")
    assert client.get(reverse("console:dashboard")).status_code == 200
    client.post(reverse("account_logout"))
    assert client.get(reverse("console:dashboard")).status_code == 302


def test_log_in_rotates_the_session_key(world):
    client = Client()
    client.get(reverse("account_login"))
    client.session.save()
    before = client.session.session_key
    log_in(client, "owner@acme.test")
    assert client.session.session_key != before


def test_failed_logins_are_rate_limited_per_address(world):
    client = Client()
    for _ in range(5):
        response = log_in(client, "owner@acme.test", "wrong")
        assert "not correct" in response.text
    response = log_in(client, "owner@acme.test", PASSWORD)
    assert response.status_code == 429 or "Too many failed login attempts" in response.text
    assert client.get(reverse("console:dashboard")).status_code == 302


TOO_MANY = "Too many failed login attempts"


def test_wrong_passwords_from_one_address_do_not_lock_the_user_out_elsewhere(world):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(5):
        assert "not correct" in log_in(attacker, "owner@acme.test", "wrong").text
    # The attacker's address stays refused, even with the right password...
    assert TOO_MANY in log_in(attacker, "owner@acme.test").text
    # ...while the user, from their own address, logs in.
    owner = Client(REMOTE_ADDR="198.51.100.20")
    response = log_in(owner, "owner@acme.test")
    assert response.status_code == 302
    assert owner.get(reverse("console:dashboard")).status_code == 200


def test_one_address_guessing_many_accounts_is_limited(world):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for n in range(10):
        assert "not correct" in log_in(attacker, f"user{n}@acme.test", "wrong").text
    assert TOO_MANY in log_in(attacker, "owner@acme.test").text


def test_guessing_from_many_addresses_is_capped_except_for_browsers_that_signed_in(world, settings):
    from allauth.core.internal.ratelimit import parse_rates

    # One address alone cannot reach the account's ceiling: it takes a spread-out attack.
    per_address = next(r for r in parse_rates(settings.ACCOUNT_RATE_LIMITS["login_failed"])
                       if r.per == "key")  # fmt: skip
    (ceiling,) = parse_rates(settings.ACCOUNT_RATE_LIMITS["login_failed_account"])
    assert per_address.amount * ceiling.duration / per_address.duration < ceiling.amount

    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS,
                                    "login_failed_account": "10/h/key"}  # fmt: skip
    known = Client(REMOTE_ADDR="198.51.100.20")
    assert log_in(known, "owner@acme.test").status_code == 302
    known.post(reverse("account_logout"))
    for n in range(2):
        attacker = Client(REMOTE_ADDR=f"203.0.113.{n}")
        for _ in range(5):
            assert "not correct" in log_in(attacker, "owner@acme.test", "wrong").text
    assert TOO_MANY in log_in(Client(REMOTE_ADDR="192.0.2.50"), "owner@acme.test").text
    # The user's own browser, which signed in before, still gets in.
    assert log_in(known, "owner@acme.test").status_code == 302
    # A forged or foreign cookie does not.
    forged = Client(REMOTE_ADDR="192.0.2.51")
    forged.cookies["known_browser"] = known.cookies["known_browser"].value + "x"
    assert TOO_MANY in log_in(forged, "owner@acme.test").text


def test_login_limits_count_the_address_the_proxy_header_names(world, settings):
    settings.BYTESPIKE_CLIENT_IP_HEADER = "X-Forwarded-For"
    attacker = Client(headers={"X-Forwarded-For": "203.0.113.7"})
    for _ in range(5):
        assert "not correct" in log_in(attacker, "owner@acme.test", "wrong").text
    assert TOO_MANY in log_in(attacker, "owner@acme.test").text
    owner = Client(headers={"X-Forwarded-For": "198.51.100.20"})
    assert log_in(owner, "owner@acme.test").status_code == 302


def test_log_in_while_redis_is_down_is_a_503_not_a_500(world, monkeypatch):
    # django-allauth counts attempts in the cache; without it the page cannot decide (the soak).
    import redis
    from django.core.cache import caches

    def down(*args, **kwargs):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(type(caches["default"]), "add", down)
    response = Client(raise_request_exception=False).post(
        reverse("account_login"), {"login": "owner@acme.test", "password": PASSWORD}
    )
    assert response.status_code == 503
    assert response["Retry-After"] == "5"


def test_password_reset_by_email(world):
    client = Client()
    client.post(reverse("account_reset_password"), {"email": "owner@acme.test"})
    (message,) = mail.outbox
    page = client.get(link_in(message), follow=True)
    assert page.status_code == 200
    form_url = page.redirect_chain[-1][0] if page.redirect_chain else link_in(message)
    response = client.post(form_url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert log_in(Client(), "owner@acme.test", NEW_PASSWORD).status_code == 302


def test_password_reset_is_rate_limited(world):
    client = Client()
    statuses = [
        client.post(reverse("account_reset_password"), {"email": "owner@acme.test"}).status_code
        for _ in range(7)
    ]
    assert 429 in statuses
    assert len(mail.outbox) <= 5


def current_code(secret: str) -> str:
    counter = int(time.time()) // mfa_settings.TOTP_PERIOD
    return format_hotp_value(hotp_value(secret, counter))


def test_two_factor_with_totp_and_recovery_codes(world):
    client = Client()
    log_in(client, "owner@acme.test")
    # Turning on two-factor is sensitive: allauth asks for the password again first.
    assert client.get(reverse("mfa_activate_totp")).url.startswith(
        reverse("account_reauthenticate")
    )
    client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    assert secret in page.text  # shown for manual entry next to the QR code
    response = client.post(reverse("mfa_activate_totp"), {"code": current_code(secret)})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=world.owner, type="totp").exists()
    codes_page = client.get(reverse("mfa_view_recovery_codes"))
    recovery_codes = re.findall(r"\b[0-9a-f]{8}\b", codes_page.text)
    assert len(recovery_codes) >= 10

    # A password alone no longer logs in: the second step asks for a code.
    second = Client()
    response = log_in(second, "owner@acme.test")
    assert response.url == reverse("mfa_authenticate")
    assert second.get(reverse("console:dashboard")).status_code == 302
    before = second.session.session_key
    assert second.post(reverse("mfa_authenticate"), {"code": "000000"}).status_code == 200
    response = second.post(reverse("mfa_authenticate"), {"code": current_code(secret)})
    assert response.status_code == 302
    assert second.get(reverse("console:dashboard")).status_code == 200
    assert second.session.session_key != before

    # A recovery code works once.
    third = Client()
    log_in(third, "owner@acme.test")
    assert third.post(reverse("mfa_authenticate"), {"code": recovery_codes[0]}).status_code == 302
    fourth = Client()
    log_in(fourth, "owner@acme.test")
    assert fourth.post(reverse("mfa_authenticate"), {"code": recovery_codes[0]}).status_code == 200


def test_unverified_user_cannot_log_in_until_verified(db):
    UserFactory(email="late@x.test", verified=False)
    client = Client()
    response = log_in(client, "late@x.test")
    assert response.status_code == 302
    assert response.url == reverse("account_email_verification_sent")
    assert client.get(reverse("console:dashboard")).status_code == 302
