"""Budgets through the gateway (issue 16, item 2): an account's and a member's, monthly and
lifetime, hard (402 budget_exceeded in the caller's envelope, for text on every protocol and
tasks) or soft (never refuses), set below what is spent (the next call is refused)."""

import json

import pytest

from billing.budgets import budget_set, spent
from billing.invariants import wallet_problems
from billing.models import UsageRecord
from tests.factories import budgets_reread, issue_key

pytestmark = pytest.mark.django_db
M = 1_000_000
CHAT = {"model": "gpt-4.1", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 20,
            "messages": [{"role": "user", "content": "Hi"}]}  # fmt: skip


def key_of(world, groups, creator, group="default") -> str:
    return issue_key(world.account, groups[group], actor=creator)[1]


def chat(client, key):
    return client.post("/v1/chat/completions", data=json.dumps(CHAT),
                       content_type="application/json", headers={"x-api-key": key})  # fmt: skip


def one_call_costs(client, key) -> int:
    response = chat(client, key)
    assert response.status_code == 200
    return UsageRecord.objects.get(request_id=response["X-Request-ID"]).credits


def account_budget(world, **amounts):
    defaults = {"monthly": None, "lifetime": None, "hard": True}
    return budget_set(account=world.account, scope="account", actor=world.owner,
                      **{**defaults, **amounts})  # fmt: skip


def test_a_hard_monthly_budget_refuses_the_call_that_would_go_over_it(client, world, groups):
    key = key_of(world, groups, world.owner)
    price = one_call_costs(client, key)
    account_budget(world, monthly=30 * price)
    statuses = []
    while len(statuses) < 100 and 402 not in statuses:
        statuses.append(chat(client, key).status_code)
    assert statuses.count(200) >= 2 and statuses[-1] == 402, statuses
    error = chat(client, key).json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "the account's monthly budget of" in error["message"]
    # No call went over it: each was admitted only if its worst case fitted.
    assert spent(f"account:{world.account.pk}", "life") <= 30 * price
    assert wallet_problems(world.account.pk) == []


def test_the_refusal_is_in_anthropics_envelope_too(client, world, groups):
    key = key_of(world, groups, world.owner, "claude-default")
    account_budget(world, lifetime=1)  # less than any call's worst case
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    response = client.post("/v1/messages", data=json.dumps(MESSAGES),
                           content_type="application/json", headers=headers)  # fmt: skip
    assert response.status_code == 402
    body = response.json()
    assert body["type"] == "error" and "lifetime budget" in body["error"]["message"]
    assert not UsageRecord.objects.exists()


def test_a_task_submit_is_refused_by_a_budget(client, world, groups):
    key = key_of(world, groups, world.owner, "gemini-default")
    account_budget(world, monthly=1)
    body = {"model": "veo-3-fast", "params": {"prompt": "a fox", "duration": 4}}
    response = client.post("/v1/tasks/submit", data=json.dumps(body),
                           content_type="application/json", headers={"x-api-key": key})  # fmt: skip
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "budget_exceeded"


def test_a_soft_budget_never_refuses(client, world, groups):
    key = key_of(world, groups, world.owner)
    account_budget(world, monthly=1, hard=False)
    assert chat(client, key).status_code == 200


def test_a_budget_set_below_what_is_spent_refuses_the_next_call(client, world, groups):
    key = key_of(world, groups, world.owner)
    assert chat(client, key).status_code == 200
    account_budget(world, monthly=1)
    assert chat(client, key).json()["error"]["code"] == "budget_exceeded"
    account_budget(world)  # removed
    assert chat(client, key).status_code == 200


def test_a_members_budget_covers_only_the_keys_they_created(client, world, groups):
    mine = key_of(world, groups, world.developer)
    theirs = key_of(world, groups, world.owner)
    budget_set(account=world.account, scope="member", member=world.developer, monthly=1,
               lifetime=None, hard=True, actor=world.owner)  # fmt: skip
    refused = chat(client, mine)
    assert refused.status_code == 402
    assert world.developer.email in refused.json()["error"]["message"]
    assert chat(client, theirs).status_code == 200


def test_when_a_budget_is_the_tightest_limit_the_headers_say_what_is_left(client, world, groups):
    key = key_of(world, groups, world.owner)
    account_budget(world, monthly=20 * M)
    response = chat(client, key)
    assert response.status_code == 200
    charged = UsageRecord.objects.get().credits
    assert float(response["X-RateLimit-Limit"]) == 20
    assert float(response["X-RateLimit-Remaining"]) == pytest.approx((20 * M - charged) / M)


