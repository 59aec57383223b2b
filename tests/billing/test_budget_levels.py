"""Every budget level (the account's, a project's, a member's) and kind (hard, soft) across the
four text protocols, images and task submits (issue 16, item 2): a hard budget refuses with 402
``budget_exceeded`` in the caller's own envelope and charges nothing; a soft one never refuses.
And the budget headers: what is left of the tightest hard budget, on answers and refusals."""

import json
from datetime import datetime

import pytest
from django.utils import timezone

from accounts.models import Project
from billing.budgets import budget_set
from billing.invariants import wallet_problems
from billing.models import UsageRecord
from tests.factories import budgets_reread, issue_key

pytestmark = pytest.mark.django_db
M = 1_000_000
HI = [{"role": "user", "content": "Hi"}]

# (path, routing group, body, anthropic headers?)
SURFACES = {
    "openai chat": ("/v1/chat/completions", "default",
                    {"model": "gpt-4.1", "max_tokens": 20, "messages": HI}),
    "openai responses": ("/v1/responses", "default",
                         {"model": "gpt-4.1", "max_output_tokens": 20, "input": "Hi"}),
    "anthropic messages": ("/v1/messages", "claude-default",
                           {"model": "claude-sonnet-4-5", "max_tokens": 20, "messages": HI}),
    "gemini": ("/v1beta/models/gemini-2.5-pro:generateContent", "gemini-default",
               {"contents": [{"parts": [{"text": "Hi"}]}]}),
    "image": ("/v1/images/generations", "default", {"model": "gpt-image-1", "prompt": "a fox"}),
    "task": ("/v1/tasks/submit", "gemini-default",
             {"model": "veo-3-fast", "params": {"prompt": "a fox", "duration": 4}}),
}  # fmt: skip


@pytest.fixture
def search(world):
    return Project.objects.create(account=world.account, name="Search")


def call(client, surface: str, key: str, stream: bool = False):
    path, _, body = SURFACES[surface]
    headers = {"x-api-key": key}
    if path == "/v1/messages":
        headers["anthropic-version"] = "2023-06-01"
    if stream and surface == "gemini":
        path = path.replace(":generateContent", ":streamGenerateContent?alt=sse")
    elif stream:
        body = {**body, "stream": True}
    return client.post(path, data=json.dumps(body), content_type="application/json",
                       headers=headers)  # fmt: skip


def budget_message(surface: str, response) -> str:
    """The refusal's message, asserting it is in the protocol's own envelope."""
    body = response.json()
    if surface == "anthropic messages":
        assert body["type"] == "error"
        return body["error"]["message"]
    if surface == "gemini":
        assert body["error"]["code"] == 402 and body["error"]["status"]
        return body["error"]["message"]
    assert body["error"]["code"] == "budget_exceeded"
    return body["error"]["message"]


def set_budget(world, search, level: str, *, hard: bool, **amounts) -> str:
    """A budget of ``level`` covering the developer's keys in Search; what its refusal names."""
    monthly, lifetime = amounts.get("monthly"), amounts.get("lifetime")
    if level == "project":
        Project.objects.filter(pk=search.pk).update(
            monthly_budget=monthly, budget=lifetime, budget_hard=hard, budget_set_at=timezone.now()
        )
        return "of the project Search"
    member = world.developer if level == "member" else None
    budget_set(account=world.account, scope=level, member=member, monthly=monthly,
               lifetime=lifetime, hard=hard, actor=world.owner)  # fmt: skip
    return world.developer.email if member else "the account's"


@pytest.mark.parametrize("surface", list(SURFACES))
@pytest.mark.parametrize("level", ["account", "project", "member"])
def test_a_hard_budget_refuses_in_the_callers_envelope(client, world, groups, search,
                                                       level, surface):  # fmt: skip
    key = issue_key(world.account, groups[SURFACES[surface][1]], actor=world.developer,
                    project=search)[1]  # fmt: skip
    names = set_budget(world, search, level, hard=True, monthly=1)  # less than any call
    budgets_reread(world.account)
    refused = call(client, surface, key)
    assert refused.status_code == 402, refused.content[:300]
    message = budget_message(surface, refused)
    assert "monthly budget" in message and names in message
    assert refused["X-Budget-Remaining-Credits"] == "0.000001"  # a decimal, never "1e-06"
    assert not UsageRecord.objects.exists()
    assert wallet_problems(world.account.pk) == []


@pytest.mark.parametrize("surface", list(SURFACES))
@pytest.mark.parametrize("level", ["account", "project", "member"])
def test_a_soft_budget_never_refuses(client, world, groups, search, level, surface):
    key = issue_key(world.account, groups[SURFACES[surface][1]], actor=world.developer,
                    project=search)[1]  # fmt: skip
    set_budget(world, search, level, hard=False, monthly=1, lifetime=1)
    budgets_reread(world.account)
    response = call(client, surface, key)
    assert response.status_code in (200, 201), response.content[:300]
    assert "X-Budget-Remaining-Credits" not in response  # it limits nothing


TEXT = ["openai chat", "openai responses", "anthropic messages", "gemini"]


@pytest.mark.parametrize("surface", TEXT)
@pytest.mark.parametrize("level", ["account", "project", "member"])
def test_a_lifetime_budget_refuses_a_stream_before_its_first_byte(
    client, world, groups, search, level, surface
):
    key = issue_key(world.account, groups[SURFACES[surface][1]], actor=world.developer,
                    project=search)[1]  # fmt: skip
    set_budget(world, search, level, hard=True, lifetime=1)
    budgets_reread(world.account)
    refused = call(client, surface, key, stream=True)
    assert refused.status_code == 402, refused.content[:300]
    assert "lifetime budget" in budget_message(surface, refused)
    assert refused["X-Budget-Reset"] == "0"  # a lifetime budget never resets
    assert not UsageRecord.objects.exists()


def test_the_budget_headers_name_the_budget_with_the_least_left(client, world, groups, search):
    key = issue_key(world.account, groups["default"], actor=world.developer, project=search)[1]
    set_budget(world, search, "account", hard=True, monthly=40 * M)
    set_budget(world, search, "project", hard=True, monthly=30 * M)
    set_budget(world, search, "member", hard=True, lifetime=35 * M)
    budgets_reread(world.account)
    response = call(client, "openai chat", key)
    assert response.status_code == 200
    charged = UsageRecord.objects.get().credits
    # The project's month has the least left, once the call's charge is counted.
    assert float(response["X-Budget-Remaining-Credits"]) == pytest.approx((30 * M - charged) / M)
    world.account.refresh_from_db()
    reset = datetime.fromtimestamp(int(response["X-Budget-Reset"]), world.account.zone)
    assert (reset.day, reset.hour, reset.minute) == (1, 0, 0)  # midnight, the next month's 1st
    # The budget is the tightest limit too, so the rate-limit headers report it.
    assert float(response["X-RateLimit-Limit"]) == 30


def test_a_key_without_a_hard_budget_gets_no_budget_headers(client, world, groups, search):
    key = issue_key(world.account, groups["default"], actor=world.owner)[1]  # not in Search
    set_budget(world, search, "project", hard=True, monthly=30 * M)
    budgets_reread(world.account)
    response = call(client, "openai chat", key)
    assert response.status_code == 200
    assert "X-Budget-Remaining-Credits" not in response
