"""E-mails as the default console backend prints them (the `serve` output): the link is on a
line of its own and whole, never cut by quoted-printable's soft line breaks, so a copied link
works (core/mail.py)."""

import re

import pytest
from django.core import mail
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import Role
from accounts.services import invitation_create, invitation_email_deliver
from core.mail import TextEmailMessage, text_transfer_encoding
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CONSOLE = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
PASSWORD = "Another-strong-pass-77"


def printed_link(output: str, path: str) -> str:
    """The line of the printed mail that holds the link, which must be the whole line."""
    (line,) = [line for line in output.splitlines() if path in line]
    assert re.fullmatch(r"https?://\S+", line), line
    return line


@override_settings(MAILERS=CONSOLE)
def test_the_printed_sign_up_email_keeps_the_confirmation_link_whole(capsys):
    client = Client()
    # A long address makes a long link's line and prose, which quoted-printable would break.
    email = "a-founder-with-a-rather-long-address@an-example-startup-domain.test"
    client.post(
        reverse("account_signup"),
        {"email": email, "password1": PASSWORD, "password2": PASSWORD},
    )

    output = capsys.readouterr().out
    assert "Content-Transfer-Encoding: 7bit" in output
    assert "quoted-printable" not in output and "=\n" not in output
    link = printed_link(output, "/confirm-email/")
    assert len(link) > 78  # long enough that quoted-printable would have cut it
    # The copied link works: it confirms the address and opens the console.
    assert client.post(link.split("testserver", 1)[1]).status_code == 302
    assert client.get(reverse("console:dashboard")).status_code == 200


@override_settings(MAILERS=CONSOLE)
def test_the_printed_password_reset_email_keeps_its_link_whole(capsys):
    user = UserFactory(email="someone@example.test")
    Client().post(reverse("account_reset_password"), {"email": user.email})

    output = capsys.readouterr().out
    assert "quoted-printable" not in output
    printed_link(output, "/password/reset/key/")


@override_settings(MAILERS=CONSOLE)
def test_an_invitation_in_non_ascii_text_is_8bit_with_its_link_whole(world, capsys):
    world.account.name = "Café Ünïcode Ltd, with a name long enough to make a long line"
    world.account.save()
    invitation = invitation_create(
        account=world.account,
        actor=world.owner,
        email="new@acme.test",
        role=Role.DEVELOPER,
        base_url="http://127.0.0.1:8000",
    )

    assert invitation_email_deliver(
        invitation_id=invitation.pk,
        digest=invitation.token_digest,
        base_url="http://127.0.0.1:8000",
    )

    output = capsys.readouterr().out
    assert "Content-Transfer-Encoding: 8bit" in output and "Café Ünïcode Ltd" in output
    printed_link(output, "/invitations/")


def test_the_encoding_is_7bit_for_ascii_8bit_otherwise_and_left_to_python_past_998():
    assert text_transfer_encoding("plain\ntext") == "7bit"
    assert text_transfer_encoding("café") == "8bit"
    assert text_transfer_encoding("x" * 999) is None
    message = TextEmailMessage("s", "x" * 999, None, ["a@b.test"]).message()
    assert message["Content-Transfer-Encoding"] != "7bit"  # too long a line for SMTP


def test_the_locmem_outbox_still_sees_the_same_body():
    TextEmailMessage("Subject", "Body with a link:\nhttp://x.test/a\n", None, ["a@b.test"]).send()
    (message,) = mail.outbox
    assert message.body.endswith("http://x.test/a\n")