def test_spend_of_last_month_does_not_count_against_this_months_budget(client, world, groups):
    from datetime import timedelta

    from billing.metering import meter

    key = key_of(world, groups, world.owner)
    price = one_call_costs(client, key)
    record = UsageRecord.objects.get()
    UsageRecord.objects.filter(pk=record.pk).update(
        created_at=record.created_at - timedelta(days=40)
    )
    meter.forget()  # a fresh process: the month's spend is read from the usage rows
    account_budget(world, monthly=price + 10 * M)
    assert chat(client, key).status_code == 200
    account_budget(world, monthly=price + 10 * M, lifetime=price)  # but the lifetime one does
    assert chat(client, key).json()["error"]["code"] == "budget_exceeded"


class Unreachable:
    """Counters whose Redis cannot be reached."""

    async def admit(self, *args):
        raise ConnectionError("redis is down")

    async def release(self, *args, **kwargs):
        raise ConnectionError("redis is down")

    settle = forget_budget = release


def test_while_the_counters_are_down_the_database_enforces_budgets(
    client, world, groups, monkeypatch
):
    from billing.metering import meter

    key = key_of(world, groups, world.owner)
    price = one_call_costs(client, key)
    account_budget(world, lifetime=price + 1)  # what is spent, and less than a call
    monkeypatch.setattr(meter, "counters", Unreachable)
    assert chat(client, key).json()["error"]["code"] == "budget_exceeded"
    account_budget(world, lifetime=100 * M)
    assert chat(client, key).status_code == 200
    # The budget's counter missed that call: it is loaded afresh once Redis answers again.
    # (one counter per version of the budget: it was set twice)
    unheard = {counter.rsplit(":", 1)[0] for counter in meter._unheard_budgets}
    assert unheard == {f"account:{world.account.pk}:life"}
    assert wallet_problems(world.account.pk) == []


def test_a_task_submitted_while_the_counters_are_down_is_checked_by_the_database(
    client, world, groups, monkeypatch
):
    from billing.metering import meter

    key = key_of(world, groups, world.owner, "gemini-default")
    account_budget(world, monthly=1)
    monkeypatch.setattr(meter, "counters", Unreachable)
    body = {"model": "veo-3-fast", "params": {"prompt": "a fox", "duration": 4}}
    response = client.post("/v1/tasks/submit", data=json.dumps(body),
                           content_type="application/json", headers={"x-api-key": key})  # fmt: skip
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "budget_exceeded"


def test_a_projects_budget_refuses_its_keys_calls_only(client, world, groups):
    from accounts.models import Project
    from keys.models import ApiKey

    inside = key_of(world, groups, world.owner)
    outside = key_of(world, groups, world.owner)
    search = Project.objects.create(account=world.account, name="Search", monthly_budget=1)
    first = ApiKey.objects.filter(account=world.account).order_by("pk").first()
    ApiKey.objects.filter(pk=first.pk).update(project=search)  # the key `inside`
    refused = chat(client, inside)
    assert refused.status_code == 402
    assert "the monthly budget of the project Search" in refused.json()["error"]["message"]
    assert chat(client, outside).status_code == 200


def test_a_budget_removed_and_set_again_counts_the_spend_made_meanwhile(client, world, groups):
    """While there is no budget, calls do not count against one: a budget set again starts from
    what was spent, not from the counter of the budget before it (found by the attack runs)."""
    key = key_of(world, groups, world.owner)
    account_budget(world, monthly=100 * M)
    assert chat(client, key).status_code == 200  # counted against the budget
    account_budget(world)  # removed
    for _ in range(3):
        assert chat(client, key).status_code == 200  # counted against nothing
    account_budget(world, monthly=spent(f"account:{world.account.pk}", "life") + 1)
    assert chat(client, key).json()["error"]["code"] == "budget_exceeded"


def test_a_project_budget_made_soft_and_hard_again_counts_the_spend_made_meanwhile(
    client, world, groups
):
    from accounts.models import Project
    from accounts.services import project_update

    api_key, key = issue_key(world.account, groups["default"], actor=world.owner)
    search = Project.objects.create(account=world.account, name="Search", monthly_budget=100 * M)
    api_key.project = search
    api_key.save(update_fields=["project"])
    budgets_reread(world.account)
    assert chat(client, key).status_code == 200  # counted against the project's budget
    project_update(project=search, budget_hard=False)
    budgets_reread(world.account)
    for _ in range(3):
        assert chat(client, key).status_code == 200
    spent_now = spent(f"project:{search.pk}", "life")
    project_update(project=search, budget_hard=True, monthly_budget=spent_now + 1)
    budgets_reread(world.account)
    assert chat(client, key).json()["error"]["code"] == "budget_exceeded"
