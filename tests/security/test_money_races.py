"""Money and limits attacked through real web processes, as issue 11's attack run did.

Each backend is a fresh install: the embedded default (SQLite, one web process, as `serve`
runs it), and PostgreSQL with two web processes sharing Redis. The attacks use only the public
APIs: a management key makes keys with small limits, then many calls race against them. The
books are read afterwards by `manage.py shell` in the installation's own environment.
"""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import httpx
import psycopg
import pytest
import redis
from django.conf import settings

from generation.routing import CATALOGUE_TTL_SECONDS
from tests.processes import ROOT, embedded_env, free_port, start_web, stop_all, wait_until

pytestmark = pytest.mark.xdist_group("money-races")

M = 1_000_000
# The installations renew their holds every 1.25 s and sweep those unrenewed for 5 s: short
# enough for the tests to wait out, long enough that renewals stalled by a loaded machine (seen:
# 3 s with the suite running on two cores) do not get a live call's hold swept.
STALE_SECONDS = 5
LONG_PROMPT = "[sandbox:words=2000] write"
CALLS = 50  # racing against a limit that four calls reach
OPEN_LEASES = "SELECT reference FROM billing_hold WHERE kind = 'lease' AND status = 'open'"


class Installation:
    """A fresh ByteSpike: its environment, web processes and the demo account's keys."""

    def __init__(self, tmp_path, env: dict, web_processes: int):
        self.tmp_path = tmp_path
        self.env = env
        self.log = tmp_path / "web.log"
        self.manage("migrate", "-v0")
        seeded = self.manage("seed_demo", "--json")
        self.demo = json.loads(seeded.stdout.strip().splitlines()[-1])
        self.processes, self.bases = [], []
        for _ in range(web_processes):
            self.start_web()
        self.groups = {
            g["slug"]: g["id"] for g in self.api("get", "/api/v1/groups/available").json()["items"]
        }

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        """A management API call, through the newest web process."""
        headers = {"x-api-key": self.demo["management_key"]}
        return httpx.request(method, self.bases[-1] + path, headers=headers, timeout=30, **kwargs)

    def manage(self, *argv) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "manage.py", *argv],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    def start_web(self) -> None:
        process, base = start_web(self.env, log=self.log)
        self.processes.append(process)
        self.bases.append(base)

    def key(self, group: str = "default", **limits) -> tuple[str, str]:
        """A new key of the demo account with these limits (credits); (public id, secret)."""
        body = {"name": f"attack-{uuid.uuid4().hex[:6]}", "group_id": self.groups[group]}
        created = self.api("post", "/api/v1/keys", json={**body, **limits})
        assert created.status_code == 201, created.text
        return created.json()["id"], created.json()["key"]

    def books(self, key_public_id: str = "") -> dict:
        """The key's charged spend and open holds, and what is wrong with the wallet, if
        anything."""
        script = (
            "import json\n"
            "from django.db.models import Sum\n"
            "from accounts.models import Account\n"
            "from keys.models import ApiKey\n"
            "from billing.models import Hold, UsageRecord\n"
            "from billing.invariants import wallet_problems\n"
            "account = Account.objects.get()\n"
            f"key = ApiKey.objects.filter(public_id={key_public_id!r}).first()\n"
            "usage = UsageRecord.objects.filter(api_key=key)\n"
            "print(json.dumps({\n"
            "  'spent': usage.aggregate(s=Sum('credits'))['s'] or 0,\n"
            "  'calls': usage.count(),\n"
            "  'open_request_holds': Hold.objects.filter(\n"
            "      account=account, status='open', kind='request').count(),\n"
            "  'task_held': Hold.objects.filter(api_key=key, status='open', kind='task')\n"
            "      .aggregate(s=Sum('amount'))['s'] or 0,\n"
            "  'problems': wallet_problems(account.pk),\n"
            "}))\n"
        )
        done = self.manage("shell", "-c", script)
        return json.loads(done.stdout.strip().splitlines()[-1])

    def open_leases(self) -> set[str]:
        """The credit leases open now, read from the database itself: quicker than a `manage.py
        shell`, which takes seconds to start on a busy machine."""
        if url := self.env.get("DATABASE_URL"):
            with psycopg.connect(url) as connection:
                return {row[0] for row in connection.execute(OPEN_LEASES)}
        path = self.tmp_path / "bytespike.sqlite3"
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            return {row[0] for row in connection.execute(OPEN_LEASES)}

    def stop(self) -> None:
        stop_all(self.processes)


