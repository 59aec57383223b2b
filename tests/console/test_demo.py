"""`manage.py seed_demo`: the demo login, catalogue, funded wallet, keys and usage history."""

import itertools
import json
import subprocess
import sys

import pytest
from django.db.models import Count, Min

from billing.invariants import wallet_problems
from billing.models import LedgerEntry, UsageRecord, Wallet
from console.demo import seed_demo
from keys.models import ApiKey, KeyStatus, ManagementKey
from tests.processes import ROOT, embedded_env


def test_the_command_prints_the_login_and_fresh_keys_as_json(tmp_path):
    env = embedded_env(tmp_path, BYTESPIKE_DEMO_PASSWORD="demo-pass-123")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    output = subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--json"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    result = json.loads(output)
    assert result["email"] == "demo@example.com" and result["password"] == "demo-pass-123"
    assert result["account"].startswith("acct_")
    assert result["management_key"].startswith("sk-byts-admin-")
    assert set(result["keys"]) == {"claude-default", "gemini-default", "default"}
    assert all(key.startswith("sk-byts-") for key in result["keys"].values())


@pytest.mark.django_db
def test_seeding_twice_changes_nothing_but_the_secrets(monkeypatch, client):
    monkeypatch.setenv("BYTESPIKE_DEMO_PASSWORD", "demo-pass-123")
    first = seed_demo()
    second = seed_demo()
    assert {k: first[k] for k in ("email", "password", "account")} == {
        k: second[k] for k in ("email", "password", "account")
    }
    assert first["keys"] != second["keys"] and first["management_key"] != second["management_key"]
    # Rolled, not multiplied: one active key per group, one active management key.
    assert ApiKey.objects.filter(status=KeyStatus.ACTIVE).count() == 3
    assert ManagementKey.objects.filter(status=KeyStatus.ACTIVE).count() == 1
    assert (
        client.get("/v1/models", headers={"x-api-key": first["keys"]["default"]}).status_code == 401
    )
    assert (
        client.get("/v1/models", headers={"x-api-key": second["keys"]["default"]}).status_code
        == 200
    )
    # Funded once with 100 credits, through the ledger.
    wallet = Wallet.objects.get()
    assert wallet.balance == 100_000_000
    assert LedgerEntry.objects.filter(kind="topup").count() == 1


@pytest.mark.django_db
def test_history_is_spread_over_the_days_and_written_once(monkeypatch):
    monkeypatch.setenv("BYTESPIKE_DEMO_PASSWORD", "demo-pass-123")
    seed_demo(issue_keys=False, history_days=10)
    count = UsageRecord.objects.count()
    assert count > 20
    per_key = UsageRecord.objects.values("api_key").annotate(n=Count("id"))
    assert len(per_key) == 3
    days = {record.created_at.date() for record in UsageRecord.objects.all()}
    assert len(days) >= 7
    seed_demo(issue_keys=False, history_days=10)
    assert UsageRecord.objects.count() == count
    wallet = Wallet.objects.get()
    assert wallet_problems(wallet.account_id) == []
    assert 0 < wallet.balance < 100_000_000
    oldest = UsageRecord.objects.aggregate(oldest=Min("created_at"))["oldest"]
    assert oldest is not None


@pytest.mark.django_db
def test_demo_ledger_reads_in_date_order_with_no_jump_in_balance_after(monkeypatch):
    monkeypatch.setenv("BYTESPIKE_DEMO_PASSWORD", "demo-pass-123")
    seed_demo(issue_keys=False, history_days=10)
    seed_demo(issue_keys=False, history_days=12)  # a later run adds older days: none before
    moved = list(
        LedgerEntry.objects.exclude(kind__in=("hold", "release")).order_by("created_at", "id")
    )
    assert moved[0].kind == "topup" and len(moved) > 20
    assert moved[0].balance_after == moved[0].amount == 100_000_000
    for before, after in itertools.pairwise(moved):
        assert after.created_at >= before.created_at
        assert after.balance_after == before.balance_after + after.amount, (before, after)
    # Holds too are dated with their calls, so the full ledger reads in order as well.
    everything = list(LedgerEntry.objects.order_by("created_at", "id"))
    for before, after in itertools.pairwise(everything):
        assert after.balance_after == before.balance_after + after.amount
        assert after.held_after == before.held_after + after.held_change


@pytest.mark.django_db
def test_seeding_again_after_a_demo_key_was_paused_issues_one_under_the_next_free_name(
    monkeypatch,
):
    monkeypatch.setenv("BYTESPIKE_DEMO_PASSWORD", "demo-pass-123")
    seed_demo()
    paused = ApiKey.objects.get(name="Demo key (default)")
    ApiKey.objects.filter(pk=paused.pk).update(status=KeyStatus.PAUSED)

    result = seed_demo()  # key names are unique: the paused key keeps its name

    fresh = ApiKey.objects.get(name="Demo key (default) 2")
    assert fresh.status == KeyStatus.ACTIVE and result["keys"]["default"].endswith(fresh.last4)
    assert ApiKey.objects.get(pk=paused.pk).status == KeyStatus.PAUSED
