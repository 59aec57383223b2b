"""Production safety: deploy checks, CSP, cookies and error pages."""

import os
import subprocess
import sys

import pytest
from django.urls import reverse

from tests.factories import PASSWORD


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("BYTESPIKE_")}
    env.update(
        BYTESPIKE_DATA_DIR=str(tmp_path),
        SECRET_KEY="k" * 20 + "-production-secret-with-enough-entropy-4c9f1e",
        ALLOWED_HOSTS="gateway.example.com",
        DEBUG="",
        # A deploy needs a real mailer: the console default only prints emails.
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="smtp.example.com",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_console_pages_carry_a_strict_content_security_policy(world, client_for):
    response = client_for(world.owner).get(reverse("console:dashboard"))
    csp = response.headers["Content-Security-Policy"]
    script_src = next(part for part in csp.split(";") if part.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert "'nonce-" in script_src
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # Every <script> is either our own file or carries the nonce.
    nonce = script_src.split("'nonce-")[1].split("'")[0]
    for tag in response.text.split("<script")[1:]:
        head = tag.split(">")[0]
        assert "src=" in head or f'nonce="{nonce}"' in head


@pytest.mark.django_db
def test_session_cookie_is_httponly_and_secure_over_https(world, client, settings):
    settings.SESSION_COOKIE_SECURE = True
    settings.SECURE_SSL_REDIRECT = False
    response = client.post(
        reverse("account_login"), {"login": "owner@acme.test", "password": PASSWORD}, secure=True
    )
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] and cookie["secure"]
    assert cookie["samesite"] == "Lax"


@pytest.mark.django_db
def test_hsts_is_sent_over_https(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_SSL_REDIRECT = False
    response = client.get("/healthz", secure=True)
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_when_enabled(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = client.get(reverse("account_login"))
    assert response.status_code == 301 and response.url.startswith("https://")
    # Probes keep answering over plain HTTP behind the load balancer.
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_unknown_page_gets_the_friendly_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "Page not found" in response.text


@pytest.mark.django_db
def test_forbidden_action_gets_the_friendly_403(world, client_for):
    response = client_for(world.viewer).post(reverse("accounts:invitation-create"), {})
    assert response.status_code == 403
    assert "do that here" in response.text


@pytest.mark.django_db
def test_a_crash_gets_the_friendly_500_without_details(world, monkeypatch):
    from django.test import Client

    import console.views

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(console.views, "render", explode)
    client = Client(raise_request_exception=False)
    client.force_login(world.owner)
    response = client.get(reverse("console:dashboard"))
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "secret internals" not in response.text