def _postgres_database() -> tuple[str, callable]:
    db = settings.DATABASES["default"]
    name = f"race_{uuid.uuid4().hex[:12]}"
    server = f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname={db['NAME']}"
    if db.get("PASSWORD"):
        server += f" password={db['PASSWORD']}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{name}"
    return url, drop


@pytest.fixture(
    scope="module",
    params=["embedded", pytest.param("postgres", marks=pytest.mark.services)],
)
def installation(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp(request.param)
    env = embedded_env(
        tmp_path,
        # Calls spend this long upstream, as real ones do: racing calls overlap in flight.
        BYTESPIKE_SANDBOX_LATENCY_MS="300",
        BYTESPIKE_SANDBOX_TOKEN_DELAY_MS="0",
        BYTESPIKE_HTTPS="0",
        BYTESPIKE_HOLD_STALE_SECONDS=str(STALE_SECONDS),
        DATABASE_POOL_MAX="8",  # the test's PostgreSQL is shared with the other tests' servers
    )
    cleanup = None
    if request.param == "postgres":
        env["DATABASE_URL"], cleanup = _postgres_database()
        env["REDIS_URL"] = os.environ["REDIS_URL"]
        env["BYTESPIKE_CACHE_PREFIX"] = f"race-{uuid.uuid4().hex[:8]}"
    install = Installation(tmp_path, env, web_processes=2 if request.param == "postgres" else 1)
    yield install
    install.stop()
    if cleanup is not None:
        cleanup()


def race(calls: list) -> list:
    """Run every ``call()`` in its own thread, released at the same moment."""
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def chat(base: str, secret: str, prompt: str = LONG_PROMPT, **extra) -> httpx.Response:
    body = {"model": "gpt-4.1", "max_tokens": 2000, **extra}
    body["messages"] = [{"role": "user", "content": prompt}]
    return httpx.post(
        f"{base}/v1/chat/completions", json=body, headers={"x-api-key": secret}, timeout=60
    )


def task_submit(base: str, secret: str) -> httpx.Response:
    body = {"model": "imagen-4", "params": {"prompt": "A paper boat"}}
    return httpx.post(
        f"{base}/v1/tasks/submit", json=body, headers={"x-api-key": secret}, timeout=60
    )


def one_call_cost(installation: Installation) -> int:
    """What one LONG_PROMPT call costs, measured on a key of its own."""
    public_id, secret = installation.key()
    assert chat(installation.bases[0], secret).status_code == 200
    return installation.books(public_id)["spent"]


def spread(installation: Installation, count: int, make) -> list:
    """``count`` calls spread over every web process."""
    bases = installation.bases
    return [lambda i=i: make(bases[i % len(bases)]) for i in range(count)]


# --- High 1: task submits ignored the key's quota and caps ------------------------------------


@pytest.mark.parametrize("limit", ["quota", "rate_limit_5h"])
def test_task_submits_stop_at_the_keys_quota_and_caps(installation, limit):
    _, secret = installation.key("gemini-default", **{limit: "0.04"})
    answers = [task_submit(installation.bases[0], secret) for _ in range(5)]
    statuses = [a.status_code for a in answers]
    # An imagen-4 image costs 0.04: the first submit fills the limit, the rest are refused.
    expected = 402 if limit == "quota" else 429
    assert statuses == [200] + [expected] * 4, statuses
    code = "quota_exceeded" if limit == "quota" else "rate_limit_exceeded"
    assert answers[1].json()["error"]["code"] == code
    if expected == 429:
        assert int(answers[1].headers["Retry-After"]) >= 1
    assert installation.books()["problems"] == []


def test_parallel_task_submits_cannot_overrun_a_quota(installation):
    _, secret = installation.key("gemini-default", quota="0.04")
    answers = race(spread(installation, 25, lambda base: task_submit(base, secret)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [402] * 24, statuses


# --- High 2: concurrent calls overran quotas and caps -----------------------------------------


@pytest.mark.parametrize("limit", ["quota", "rate_limit_5h"])
def test_parallel_calls_cannot_overrun_a_keys_limit(installation, limit):
    cost = one_call_cost(installation)
    public_id, secret = installation.key(**{limit: "0.05"})
    answers = race(spread(installation, CALLS, lambda base: chat(base, secret)))
    succeeded = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code in (402, 429)]
    assert len(succeeded) + len(refused) == CALLS, [a.status_code for a in answers]
    books = installation.books(public_id)
    # The call that crosses the limit is allowed (its worst case was held while others ran),
    # so the spend may pass the limit by less than one call, never by more.
    assert books["spent"] < 50_000 + cost, (books, cost, len(succeeded))
    assert books["calls"] == len(succeeded)
    # Sequentially the key stops after ceil(0.05 / cost) calls; racing cannot do better.
    assert len(succeeded) <= -(-50_000 // cost)
    assert books["problems"] == []


# --- Medium 3: a call open longer than the stale-hold period went free ------------------------


def test_a_stream_longer_than_the_stale_period_is_charged(installation):
    public_id, secret = installation.key()
    body = {
        "model": "gpt-4.1",
        "max_tokens": 1000,
        "stream": True,
        "messages": [{"role": "user", "content": "[sandbox:words=700] [sandbox:delay=20] go"}],
    }
    run = uuid.uuid4().hex
    swept, stopped = installation.tmp_path / f"swept-{run}", installation.tmp_path / f"stop-{run}"
    # Beat's sweep, every quarter second for as long as the stream runs.
    script = SWEEP_UNTIL.format(swept=str(swept), flag=str(stopped))
    sweeper = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=installation.env
    )
    assert wait_until(lambda: swept.exists() or sweeper.poll() is not None, 60, interval=0.05)
    assert swept.exists(), "the sweeper did not start"
    started = time.monotonic()
    with httpx.stream(
        "POST", f"{installation.bases[0]}/v1/chat/completions", json=body,
        headers={"x-api-key": secret}, timeout=60,
    ) as response:  # fmt: skip
        assert response.status_code == 200
        for _ in response.iter_bytes():
            pass
    lasted = time.monotonic() - started
    stopped.touch()
    assert sweeper.wait(timeout=30) == 0
    assert lasted > 2 * STALE_SECONDS, f"the stream took only {lasted:.1f} s"
    books = installation.books(public_id)
    assert books["calls"] == 1 and books["spent"] > 0, books
    assert books["problems"] == []


SWEEP_UNTIL = """
import os, pathlib, time
from billing.jobs import release_stale_holds
while not os.path.exists({flag!r}):
    release_stale_holds()
    pathlib.Path({swept!r}).touch()  # it has swept: the test may start
    time.sleep(0.25)  # beat's period, shortened
"""


# --- Medium 4: a killed web process locked its account out ------------------------------------


def test_a_killed_web_process_does_not_lock_its_account_out(installation):
    public_id, secret = installation.key()
    limit = 25  # the account's concurrency limit
    victim = installation.processes[0]
    slow = {
        "model": "gpt-4.1",
        "max_tokens": 2000,
        "stream": True,
        "messages": [{"role": "user", "content": "[sandbox:words=2000] [sandbox:delay=50] go"}],
    }
    opened = threading.Semaphore(0)
    statuses = []

    def hold_open():
        try:
            with httpx.stream(
                "POST", f"{installation.bases[0]}/v1/chat/completions", json=slow,
                headers={"x-api-key": secret}, timeout=60,
            ) as response:  # fmt: skip
                statuses.append(response.status_code)
                opened.release()
                for _ in response.iter_bytes():
                    pass
        except httpx.HTTPError:
            pass  # the server died under us: that is the point

    # A process another test killed holds slots in Redis until a live one sees it dead (its
    # heartbeat runs out after 3 s; every process looks out for dead ones from its start):
    # wait for that, so that all 25 slots are free.
    assert wait_until(lambda: no_dead_process_holds_a_slot(installation), 30, interval=0.2)
    threads = [threading.Thread(target=hold_open, daemon=True) for _ in range(limit)]
    for thread in threads:
        thread.start()
    for _ in range(limit):
        assert opened.acquire(timeout=30)
    assert statuses == [200] * limit, statuses
    other = installation.bases[-1]
    full = chat(other, secret, "hi", max_tokens=10)
    assert full.status_code == 429, full.text
    assert full.json()["error"]["code"] == "concurrency_limit"
    assert int(full.headers["Retry-After"]) >= 1

    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    installation.processes.pop(0)
    installation.bases.pop(0)
    installation.start_web()  # its replacement
    replaced_at = time.monotonic()

    def admitted():
        return chat(installation.bases[-1], secret, "hi", max_tokens=10).status_code == 200

    # The dead process's holds go stale after STALE_SECONDS without renewal; the replacement's
    # sweep runs every quarter of that. (How long the replacement takes to start is the
    # machine's business: on a loaded two-core runner, tens of seconds.)
    assert wait_until(admitted, timeout=30, interval=0.5), "the account stayed locked out"
    assert time.monotonic() - replaced_at < 4 * STALE_SECONDS + 5
    # One released slot admits the next call; the sweep goes on releasing the rest.
    assert wait_until(lambda: installation.books()["open_request_holds"] == 0, timeout=30)
    assert installation.books(public_id)["problems"] == []


@pytest.mark.parametrize(
    "installation", [pytest.param("postgres", marks=pytest.mark.services)], indirect=True
)
def test_a_web_process_says_it_is_alive_from_its_start(installation):
    """Before its first call: so that it never looks dead to the others, and it gives back a dead
    process's reservations without waiting for traffic. (On the embedded default the counters
    are in process memory: there are no others to tell.)"""
    url = installation.env["REDIS_URL"]
    installation.start_web()  # a new process, which takes no call here
    newcomer = str(installation.processes[-1].pid)
    prefix = installation.env["BYTESPIKE_CACHE_PREFIX"]

    def heard():
        with redis.Redis.from_url(url) as client:
            alive = client.scan_iter(match=f"{prefix}:meter:alive:*")
            return any(name.decode().rsplit("-", 2)[1] == newcomer for name in alive)

    try:
        assert wait_until(heard, timeout=30, interval=0.2)
    finally:
        installation.processes.pop().terminate()
        installation.bases.pop()


def no_dead_process_holds_a_slot(installation: Installation) -> bool:
    """No web process that is gone still has calls in flight in Redis (a live one gives them
    back once the dead one's heartbeat has run out). On the embedded default they are counted in
    the web process's memory: they went with it."""
    url = installation.env.get("REDIS_URL")
    if not url:
        return True
    live = {str(process.pid) for process in installation.processes}
    prefix = installation.env["BYTESPIKE_CACHE_PREFIX"]
    with redis.Redis.from_url(url) as client:
        for name in client.scan_iter(match=f"{prefix}:meter:owner:*"):
            owner = name.decode().rsplit(":", 1)[1]  # host-pid-nonce, or "tasks"
            if owner != "tasks" and owner.rsplit("-", 2)[1] not in live and client.hlen(name):
                return False
    return True


# --- Issue 12: admission in memory keeps the books exact ---------------------------------------

WALLET_SCRIPT = """
import json
from django.db.models import Sum
from accounts.models import Account, User
from billing.models import Hold, Wallet
from billing.services import wallet_admin_adjust
account = Account.objects.get()
wallet = Wallet.objects.get(account=account)
target = {target}
if target is not None and target != wallet.balance - wallet.held:
    wallet_admin_adjust(account=account, amount=target - (wallet.balance - wallet.held),
                        actor=User.objects.order_by("pk").first(), note="test")
    wallet.refresh_from_db()
# What calls and leases hold (tasks' holds stay: these installations run no worker).
moving = Hold.objects.filter(account=account, status="open").exclude(kind="task")
print(json.dumps({{"balance": wallet.balance, "held": wallet.held,
                  "moving": moving.aggregate(s=Sum("amount"))["s"] or 0}}))
"""

CALLS_SCRIPT = """
import json
from billing.models import LedgerEntry, UsageRecord
ids = {ids!r}
rows = {{}}
for request_id, batch, upstream in UsageRecord.objects.filter(request_id__in=ids).values_list(
        "request_id", "batch", "deployment__channel__slug"):
    rows.setdefault(request_id, []).append([batch, upstream])
entries = {{}}
for reference in LedgerEntry.objects.filter(kind="charge").values_list("reference", flat=True):
    entries[reference] = entries.get(reference, 0) + 1
print(json.dumps({{
    "rows": rows,
    "entries": {{r: entries.get(r, 0)
                for r in set(ids) | {{b for v in rows.values() for b, _ in v}}}},
}}))
"""


def wallet(installation: Installation, available: int | None = None) -> dict:
    """The demo wallet (after setting what it has available to ``available``)."""
    done = installation.manage("shell", "-c", WALLET_SCRIPT.format(target=available))
    return json.loads(done.stdout.strip().splitlines()[-1])


def image(base: str, secret: str) -> httpx.Response:
    body = {"model": "gpt-image-1", "prompt": "A paper boat", "size": "1024x1024"}
    return httpx.post(
        f"{base}/v1/images/generations", json=body, headers={"x-api-key": secret}, timeout=120
    )


def image_cost(installation: Installation) -> int:
    public_id, secret = installation.key()
    assert image(installation.bases[0], secret).status_code == 200
    return installation.books(public_id)["spent"]


def settled(installation: Installation) -> None:
    """Wait until no lease or call holds anything (idle leases go back within seconds)."""
    assert wait_until(lambda: wallet(installation)["moving"] == 0, timeout=60, interval=1)


def test_200_calls_against_a_wallet_that_covers_10(installation):
    price = image_cost(installation)
    _, secret = installation.key()
    settled(installation)
    before = wallet(installation, available=10 * price)
    try:
        answers = race(spread(installation, 200, lambda base: image(base, secret)))
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) == 10, sorted(statuses)
        assert set(statuses) <= {200, 402, 429}, sorted(statuses)
        refused = [a for a in answers if a.status_code == 402]
        assert {a.json()["error"]["code"] for a in refused} <= {"insufficient_balance"}
        settled(installation)
        after = wallet(installation)
        assert after["balance"] == before["balance"] - 10 * price, (before, after, price)
        assert installation.books()["problems"] == []
    finally:
        wallet(installation, available=1_000 * M)


def test_200_calls_against_a_key_quota_that_covers_5(installation):
    price = image_cost(installation)
    public_id, secret = installation.key(quota=f"{5 * price / M:.6f}")
    answers = race(spread(installation, 200, lambda base: image(base, secret)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 5, sorted(statuses)
    assert set(statuses) <= {200, 402, 429}, sorted(statuses)
    books = installation.books(public_id)
    assert books["spent"] == 5 * price and books["calls"] == 5, books
    assert books["problems"] == []


BUDGET_SCRIPT = """
import json
from django.utils import timezone
from accounts.models import Account, User
from billing.budgets import budget_set, period_of, spent
account = Account.objects.get()
month, _, _ = period_of(timezone.now(), __import__("zoneinfo").ZoneInfo("UTC"))
already = spent(f"account:{{account.pk}}", month)
budget_set(account=account, scope="account", monthly=(already + {more}) if {more} else None,
           lifetime=None, hard=True, actor=User.objects.order_by("pk").first())
print(json.dumps({{"already": already}}))
"""


def account_budget(installation: Installation, more: int) -> int:
    """A hard monthly budget on the demo account that leaves ``more`` to spend (0: none);
    what the account spent this month before it. Every web process reads it within a second."""
    done = installation.manage("shell", "-c", BUDGET_SCRIPT.format(more=more))
    time.sleep(1.2)  # billing.budgets.RULES_SECONDS: how long a process may keep the old rules
    return json.loads(done.stdout.strip().splitlines()[-1])["already"]


def test_200_calls_against_an_account_budget_that_covers_5(installation):
    price = image_cost(installation)
    public_id, secret = installation.key()
    account_budget(installation, 5 * price)
    try:
        answers = race(spread(installation, 200, lambda base: image(base, secret)))
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) == 5, sorted(statuses)
        assert set(statuses) <= {200, 402, 429}, sorted(statuses)
        refused = {a.json()["error"]["code"] for a in answers if a.status_code == 402}
        assert refused <= {"budget_exceeded"}, refused
        books = installation.books(public_id)
        assert books["spent"] == 5 * price and books["calls"] == 5, books
        assert books["problems"] == []
    finally:
        account_budget(installation, 0)


def test_tasks_images_and_text_racing_for_one_tiny_quota(installation):
    """Submits, sync images and text calls share a key whose quota covers a few of them."""
    quota = 200_000  # five imagen-4 images of 0.04
    public_id, secret = installation.key("gemini-default", quota=f"{quota / M:.6f}")

    def text(base):
        body = {"model": "gemini-2.5-flash", "max_tokens": 400,
                "messages": [{"role": "user", "content": "[sandbox:words=300] go"}]}  # fmt: skip
        return httpx.post(f"{base}/v1/chat/completions", json=body,
                          headers={"x-api-key": secret}, timeout=60)  # fmt: skip

    def picture(base):
        body = {"model": "imagen-4", "prompt": "A paper boat"}
        return httpx.post(f"{base}/v1/images/generations", json=body,
                          headers={"x-api-key": secret}, timeout=120)  # fmt: skip

    kinds = [lambda b: task_submit(b, secret), picture, text]
    bases = installation.bases
    answers = race([lambda i=i: kinds[i % 3](bases[i % len(bases)]) for i in range(60)])
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 402, 429}, sorted(statuses)
    # Once the calls are settled: what they spent and what the tasks hold (their estimate:
    # these installations run no worker) stays within the quota.
    assert wait_until(lambda: installation.books()["open_request_holds"] == 0, timeout=60)
    books = installation.books(public_id)
    assert statuses.count(200) == books["calls"] + books["task_held"] // 40_000, books
    assert 0 < books["spent"] + books["task_held"] <= quota, books
    assert books["problems"] == []


def test_a_web_process_killed_under_load_loses_no_answered_call(installation):
    """Every call answered 200 before the kill has one usage row, in one ledger entry."""
    _, secret = installation.key()
    answered = kill_under_load(installation, secret, installation.bases[:1])
    assert answered_once(installation, answered)


def test_a_web_process_killed_under_load_never_overruns_a_budget(installation):
    """A hard monthly budget with room for a few dozen calls: a web process is killed under load
    and replaced, and racing calls go on until the budget refuses them. Every call answered
    before the kill is billed once, and the month's spend never passes the budget (the killed
    process's calls in flight count until they are swept, which only refuses sooner)."""
    public_id, secret = installation.key()
    assert chat(installation.bases[0], secret, "hi", max_tokens=20).status_code == 200
    assert wait_until(lambda: installation.books(public_id)["spent"] > 0, timeout=30)  # settled
    price = installation.books(public_id)["spent"]
    already = account_budget(installation, 80 * price)
    budget = already + 80 * price
    try:
        answered = kill_under_load(installation, secret, list(installation.bases))
        answered_once(installation, answered)
        answers = race(spread(installation, 120,
                              lambda base: chat(base, secret, "hi", max_tokens=20)))  # fmt: skip
        # Racing calls may meet the account's concurrency limit first: then one at a time.
        for _ in range(100):
            if any(a.status_code == 402 for a in answers):
                break
            answers.append(chat(installation.bases[0], secret, "hi", max_tokens=20))
        refused = {a.json()["error"]["code"] for a in answers if a.status_code == 402}
        assert refused == {"budget_exceeded"}, [a.status_code for a in answers]
    finally:
        spent = account_budget(installation, 0)  # what the month spent, and no budget after
    assert already < spent <= budget, (already, spent, budget)
    assert installation.books()["problems"] == []


FAULTS_SCRIPT = """
from catalogue.models import Channel
Channel.objects.filter(slug="openai").update(sandbox_failure_rate={rate})
"""


def test_a_web_process_killed_while_the_primary_upstream_flaps_bills_each_answer_once(
    installation,
):
    """Failover attacked: GPT-4.1's primary deployment (openai) fails 40% of its attempts and its
    backup (azure) answers; the load is spread over every web process and one is killed. Each
    answered call has one usage row, naming the deployment its X-ByteSpike-Upstream header
    named; failed attempts are free; the books balance."""
    installation.manage("shell", "-c", FAULTS_SCRIPT.format(rate=0.4))
    try:
        time.sleep(CATALOGUE_TTL_SECONDS + 1)  # every web process routes by the new faults
        _, secret = installation.key()
        answered = kill_under_load(installation, secret, list(installation.bases))
        upstreams = answered_once(installation, answered)
        assert {"openai", "azure"} <= set(upstreams.values()), upstreams
        for request_id, upstream in upstreams.items():
            assert answered[request_id] == upstream, (request_id, answered[request_id], upstream)
    finally:
        installation.manage("shell", "-c", FAULTS_SCRIPT.format(rate=0))


def kill_under_load(installation: Installation, secret: str, bases: list[str]) -> dict:
    """Calls from 12 threads spread over ``bases`` until a lease is open and many were
    answered; then the first web process is killed (SIGKILL) and replaced. The request ids
    answered 200, with the upstream that answered each."""
    victim = installation.processes[0]
    answered, stop = {}, threading.Event()

    def load(base):
        while not stop.is_set():
            try:
                answer = chat(base, secret, "hi", max_tokens=20)
            except httpx.HTTPError:
                return  # the process died under us
            if answer.status_code == 200:
                answered[answer.headers["X-Request-ID"]] = answer.headers["X-ByteSpike-Upstream"]

    threads = [
        threading.Thread(target=load, args=(bases[i % len(bases)],), daemon=True) for i in range(12)
    ]
    for thread in threads:
        thread.start()

    def busy():  # a lease is open (batches of many calls), and many calls were answered
        return installation.open_leases() and len(answered) > 20

    assert wait_until(busy, 60, interval=0.05), f"no lease, or few answers ({len(answered)})"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    installation.processes.pop(0)
    installation.bases.pop(0)
    installation.start_web()
    assert len(answered) > 20, len(answered)
    return dict(answered)


def answered_once(installation: Installation, answered) -> dict:
    """Check that each answered call has one usage row, in one ledger entry, and that the dead
    process's lease was swept and the wallet is sound; the upstream each row names."""
    # The dead process's lease is swept once it is not renewed (STALE_SECONDS).
    assert wait_until(lambda: not installation.open_leases(), timeout=30, interval=0.2)
    found = calls(installation, list(answered))
    upstreams = {}
    for request_id in answered:
        rows = found["rows"].get(request_id)
        assert rows is not None and len(rows) == 1, (request_id, rows)
        ((batch, upstreams[request_id]),) = rows
        # A call admitted against a lease is in its batch's entry; one with its own hold, in
        # its own charge entry.
        entry = batch or request_id
        assert found["entries"][entry] == 1, (request_id, entry)
    assert installation.books()["problems"] == []
    return upstreams


def calls(installation: Installation, ids: list[str]) -> dict:
    done = installation.manage("shell", "-c", CALLS_SCRIPT.format(ids=ids))
    return json.loads(done.stdout.strip().splitlines()[-1])


def _start_redis(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def up():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    assert wait_until(up, timeout=20), "redis-server did not start"
    return process


@pytest.mark.services
def test_with_redis_down_calls_are_admitted_by_the_database_and_charged_once(tmp_path):
    """Two web processes on PostgreSQL lose their Redis (their own, so that nothing else is
    disturbed): calls are admitted by holds checked under the wallet's lock, the key's quota
    still stops them, and when an empty Redis comes back the counters start from the books."""
    port = free_port()
    redis_server = _start_redis(port)
    env = embedded_env(
        tmp_path, BYTESPIKE_SANDBOX_LATENCY_MS="100", BYTESPIKE_SANDBOX_TOKEN_DELAY_MS="0",
        BYTESPIKE_HTTPS="0", BYTESPIKE_HOLD_STALE_SECONDS=str(STALE_SECONDS),
        DATABASE_POOL_MAX="8", REDIS_URL=f"redis://127.0.0.1:{port}/0",
    )  # fmt: skip
    env["DATABASE_URL"], cleanup = _postgres_database()
    install = None
    try:
        install = Installation(tmp_path, env, web_processes=2)
        price = image_cost(install)
        public_id, secret = install.key(quota=f"{5 * price / M:.6f}")
        bases = install.bases
        assert image(bases[0], secret).status_code == 200  # counted in Redis

        redis_server.kill()
        redis_server.wait(timeout=10)
        down = [image(bases[i % 2], secret).status_code for i in range(8)]
        assert down == [200] * 4 + [402] * 4, down

        redis_server = _start_redis(port)  # empty, as after a restart without persistence
        back = [image(bases[i % 2], secret).status_code for i in range(4)]
        assert back == [402] * 4, back
        books = install.books(public_id)
        assert books["calls"] == 5 and books["spent"] == 5 * price, books
        assert books["problems"] == []
        # Counting in Redis again: a new key's quota is kept there.
        _, fresh = install.key(quota=f"{2 * price / M:.6f}")
        again = [image(bases[i % 2], fresh).status_code for i in range(3)]
        assert again == [200, 200, 402], again
    finally:
        if install is not None:
            install.stop()
        redis_server.kill()
        cleanup()


LEASES_SCRIPT = """
import json
from billing.models import Hold, LedgerEntry
leases = list(Hold.objects.filter(kind="lease").values_list("reference", "status"))
keys = LedgerEntry.objects.filter(reference__in=[r for r, _ in leases], kind="release")
print(json.dumps({"leases": leases, "returned": sorted(set(
    key.rsplit(":", 1)[0] for key in keys.values_list("idempotency_key", flat=True)
    if key.rsplit(":", 1)[1].startswith("return")))}))
"""


def test_a_stopped_web_process_gives_its_leases_back(installation):
    """SIGTERM (a deploy's restart): the process's credit leases go back to the wallet at once,
    not after the stale sweep (which the embedded default, with no other process, never runs)."""
    _, secret = installation.key()
    victim, base = installation.processes[0], installation.bases[0]
    stop = threading.Event()

    def load():  # busy until the end: the lease is never idle long enough to go back
        while not stop.is_set():
            try:
                chat(base, secret, "hi", max_tokens=20)
            except httpx.HTTPError:
                return

    threads = [threading.Thread(target=load, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    opened = wait_until(installation.open_leases, 60, interval=0.05)
    victim.terminate()
    stop.set()
    # uvicorn stops gracefully, then ends by the signal it caught (as a shell expects).
    assert victim.wait(timeout=30) in (0, -signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    assert opened, "a busy account opened no lease"
    installation.processes.pop(0)
    installation.bases.pop(0)
    after = json.loads(installation.manage("shell", "-c", LEASES_SCRIPT).stdout.splitlines()[-1])
    installation.start_web()
    assert opened <= set(after["returned"]), after
    assert installation.books()["problems"] == []
