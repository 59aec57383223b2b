"""Which payment provider a fresh process picks from its environment: the sandbox only on the
embedded default, Stripe when its key is set, none on a production database without one; and a
clear refusal to start for a Stripe set-up without its webhook secret or an unknown name."""

import subprocess
import sys

import pytest

from tests.processes import ROOT, embedded_env

PRINT = (
    "import console.settings as s; print(s.BYTESPIKE_PAYMENT_PROVIDER, s.SECURE_CSP['form-action'])"
)
STRIPE = {"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x"}
PG = {"DATABASE_URL": "postgres://u@127.0.0.1:1/none"}


def settings_of(tmp_path, **env):
    for name in ("BYTESPIKE_PAYMENT_PROVIDER", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
        env.setdefault(name, "")
    return subprocess.run(
        [sys.executable, "-c", PRINT],
        cwd=ROOT, env=embedded_env(tmp_path, **env), capture_output=True, text=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "provider"),
    [
        ({}, "sandbox"),
        (PG, "none"),
        (STRIPE, "stripe"),
        ({**PG, **STRIPE}, "stripe"),
        ({**PG, "BYTESPIKE_PAYMENT_PROVIDER": "sandbox"}, "sandbox"),
        ({"BYTESPIKE_PAYMENT_PROVIDER": "none"}, "none"),
    ],
)
def test_the_provider_follows_the_environment(tmp_path, env, provider):
    result = settings_of(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    name, form_action = result.stdout.split(" ", 1)
    assert name == provider
    # Only Stripe's checkout is added to where the console's forms may lead.
    assert ("https://checkout.stripe.com" in form_action) == (provider == "stripe")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"STRIPE_SECRET_KEY": "sk_test_x"},
            "The stripe payment provider needs STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET.",
        ),
        ({"BYTESPIKE_PAYMENT_PROVIDER": "paypal"}, "is stripe, sandbox or none"),
    ],
)
def test_a_bad_payment_set_up_refuses_to_start(tmp_path, env, message):
    result = settings_of(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr
