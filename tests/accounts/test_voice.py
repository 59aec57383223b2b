"""allauth's pages speak the console's voice: sentence case ("Sign in", "Remember me"), never
two capitalised words in a row ("Sign In", "Remember Me", "Two-Factor Authentication")."""

import re
from html.parser import HTMLParser

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.urls import reverse

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

# Names, not wording: these stay capitalised.
PROPER = {"ByteSpike", "Google Authenticator"}
TITLE_CASE = re.compile(r"\b[A-Z][a-z]+(?:[ -][A-Z][a-z]+)+\b")


class Visible(HTMLParser):
    """The text a person reads: text nodes, button values, labels in attributes."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            shown = name in ("placeholder", "aria-label", "title") or (
                name == "value" and (tag != "input" or ("type", "submit") in attrs)
            )
            if shown and value:
                self.parts.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def title_case_in(html: str, names=()) -> list[str]:
    parser = Visible()
    parser.feed(html)
    found = TITLE_CASE.findall(" \n ".join(parser.parts))
    return [words for words in found if words not in PROPER and words not in names]


def assert_one_voice(response, *expected: str, names=()):
    assert response.status_code == 200, response.status_code
    html = response.content.decode()
    assert title_case_in(html, names) == []
    for words in expected:
        assert words in html


def test_the_logged_out_pages_speak_in_sentence_case(client):
    assert_one_voice(client.get(reverse("account_login")), "Sign in", "Remember me")
    assert_one_voice(client.get(reverse("account_signup")), "Sign up")
    assert_one_voice(client.get(reverse("account_reset_password")), "Password reset")


def test_the_second_step_of_a_two_factor_sign_in_speaks_in_sentence_case(client, world):
    TOTP.activate(world.owner, generate_totp_secret())
    response = client.post(
        reverse("account_login"), {"login": world.owner.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert_one_voice(client.get(response["Location"]), "Two-factor authentication", "Sign in")


def test_the_account_pages_under_settings_speak_in_sentence_case(client_for, world):
    client = client_for(world.owner)
    names = {world.owner.name, world.account.name}  # the sidebar shows them
    for url, words in (
        ("account_email", "Email addresses"),
        ("account_change_password", "Change password"),
        ("mfa_index", "Two-factor authentication"),
        ("mfa_activate_totp", "Confirm access"),  # asks for the password again first
    ):
        assert_one_voice(client.get(reverse(url), follow=True), words, names=names)
