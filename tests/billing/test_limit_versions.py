"""The counters keep a key's spend per version of its limits: limits that come back (an rpm
added, then removed) start from a fresh seed, never from the counter of the version before,
which missed the calls made meanwhile. (Budgets, kept per time they were set, likewise:
tests/billing/test_budgets.py, ...counts_the_spend_made_meanwhile.)"""

import json

import pytest

from billing.models import UsageRecord
from keys.services import api_key_update
from tests.factories import issue_key

pytestmark = pytest.mark.django_db
CHAT = {"model": "gpt-4.1", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}


def chat(client, key):
    return client.post("/v1/chat/completions", data=json.dumps(CHAT),
                       content_type="application/json", headers={"x-api-key": key})  # fmt: skip


def charged(api_key) -> int:
    return sum(UsageRecord.objects.filter(api_key=api_key).values_list("credits", flat=True))


def test_a_keys_limits_changed_and_changed_back_count_the_calls_made_meanwhile(
    client, world, groups, django_capture_on_commit_callbacks
):
    api_key, key = issue_key(world.account, groups["default"], actor=world.owner)
    assert chat(client, key).status_code == 200
    price = charged(api_key)
    quota = 8 * price

    def limits(**changes):
        with django_capture_on_commit_callbacks(execute=True):  # every process forgets the key
            api_key_update(key=api_key, actor=world.owner, **changes)

    limits(quota=quota)
    assert chat(client, key).status_code == 200  # counted under {quota}
    limits(rpm=1000)
    for _ in range(5):
        assert chat(client, key).status_code == 200  # counted under {quota, rpm}
    limits(rpm=None)  # {quota} again
    for _ in range(20):
        if chat(client, key).status_code != 200:
            break
    # Never past the quota: each call is admitted only if its worst case fits.
    assert charged(api_key) <= quota, (charged(api_key), quota)
