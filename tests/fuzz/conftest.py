"""Fuzzing: the hypothesis profiles and an account with something for the fuzzers to act on.

Profiles (docs/security.md, "Fuzzing"): ``ci`` is the default, derandomized so a CI run is
repeatable and short; ``HYPOTHESIS_PROFILE=long`` runs many more random examples and keeps the
failing ones under var/hypothesis so the next run replays them first. They apply to the fuzz
tests only (``FUZZ``), not to the other hypothesis tests of the suite.
"""

import json
import os
import socket
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from accounts.models import GroupGrant
from catalogue.models import AIModel, RoutingGroup
from generation.callbacks import targets
from generation.models import Task
from generation.services import task_cancel, task_submit
from keys.services import management_key_issue
from tests.conftest import World
from tests.factories import fund, funded_catalogue, issue_key

M = 1_000_000

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=75,
    deadline=None,
    database=None,
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=1_000,
    deadline=None,
    database=DirectoryBasedExampleDatabase("var/hypothesis/examples"),
    print_blob=True,
)

FUZZ = settings(
    settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci")),
    # Every example of a test acts on the one account its fixtures built, inside the test's
    # one transaction: what an example leaves behind (a new key, a cancelled task, a settled
    # hold) is simply more state for the next example, and the invariants checked after each
    # example (books balance, no stray holds, errors in the envelope) hold in any such state.
    # Rebuilding the account per example would cost seconds and test nothing more.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


# Names the fuzzers may put in a callback URL resolve here, without asking a name server.
PUBLIC_HOST = "hooks.example.com"
PUBLIC_ADDRESS = "93.184.215.14"


@dataclass
class FuzzAccount:
    """Acme with the demo catalogue, money, keys in every group, usage, a ledger and tasks;
    Other Co with a key and a task of its own (which Acme's calls must never reach)."""

    world: World
    groups: dict[str, RoutingGroup]
    management_key: str
    keys: dict[str, str]  # inference key secrets by group slug, plus "limited"
    key_ids: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    their_task_id: str = ""

    @property
    def account(self):
        return self.world.account


def _offline_resolve(host: str, port: int, name: str = "callback_url") -> tuple[str, ...]:
    if host == PUBLIC_HOST:
        return (PUBLIC_ADDRESS,)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        raise targets.CallbackURLError(f"{name}'s host could not be resolved.") from None
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def _submit(account, key, model: str, **params) -> Task:
    return task_submit(
        account_id=account.pk,
        api_key_id=key.pk,
        model=AIModel.objects.get(slug=model),
        multiplier=1,
        params={"prompt": "A lighthouse at dusk", **params},
    ).task


def _bill_some_calls(client, keys: dict[str, str]) -> None:
    """Real calls through the data plane, so there are usage rows, charges and releases."""
    calls = [
        ("/v1/chat/completions", "default",
         {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hello"}]}),
        ("/v1/messages", "claude-default",
         {"model": "claude-haiku-4-5", "max_tokens": 50,
          "messages": [{"role": "user", "content": "Hello"}]}),
        ("/v1/chat/completions", "limited",
         {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Hi"}]}),
        ("/v1/images/generations", "default",
         {"model": "gpt-image-1", "prompt": "A boat", "size": "1024x1024", "quality": "low"}),
        ("/v1/chat/completions", "default",  # an upstream failure: held, then released
         {"model": "gpt-4.1", "messages": [{"role": "user", "content": "[sandbox:status=503]"}]}),
    ]  # fmt: skip
    for path, key, body in calls:
        response = client.post(
            path,
            json.dumps(body),
            content_type="application/json",
            headers={"x-api-key": keys[key]},
        )
        assert response.status_code in (200, 502), response.content


@pytest.fixture
def fuzz_account(world, settings, monkeypatch, client) -> FuzzAccount:
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    # The fuzzers should reach key creation itself, not its hourly ceiling (tests/api has that).
    settings.BYTESPIKE_KEY_CREATION_LIMIT = 100_000
    monkeypatch.setattr(targets, "_resolve", _offline_resolve)
    groups = funded_catalogue(world.account, 100_000)
    GroupGrant.objects.create(group=groups["enterprise"], account=world.account)
    fund(world.outsider_account, 100)
    _, management_key = management_key_issue(account=world.account, actor=world.admin, name="fuzz")
    keys, issued = {}, {}
    for slug in ("default", "claude-default", "gemini-default", "enterprise"):
        issued[slug], keys[slug] = issue_key(
            world.account, groups[slug], name=slug, actor=world.owner
        )
    issued["limited"], keys["limited"] = issue_key(
        world.account,
        groups["default"],
        name="limited",
        quota=50 * M,
        rate_limit_5h=20 * M,
        rate_limit_1d=30 * M,
        rate_limit_7d=40 * M,
        ip_allowlist=["127.0.0.0/8", "::1/128"],
        ip_denylist=["10.0.0.0/8"],
    )
    _bill_some_calls(client, keys)
    pending = _submit(world.account, issued["gemini-default"], "veo-3-fast", duration=4)
    image = _submit(world.account, issued["gemini-default"], "imagen-4")
    cancelled = task_cancel(_submit(world.account, issued["default"], "sora-2", duration=4))
    theirs, _ = issue_key(world.outsider_account, groups["gemini-default"], actor=world.outsider)
    their_task = _submit(world.outsider_account, theirs, "veo-3-fast", duration=4)
    return FuzzAccount(
        world=world,
        groups=groups,
        management_key=management_key,
        keys=keys,
        key_ids=[key.public_id for key in issued.values()],
        task_ids=[pending.public_id, image.public_id, cancelled.public_id],
        their_task_id=their_task.public_id,
    )
