"""Soak with faults: mixed traffic on a small production-shaped cluster while its dependencies
fail, then the books.

    uv run python benchmarks/soak.py [--duration 300] [--max-requests 200000] [--concurrency 12]
                                     [--no-faults] [--drain 240] [--keep]

Everything on loopback: PostgreSQL (its own database ``bytespike_soak``, created and dropped here;
``BENCH_DATABASE_URL`` points at the server), Redis (database 8 as the cache, 9 as the broker,
both flushed at the start), two web processes (uvicorn, two ports, requests alternate between
them), two Celery workers and one beat. The built-in sandbox upstream fails 5% of calls (503),
times out 2% and cuts 5% of streams halfway; sandbox images and videos finish in seconds.

For ``--duration`` seconds (or ``--max-requests``), ``--concurrency`` clients send a mix of text
calls on the four protocols (whole and streamed), sync images, image and video task submits
(each followed by polling ``/v1/tasks/query`` or by an SSE reader on ``/v1/tasks/stream``,
a few cancelled) and console page loads (dashboard, keys, usage, wallet, tasks) with a logged-in
session, over three funded accounts with three keys each. With ``--faults`` (the default),
at spaced times: PostgreSQL stopped for 10 s, Redis shut down (nothing saved) for 5 s, one Celery
worker SIGKILLed and replaced, one web process SIGKILLed and restarted. While PostgreSQL or Redis
is down (or coming back), ``/tmp/soak-faults.lock`` holds this script's pid, for others who run
tests against the same servers. PostgreSQL and Redis are running again (and the lock gone) when the
script exits, however it exits.

Then, after a bounded drain: every task terminal, no hold open, every wallet's balance equal to
its ledger and to top-ups minus charges, usage rows equal to charges, every successful call billed
once and every failed one free (matched by X-Request-ID). Every non-2xx answer is classified: a
mapped upstream failure (502 ``upstream_error``, 504 ``upstream_timeout``), a 503
``service_unavailable`` while PostgreSQL or Redis is down (and a few seconds after), a refused or
broken connection on the killed web process's port, or unexpected. Prints a summary and writes
``var/soak/<timestamp>.json``.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
from _common import (
    ROOT,
    database_urls,
    drop_database,
    fresh_database,
    healthy,
    manage,
    shell,
    wait_healthy,
)

SOAK_DB = "bytespike_soak"
WEB_PORTS = (9131, 9132)
REDIS_PORT = 6379
CACHE_DB, BROKER_DB = 8, 9
PG_DOWN_SECONDS = 10
REDIS_DOWN_SECONDS = 5
RESTART_DELAY_SECONDS = 1  # a supervisor's restart delay
OUTAGE_GRACE_SECONDS = 15  # after a dependency returns, 503s may still drain out
KILLED_GRACE_SECONDS = 2  # connections to the killed process found dead just after its restart
REQUEST_TIMEOUT = 30  # a client gives up: a hang
FOLLOWERS_MAX = 60
LOGIN_EVERY_SECONDS = 2.5  # under django-allauth's 30 log-ins a minute from one address
BACKOFF_SECONDS = 0.5  # a client whose connection was refused or cut waits before the next call
OUT = ROOT / "var" / "soak"
# Others run test suites against the same PostgreSQL and Redis: this file says (with our pid) that
# one of them is stopped on purpose; it exists only while one is down or coming back.
FAULT_LOCK = Path("/tmp/soak-faults.lock")  # noqa: S108 (a name agreed with them)

TEXT_MODEL = {
    "default": "gpt-4.1-mini",
    "gemini-default": "gemini-2.5-flash",
    "claude-default": "claude-haiku-4-5",
}
IMAGE_MODEL = {"default": "gpt-image-1", "gemini-default": "imagen-4"}
VIDEO_MODEL = {"default": "sora-2", "gemini-default": "veo-3-fast"}
PROTOCOLS = ("chat", "responses", "messages", "gemini")
MIX = {"text": 30, "stream": 30, "image": 4, "task": 8, "console": 14}
CONSOLE_PAGES = {
    "dashboard": "/",
    "keys": "/keys/",
    "usage": "/usage/",
    "wallet": "/wallet/",
    "tasks": "/tasks/",
}
TERMINAL = ("completed", "failed", "cancelled")
TOPUP = 100_000 * 1_000_000  # micro-credits per account

# The gateway's own answers for a failed upstream (SPEC §4), in each protocol's envelope: OpenAI's
# code, Anthropic's error type, Google's status.
MAPPED_UPSTREAM = {
    (502, "upstream_error"),
    (502, "api_error"),
    (502, "UNAVAILABLE"),
    (504, "upstream_timeout"),
    (504, "api_error"),
    (504, "DEADLINE_EXCEEDED"),
}
UNAVAILABLE = {
    (503, "service_unavailable"),
    (503, "overloaded_error"),
    (503, "UNAVAILABLE"),
    (503, "html"),
}

SETUP = """
import json
from django.conf import settings
from django.test import Client
from keys import services as keys
from accounts.models import User
from accounts.services import account_create
from allauth.account.models import EmailAddress
from billing.services import wallet_top_up
from catalogue.demo import seed_catalogue
groups = seed_catalogue()
world = []
for n in range({accounts}):
    user = User.objects.create_user(f"soak{{n}}@example.com", "soak-password-1")
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    account = account_create(owner=user, name=f"Soak {{n}}")
    wallet_top_up(account=account, amount={topup}, reference=f"soak-{{n}}")
    issued = [
        {{"group": slug, "key": keys.api_key_issue(
            account=account, group=groups[slug], name=f"soak {{slug}}", actor=user)[1]}}
        for slug in {groups!r}
    ]
    browser = Client()
    browser.force_login(user)
    session = browser.cookies[settings.SESSION_COOKIE_NAME]
    world.append({{"account": account.pk, "keys": issued, "email": user.email,
                   "password": "soak-password-1",
                   "cookie": f"{{settings.SESSION_COOKIE_NAME}}={{session.value}}"}})
print(json.dumps(world))
"""

CHECK = """
import json
from billing.models import Wallet
from billing.invariants import wallet_problems
print(json.dumps({str(w.account_id): wallet_problems(w.account_id) for w in Wallet.objects.all()}))
"""


# --- Results ---------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str  # text, stream, image, task_submit, task_query, task_stream, task_cancel, console
    name: str  # the detailed class (protocol, model family or page)
    port: int
    start: float  # seconds since the load began
    ms: float
    status: int = 0
    code: str = ""
    outcome: str = "ok"  # ok, http_error, stream_error, truncated, broken, refused, timeout, error
    request_id: str = ""
    ttfb_ms: float | None = None
    category: str = ""  # filled in by classify()

    @property
    def end(self) -> float:
        return self.start + self.ms / 1000


@dataclass
class Fault:
    name: str
    start: float
    down_at: float = 0.0
    up_at: float = 0.0
    detail: dict = field(default_factory=dict)


class Clock:
    def __init__(self):
        self.zero = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.zero


def error_code(content_type: str, body: str) -> str:
    """Our error code in whichever envelope answered: OpenAI's code, Anthropic's type, Google's
    status; "html" for a console page."""
    if "text/html" in content_type:
        return "html"
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return "not_json"
    if not isinstance(error, dict):
        return "no_error_object"
    code = error.get("code")
    if isinstance(code, str) and code:
        return code
    return str(error.get("status") or error.get("type") or code or "")


def stream_outcome(protocol: str, body: str) -> str:
    """ok (the stream's proper end), stream_error (an error event: the upstream failed
    mid-stream) or truncated (neither)."""
    if protocol == "chat":
        failed, finished = '{"error"' in body, "data: [DONE]" in body
    elif protocol == "responses":
        failed, finished = "response.failed" in body, "response.completed" in body
    elif protocol == "messages":
        failed, finished = "event: error" in body, "message_stop" in body
    elif protocol == "task":
        failed, finished = False, any(f"event: {status}" in body for status in TERMINAL)
    else:
        failed, finished = '"error"' in body, '"finishReason"' in body
    return "stream_error" if failed else "ok" if finished else "truncated"


# --- The cluster -----------------------------------------------------------------------------


class Cluster:
    """Two web processes, two Celery workers and beat, each in its own process group."""

    def __init__(self, env: dict, logs):
        self.env = env
        self.logs = logs
        self.webs: dict[int, subprocess.Popen] = {}
        self.workers: list[subprocess.Popen] = []
        self.beat: subprocess.Popen | None = None
        self.spawned = 0

    def _spawn(self, name: str, *argv: str) -> subprocess.Popen:
        self.spawned += 1
        log = (self.logs / f"{self.spawned:02d}-{name}.log").open("w")
        return subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )

    def start_web(self, port: int) -> subprocess.Popen:
        self.webs[port] = self._spawn(
            f"web-{port}",
            "-m",
            "uvicorn",
            "console.asgi:application",
            "--lifespan",
            "off",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        )
        return self.webs[port]

    def start_worker(self) -> subprocess.Popen:
        number = self.spawned + 1
        worker = self._spawn(
            "worker",
            "-m",
            "celery",
            "-A",
            "console",
            "worker",
            "--concurrency",
            "2",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "WARNING",
            "-n",
            f"soak{number}@%h",
        )
        self.workers.append(worker)
        return worker

    def start(self) -> None:
        for port in WEB_PORTS:
            self.start_web(port)
        for _ in range(2):
            self.start_worker()
        self.beat = self._spawn(
            "beat",
            "-m",
            "celery",
            "-A",
            "console",
            "beat",
            "-l",
            "WARNING",
            "-s",
            str(self.logs / "celerybeat-schedule"),
        )
        for port in WEB_PORTS:
            if not wait_healthy(port, 60):
                raise RuntimeError(f"the web process on {port} did not start")

    @staticmethod
    def kill(process: subprocess.Popen, sig=signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)

    def stop(self) -> None:
        processes = [*self.webs.values(), *self.workers, *([self.beat] if self.beat else [])]
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill(process)


# --- Services (PostgreSQL and Redis) ---------------------------------------------------------


def pg_cluster() -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"), key=float)[-1]
    return [version, "main"]


def pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *pg_cluster(), action],
        check=False,
        capture_output=True,
        timeout=120,
    )


def pg_up(admin_url: str) -> bool:
    try:
        with psycopg.connect(admin_url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def redis_up() -> bool:
    result = subprocess.run(
        ["redis-cli", "-p", str(REDIS_PORT), "ping"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() == "PONG"


def redis_start() -> None:
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=False,
        capture_output=True,
        cwd="/",
    )


def fault_lock_take() -> None:
    FAULT_LOCK.write_text(f"{os.getpid()}\n")


def fault_lock_release() -> None:
    """Remove the lock if it is ours."""
    with contextlib.suppress(FileNotFoundError):
        if FAULT_LOCK.read_text().strip() == str(os.getpid()):
            FAULT_LOCK.unlink()


def ensure_services(admin_url: str) -> bool:
    """PostgreSQL and Redis running, whatever happened; then the fault lock is released."""
    if not pg_up(admin_url):
        pg_ctl("start")
    if not redis_up():
        redis_start()
    for _ in range(100):
        if pg_up(admin_url) and redis_up():
            fault_lock_release()
            return True
        time.sleep(0.2)
    print(
        f"WARNING: PostgreSQL or Redis did not come back; start them by hand, then remove "
        f"{FAULT_LOCK}",
        file=sys.stderr,
    )
    return False


async def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(interval)
    return False


# --- Traffic ---------------------------------------------------------------------------------


def text_call(protocol: str, model: str, prompt: str, stream: bool) -> tuple[str, dict, dict]:
    """Path, JSON body and extra headers of a small text call in ``protocol``."""
    messages = [{"role": "user", "content": prompt}]
    if protocol == "chat":
        return (
            "/v1/chat/completions",
            {"model": model, "messages": messages, "max_tokens": 64, "stream": stream},
            {},
        )
    if protocol == "responses":
        return (
            "/v1/responses",
            {"model": model, "input": prompt, "max_output_tokens": 64, "stream": stream},
            {},
        )
    if protocol == "messages":
        body = {"model": model, "max_tokens": 64, "messages": messages, "stream": stream}
        return "/v1/messages", body, {"anthropic-version": "2023-06-01"}
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"maxOutputTokens": 64},
    }
    return f"/v1beta/models/{model}:{method}", body, {}


class Load:
    def __init__(self, world: list[dict], args, clock: Clock):
        self.world = world
        self.args = args
        self.clock = clock
        self.results: list[Result] = []
        self.tasks: dict[str, dict] = {}  # task id -> what the client saw
        self.sent = 0
        self.stopping = False
        self.followers: set[asyncio.Task] = set()
        self.turn = 0
        self.rng = random.Random(8)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        self.client = httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits)

    def port(self) -> int:
        self.turn += 1
        return WEB_PORTS[self.turn % len(WEB_PORTS)]

    async def request(
        self,
        kind: str,
        name: str,
        method: str,
        path: str,
        *,
        protocol="",
        port: int | None = None,
        client: httpx.AsyncClient | None = None,
        **kwargs,
    ) -> tuple[Result, httpx.Response | None]:
        """One request, timed and classified; streamed (read to the end) when ``protocol``."""
        port = port or self.port()
        client = client or self.client
        result = Result(kind, name, port, self.clock.now(), 0)
        began = time.monotonic()
        response = None
        try:
            if protocol:
                async with client.stream(
                    method, f"http://127.0.0.1:{port}{path}", **kwargs
                ) as response:
                    chunks = []
                    async for chunk in response.aiter_text():
                        if result.ttfb_ms is None:
                            result.ttfb_ms = (time.monotonic() - began) * 1000
                        chunks.append(chunk)
                    body = "".join(chunks)
                if response.status_code < 300:
                    result.outcome = stream_outcome(protocol, body)
            else:
                response = await client.request(method, f"http://127.0.0.1:{port}{path}", **kwargs)
                body = response.text
            result.status = response.status_code
            if result.status >= 300:
                content_type = response.headers.get("content-type", "")
                result.outcome, result.code = "http_error", error_code(content_type, body)
            result.request_id = response.headers.get("x-request-id", "")
        except httpx.ConnectError:
            result.outcome = "refused"
        except httpx.TimeoutException:
            result.outcome = "timeout"
        except (httpx.RemoteProtocolError, httpx.ReadError):
            result.outcome = "broken"
        except httpx.HTTPError as error:
            result.outcome, result.code = "error", type(error).__name__
        result.ms = (time.monotonic() - began) * 1000
        self.results.append(result)
        return result, response

    def pick_key(self, groups=None) -> tuple[dict, dict]:
        account = self.rng.choice(self.world)
        keys = [k for k in account["keys"] if groups is None or k["group"] in groups]
        return account, self.rng.choice(keys)

    async def text(self, stream: bool) -> None:
        _, key = self.pick_key()
        protocol = self.rng.choice(PROTOCOLS)
        prompt = f"Soak {self.rng.randrange(10**6)}: say something short."
        path, body, headers = text_call(protocol, TEXT_MODEL[key["group"]], prompt, stream)
        await self.request(
            "stream" if stream else "text",
            protocol,
            "POST",
            path,
            json=body,
            headers={"x-api-key": key["key"], **headers},
            protocol=protocol if stream else "",
        )

    async def image(self) -> None:
        _, key = self.pick_key(IMAGE_MODEL)
        body = {
            "model": IMAGE_MODEL[key["group"]],
            "prompt": "A soak test lighthouse",
            "size": "1024x1024",
            "quality": "low",
        }
        await self.request(
            "image",
            body["model"],
            "POST",
            "/v1/images/generations",
            json=body,
            headers={"x-api-key": key["key"]},
        )

    async def task(self) -> None:
        _, key = self.pick_key(IMAGE_MODEL)
        video = self.rng.random() < 0.5
        if video:
            # A few prompts, so the workers' render cache does some of the work.
            body = {
                "model": VIDEO_MODEL[key["group"]],
                "duration": 4,
                "prompt": f"A soak test harbour at dusk, take {self.rng.randrange(3)}",
            }
        else:
            body = {
                "model": IMAGE_MODEL[key["group"]],
                "prompt": "A soak test tower",
                "size": "1024x1024",
            }
        headers = {"x-api-key": key["key"]}
        result, response = await self.request(
            "task_submit",
            "video" if video else "image",
            "POST",
            "/v1/tasks/submit",
            json=body,
            headers=headers,
        )
        if result.outcome != "ok":
            return
        task_id = response.json()["task_id"]
        self.tasks[task_id] = {
            "submitted": result.end,
            "status": "pending",
            "family": "video" if video else "image",
            "terminal_at": None,
        }
        if len(self.followers) < FOLLOWERS_MAX:
            how = self.rng.choices(["poll", "stream", "cancel"], [45, 45, 10])[0]
            self.tasks[task_id]["followed"] = how
            follower = asyncio.create_task(self.follow(task_id, headers, how))
            self.followers.add(follower)
            follower.add_done_callback(self.followers.discard)

    async def follow(self, task_id: str, headers: dict, how: str) -> None:
        """Watch a task to its end as a client would: polling, or an SSE reader that reconnects
        with Last-Event-ID, or a poll and then a cancel."""
        seen = self.tasks[task_id]
        deadline = time.monotonic() + self.args.duration + self.args.drain
        while time.monotonic() < deadline and seen["status"] not in TERMINAL:
            if how == "stream":
                result, _ = await self.request(
                    "task_stream",
                    "sse",
                    "GET",
                    f"/v1/tasks/stream/{task_id}",
                    protocol="task",
                    headers=headers,
                    timeout=httpx.Timeout(REQUEST_TIMEOUT, read=60),
                )
                if result.outcome == "ok":
                    await self.query(task_id, headers)  # what it ended as
                    break
                await asyncio.sleep(1)
                continue
            await self.query(task_id, headers)
            if how == "cancel" and seen["status"] not in TERMINAL:
                await self.request(
                    "task_cancel", "cancel", "POST", f"/v1/tasks/cancel/{task_id}", headers=headers
                )
                how = "poll"
            await asyncio.sleep(1)

    async def query(self, task_id: str, headers: dict) -> None:
        result, response = await self.request(
            "task_query",
            "query",
            "POST",
            "/v1/tasks/query",
            json={"task_id": task_id},
            headers=headers,
        )
        if result.outcome == "ok":
            seen = self.tasks[task_id]
            seen["status"] = response.json()["status"]
            if seen["status"] in TERMINAL and seen["terminal_at"] is None:
                seen["terminal_at"] = result.end

    async def console(self) -> None:
        account = self.rng.choice(self.world)
        page = self.rng.choice(list(CONSOLE_PAGES))
        await self.request(
            "console", page, "GET", CONSOLE_PAGES[page], headers={"Cookie": account["cookie"]}
        )

    async def login(self, account: dict) -> None:
        """The log-in form, as a browser fills it: the page (CSRF token), then the post, which
        answers a redirect to the console."""
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as browser:
            port = self.port()
            page, response = await self.request(
                "login", "page", "GET", "/auth/login/", port=port, client=browser
            )
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text or "")
            if page.outcome != "ok" or token is None:
                return
            form = {"login": account["email"], "password": account["password"],
                    "csrfmiddlewaretoken": token[1]}  # fmt: skip
            result, _ = await self.request(
                "login", "post", "POST", "/auth/login/", port=port, client=browser, data=form,
                headers={"Referer": f"http://127.0.0.1:{port}/auth/login/"},
            )  # fmt: skip
            if result.status == 302:
                result.outcome, result.code = "ok", ""

    async def logins(self) -> None:
        while not self.stopping:
            await self.login(self.rng.choice(self.world))
            await asyncio.sleep(LOGIN_EVERY_SECONDS)

    async def user(self) -> None:
        kinds, weights = list(MIX), list(MIX.values())
        while not self.stopping and self.sent < self.args.max_requests:
            self.sent += 1
            kind = self.rng.choices(kinds, weights)[0]
            before = len(self.results)
            if kind in ("text", "stream"):
                await self.text(kind == "stream")
            else:
                await getattr(self, kind)()
            if any(r.outcome in ("refused", "broken") for r in self.results[before:]):
                await asyncio.sleep(BACKOFF_SECONDS)

    async def run(self) -> float:
        """Load for the duration (or until max requests); the seconds it ran."""
        users = [asyncio.create_task(self.user()) for _ in range(self.args.concurrency)]
        users.append(asyncio.create_task(self.logins()))
        await asyncio.wait(users, timeout=self.args.duration)
        self.stopping = True
        seconds = self.clock.now()
        # Requests under way finish (or time out): their answers count.
        await asyncio.wait(users, timeout=REQUEST_TIMEOUT + 5)
        for user in users:
            user.cancel()
        return seconds


# --- Faults ----------------------------------------------------------------------------------


async def faults(cluster: Cluster, clock: Clock, duration: float, admin_url: str, log: list):
    """PostgreSQL, Redis, a worker and a web process, one after the other, spaced out."""
    plan = [(0.15, postgres_restart), (0.35, redis_restart), (0.55, worker_kill), (0.75, web_kill)]
    for share, fault in plan:
        await asyncio.sleep(max(0.0, duration * share - clock.now()))
        record = Fault(fault.__name__, clock.now())
        log.append(record)
        print(f"[{clock.now():6.1f} s] fault: {record.name}", flush=True)
        await fault(cluster, clock, record, admin_url)
        print(f"[{clock.now():6.1f} s]   back ({record.detail})", flush=True)


async def postgres_restart(cluster, clock, record: Fault, admin_url: str) -> None:
    fault_lock_take()
    await asyncio.to_thread(pg_ctl, "stop")
    record.down_at = clock.now()
    await asyncio.sleep(PG_DOWN_SECONDS)
    await asyncio.to_thread(pg_ctl, "start")
    await wait_for(lambda: pg_up(admin_url), 60)
    record.up_at = clock.now()
    await asyncio.to_thread(ensure_services, admin_url)


async def redis_restart(cluster, clock, record: Fault, admin_url: str) -> None:
    fault_lock_take()
    subprocess.run(
        ["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"], capture_output=True, check=False
    )
    await wait_for(lambda: not redis_up(), 10)
    record.down_at = clock.now()
    await asyncio.sleep(REDIS_DOWN_SECONDS)
    await asyncio.to_thread(redis_start)
    await wait_for(redis_up, 30)
    record.up_at = clock.now()
    await asyncio.to_thread(ensure_services, admin_url)


async def worker_kill(cluster: Cluster, clock, record: Fault, admin_url: str) -> None:
    victim = cluster.workers.pop(0)
    await asyncio.to_thread(cluster.kill, victim)
    record.down_at = clock.now()
    await asyncio.sleep(RESTART_DELAY_SECONDS)
    cluster.start_worker()
    record.up_at = clock.now()


async def web_kill(cluster: Cluster, clock, record: Fault, admin_url: str) -> None:
    port = WEB_PORTS[0]
    await asyncio.to_thread(cluster.kill, cluster.webs[port])
    record.down_at = clock.now()
    record.detail["port"] = port
    await asyncio.sleep(RESTART_DELAY_SECONDS)
    started = clock.now()
    cluster.start_web(port)
    await wait_for(lambda: healthy(port), 60)
    record.up_at = clock.now()
    record.detail["start_to_healthy_s"] = round(record.up_at - started, 1)


# --- Analysis --------------------------------------------------------------------------------


def classify(results: list[Result], windows: list[Fault]) -> None:
    """Each result's category: ok, upstream (a mapped upstream failure), outage (a 503 while
    PostgreSQL or Redis was down), killed (the killed web process's port while it was down) or
    unexpected."""
    outages = [w for w in windows if w.name in ("postgres_restart", "redis_restart")]
    web = [w for w in windows if w.name == "web_kill"]

    def during(result: Result, window: Fault, grace: float) -> bool:
        return result.end >= window.start and result.start <= window.up_at + grace

    for r in results:
        if r.outcome == "ok":
            r.category = "ok"
        elif r.outcome == "stream_error" or (r.status, r.code) in MAPPED_UPSTREAM:
            r.category = "upstream"
        elif (r.status, r.code) in UNAVAILABLE and any(
            during(r, w, OUTAGE_GRACE_SECONDS) for w in outages
        ):
            r.category = "outage"
        elif r.outcome in ("refused", "broken", "truncated") and any(
            r.port == w.detail.get("port") and during(r, w, KILLED_GRACE_SECONDS) for w in web
        ):
            r.category = "killed"
        else:
            r.category = "unexpected"


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    values = sorted(values)

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(len(values) * q))], 1)

    return {
        "p50": round(statistics.median(values), 1),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(values[-1], 1),
    }


def class_table(results: list[Result]) -> dict:
    by_kind: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
        by_kind[f"{r.kind}:{r.name}"].append(r)
    table = {}
    for kind, rows in sorted(by_kind.items()):
        answered = [r for r in rows if r.status]
        table[kind] = {
            "requests": len(rows),
            "ok": sum(r.category == "ok" for r in rows),
            "latency_ms": percentiles([r.ms for r in answered]),
        }
        ttfb = [r.ttfb_ms for r in answered if r.ttfb_ms is not None]
        if ttfb and kind.startswith(("stream", "task_stream")):
            table[kind]["first_byte_ms"] = percentiles(ttfb)
    return table


def answer(r: Result) -> str:
    """What the client got, in a word or two: "200 ok", "502 upstream_error", "200
    stream_error", "refused"."""
    if not r.status:
        return r.outcome
    return f"{r.status} {r.code or r.outcome}"


def outcome_counts(results: list[Result]) -> dict:
    return dict(Counter(map(answer, results)).most_common())


def window_report(window: Fault, results: list[Result], tasks: dict) -> dict:
    """What clients saw from the fault's start until a while after its end, and how long
    until things worked again."""
    horizon = window.up_at + 30
    seen = [r for r in results if r.end >= window.start and r.start <= horizon]
    after = sorted(
        (r for r in results if r.start >= window.up_at and r.category == "ok"), key=lambda r: r.end
    )
    report = {
        "fault": window.name,
        "started_s": round(window.start, 1),
        "down_s": round(window.down_at, 1),
        "back_s": round(window.up_at, 1),
        **window.detail,
        "answers": dict(Counter(answer(r) for r in seen).most_common()),
        "unexpected": sum(r.category == "unexpected" for r in seen),
        "slowest_ms": round(max((r.ms for r in seen), default=0), 1),
        "first_success_after_back_s": round(after[0].end - window.up_at, 2) if after else None,
    }
    down = [r for r in seen if window.down_at <= r.start <= window.up_at]
    report["while_down"] = dict(Counter(answer(r) for r in down).most_common())
    report["while_down_slowest_ms"] = round(max((r.ms for r in down), default=0), 1)
    # The failure window: the first to the last answer the fault caused (503s, refused
    # connections), and when the last of them came relative to the dependency being back.
    failed = [r for r in seen if r.category not in ("ok", "upstream")]
    if failed:
        report["failures"] = len(failed)
        report["failures_from_s"] = round(min(r.start for r in failed), 1)
        report["failures_until_s"] = round(max(r.end for r in failed), 1)
        report["last_failure_after_back_s"] = round(max(r.end for r in failed) - window.up_at, 2)
    if window.name == "web_kill":
        port = window.detail["port"]
        by_port = Counter((r.port, r.outcome) for r in seen if r.outcome != "ok")
        report["failures_by_port"] = {f"{p} {o}": n for (p, o), n in by_port.items()}
        back = [r for r in after if r.port == port]
        report["first_success_on_port_after_back_s"] = (
            round(back[0].end - window.up_at, 2) if back else None
        )
    if window.name in ("redis_restart", "worker_kill"):
        # Tasks submitted around the fault, and how long they took to end (the reaper revives
        # those whose messages were lost).
        # Only tasks a client followed to their end have an end time.
        around = [
            t
            for t in tasks.values()
            if t.get("followed") and window.start - 10 <= t["submitted"] <= window.up_at + 5
        ]
        took = [t["terminal_at"] - t["submitted"] for t in around if t["terminal_at"]]
        report["followed_tasks_around"] = len(around)
        report["their_slowest_end_s"] = round(max(took), 1) if took else None
        report["their_unfinished"] = sum(t["terminal_at"] is None for t in around)
    return report


def sql_books(url: str) -> dict:
    """The invariants, in plain SQL."""
    with psycopg.connect(url) as conn:
        wallets = conn.execute("""
            SELECT w.account_id, w.balance, w.held, w.in_flight,
                   COALESCE(SUM(l.amount), 0),
                   COALESCE(SUM(l.amount) FILTER (WHERE l.kind = 'topup'), 0),
                   COALESCE(-SUM(l.amount) FILTER (WHERE l.kind = 'charge'), 0),
                   COALESCE(SUM(l.amount) FILTER (WHERE l.kind NOT IN ('topup', 'charge')), 0),
                   COUNT(l.id) FILTER (WHERE l.kind = 'charge'),
                   (SELECT COUNT(*) FROM billing_usagerecord u WHERE u.account_id = w.account_id),
                   (SELECT COALESCE(SUM(credits), 0) FROM billing_usagerecord u
                     WHERE u.account_id = w.account_id)
            FROM billing_wallet w LEFT JOIN billing_ledgerentry l ON l.account_id = w.account_id
            GROUP BY w.account_id, w.balance, w.held, w.in_flight
            ORDER BY w.account_id""").fetchall()
        accounts = {}
        for row in wallets:
            (  # PostgreSQL's SUM of bigints is a numeric
                account,
                balance,
                held,
                in_flight,
                ledger,
                topups,
                charges,
                other,
                charge_rows,
                usage_rows,
                usage_credits,
            ) = map(int, row)
            accounts[str(account)] = {
                "balance": balance,
                "ledger_sum": ledger,
                "topups": topups,
                "charges": charges,
                "held": held,
                "in_flight": in_flight,
                "charge_rows": charge_rows,
                "usage_rows": usage_rows,
                "usage_credits": usage_credits,
                "balanced": balance == ledger == topups - charges and other == 0,
                # Charges are per call (a hold of its own) or per settlement batch (a lease):
                # their sum is what the usage rows say.
                "usage_matches_charges": usage_credits == charges,
            }
        open_holds = conn.execute(
            "SELECT COUNT(*) FROM billing_hold WHERE status = 'open'"
        ).fetchone()[0]
        tasks = dict(
            conn.execute("SELECT status, COUNT(*) FROM generation_task GROUP BY status").fetchall()
        )
        # A charge names one call (one usage row) or one batch (its usage rows, whose sum it is).
        unmatched_charges = conn.execute("""
            SELECT COUNT(*) FROM billing_ledgerentry l WHERE l.kind = 'charge' AND NOT (
              (SELECT COUNT(*) FROM billing_usagerecord u WHERE u.request_id = l.reference) = 1
              OR (l.reference LIKE 'batch_%' AND -l.amount = (
                SELECT COALESCE(SUM(u.credits), 0) FROM billing_usagerecord u
                WHERE u.batch = l.reference AND u.account_id = l.account_id)))
        """).fetchone()[0]
        # Every usage row is in exactly one charge: its own, or its batch's.
        rows_not_in_one_charge = conn.execute("""
            SELECT COUNT(*) FROM billing_usagerecord u WHERE (
              SELECT COUNT(*) FROM billing_ledgerentry l WHERE l.kind = 'charge'
                AND l.account_id = u.account_id
                AND l.reference = CASE WHEN u.batch = '' THEN u.request_id ELSE u.batch END
            ) <> 1
        """).fetchone()[0]
        task_billing = conn.execute("""
            SELECT
              COUNT(*) FILTER (WHERE t.status = 'completed' AND u.id IS NULL),
              COUNT(*) FILTER (WHERE t.status = 'failed' AND u.id IS NOT NULL)
            FROM generation_task t LEFT JOIN billing_usagerecord u ON u.request_id = t.public_id
        """).fetchone()
    return {
        "accounts": accounts,
        "open_holds": open_holds,
        "tasks": tasks,
        "charges_without_their_usage": unmatched_charges,
        "usage_rows_not_in_one_charge": rows_not_in_one_charge,
        "completed_tasks_unbilled": task_billing[0],
        "failed_tasks_billed": task_billing[1],
    }


def reconcile(url: str, results: list[Result]) -> dict:
    """Successful calls billed, failed ones free, matched by X-Request-ID (the hold's and the
    usage row's reference)."""
    billable = [r for r in results if r.kind in ("text", "stream", "image") and r.request_id]
    with psycopg.connect(url) as conn:
        billed = {
            row[0]
            for row in conn.execute(
                "SELECT request_id FROM billing_usagerecord WHERE request_id = ANY(%s)",
                [[r.request_id for r in billable]],
            )
        }
    outcome = Counter()
    for r in billable:
        paid = r.request_id in billed
        if r.outcome == "ok":
            outcome["success billed" if paid else "SUCCESS NOT BILLED"] += 1
        elif r.outcome in ("http_error", "stream_error"):
            outcome["FAILURE BILLED" if paid else "failure free"] += 1
        else:  # the connection broke: billed for what was delivered, or free
            outcome[f"{r.outcome}, {'billed' if paid else 'free'}"] += 1
    return dict(outcome)


def drain_state(url: str) -> tuple[int, int]:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            pending = conn.execute(
                "SELECT COUNT(*) FROM generation_task WHERE status IN ('pending', 'running')"
            ).fetchone()[0]
            holds = conn.execute(
                "SELECT COUNT(*) FROM billing_hold WHERE status = 'open'"
            ).fetchone()[0]
            return pending, holds
    except psycopg.Error:
        return -1, -1


async def drain(load: Load, url: str, bound: float, clock: Clock) -> dict:
    """Wait, within ``bound`` seconds, for the followers, every task to end and every hold to
    close (beat releases the holds of requests whose process was killed)."""
    began = time.monotonic()
    deadline = began + bound
    if load.followers:
        await asyncio.wait(set(load.followers), timeout=bound)
    state = (-1, -1)
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(drain_state, url)
        if state == (0, 0):
            break
        await asyncio.sleep(2)
    for follower in load.followers:
        follower.cancel()
    return {
        "seconds": round(time.monotonic() - began, 1),
        "unfinished_tasks": state[0],
        "open_holds": state[1],
    }


# --- Main ------------------------------------------------------------------------------------


def environment(url: str, data_dir) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DATABASE_POOL_MAX": "10",
        "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/{CACHE_DB}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/{BROKER_DB}",
        "BYTESPIKE_CACHE_PREFIX": "soak",
        "BYTESPIKE_CELERY_QUEUE": "soak",
        "BYTESPIKE_DATA_DIR": str(data_dir),
        "BYTESPIKE_HTTPS": "0",
        "BYTESPIKE_SANDBOX_FAILURE_RATE": "0.05",
        "BYTESPIKE_SANDBOX_TIMEOUT_RATE": "0.02",
        "BYTESPIKE_SANDBOX_CUT_RATE": "0.05",
        "BYTESPIKE_SANDBOX_LATENCY_MS": "20",
        "BYTESPIKE_SANDBOX_TOKEN_DELAY_MS": "5",
        "BYTESPIKE_SANDBOX_VIDEO_SECONDS": "2",
        # The reaper (beat, every 30 s) revives tasks idle this long; beat (every 60 s) releases
        # the holds of requests whose web process died.
        "BYTESPIKE_TASK_STALE_SECONDS": "15",
        "BYTESPIKE_HOLD_STALE_SECONDS": "60",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("BYTESPIKE_CALLBACK_ALLOW_HTTP", None)
    return env


def summary(report: dict) -> None:
    print(
        f"\n=== soak: {report['load']['seconds']} s, {report['load']['requests']} requests, "
        f"{report['load']['rps']} requests/s ({report['load']['rps_answered']} answered), "
        f"faults {'on' if report['faults'] else 'off'}"
    )
    print(f"\n{'class':28} {'requests':>8} {'ok':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>8}")
    for name, row in report["classes"].items():
        lat = row["latency_ms"] or {"p50": 0, "p95": 0, "p99": 0, "max": 0}
        print(
            f"{name:28} {row['requests']:8} {row['ok']:7} {lat['p50']:7} {lat['p95']:7} "
            f"{lat['p99']:7} {lat['max']:8}"
        )
    print("(ms, whole answers; streams to their last byte)")
    print("\nanswers:", json.dumps(report["answers"]))
    print("categories:", json.dumps(report["categories"]))
    for row in report["unexpected"][:20]:
        print("  UNEXPECTED", json.dumps(row))
    for window in report["fault_windows"]:
        print("fault:", json.dumps(window))
    print("drain:", json.dumps(report["drain"]))
    print("books:", json.dumps({k: v for k, v in report["books"].items() if k != "accounts"}))
    for account, row in report["books"]["accounts"].items():
        print(f"  account {account}: {json.dumps(row)}")
    print("wallet_problems:", json.dumps(report["wallet_problems"]))
    print("billing by request id:", json.dumps(report["reconciliation"]))
    print(
        f"\nINVARIANTS {'HOLD' if report['invariants_hold'] else 'BROKEN'}: "
        f"{json.dumps(report['invariants'])}"
    )


async def soak(args, env: dict, world: list[dict], url: str, admin_url: str, logs) -> dict:
    clock = Clock()
    cluster = Cluster(env, logs)
    windows: list[Fault] = []
    try:
        cluster.start()
        clock.zero = time.monotonic()
        load = Load(world, args, clock)
        fault_task = None
        if args.faults:
            fault_task = asyncio.create_task(
                faults(cluster, clock, args.duration, admin_url, windows)
            )
        seconds = await load.run()
        print(
            f"[{clock.now():6.1f} s] load stopped after {len(load.results)} requests; draining",
            flush=True,
        )
        if fault_task is not None:
            if not fault_task.done():
                fault_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fault_task
        drained = await drain(load, url, args.drain, clock)
        await load.client.aclose()
        raw = {"results": [asdict(r) for r in load.results], "tasks": load.tasks}
        (logs / "results.json").write_text(json.dumps(raw))
    finally:
        ensure_services(admin_url)
        cluster.stop()
    results = load.results
    classify(results, windows)
    books = sql_books(url)
    problems = json.loads(shell(env, CHECK))
    reconciliation = reconcile(url, results)
    categories = Counter(r.category for r in results)
    invariants = {
        "all_tasks_terminal": all(status in TERMINAL for status in books["tasks"]),
        "no_open_hold": books["open_holds"] == 0,
        "balance_equals_ledger_equals_topups_minus_charges": all(
            a["balanced"] for a in books["accounts"].values()
        ),
        "nothing_held_or_in_flight": all(
            a["held"] == 0 and a["in_flight"] == 0 for a in books["accounts"].values()
        ),
        "usage_rows_equal_charges": all(
            a["usage_matches_charges"] for a in books["accounts"].values()
        )
        and books["charges_without_their_usage"] == 0,
        # With the web process killed mid-load: every call answered has one usage row
        # (reconcile) in exactly one ledger charge, its own or its settlement batch's.
        "every_usage_row_in_one_charge": books["usage_rows_not_in_one_charge"] == 0,
        "tasks_billed_by_outcome": books["completed_tasks_unbilled"] == 0
        and books["failed_tasks_billed"] == 0,
        "wallet_problems_empty": not any(problems.values()),
        "successes_billed_failures_free": not any(key.isupper() for key in reconciliation),
        "no_unexpected_answer": categories["unexpected"] == 0,
    }
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "arguments": vars(args),
        "faults": args.faults,
        "load": {
            "seconds": round(seconds, 1),
            "requests": len(results),
            "rps": round(sum(r.start <= seconds for r in results) / seconds, 1),
            # Without the refused connections to the killed web process.
            "rps_answered": round(
                sum(r.start <= seconds and r.status > 0 for r in results) / seconds, 1
            ),
            "tasks_submitted": len(load.tasks),
        },
        "classes": class_table(results),
        "answers": outcome_counts(results),
        "categories": dict(categories),
        "unexpected": [asdict(r) for r in results if r.category == "unexpected"][:200],
        "fault_windows": [window_report(w, results, load.tasks) for w in windows],
        "drain": drained,
        "books": books,
        "wallet_problems": problems,
        "reconciliation": reconciliation,
        "invariants": invariants,
        "invariants_hold": all(invariants.values()),
    }


def interrupted(signum, frame):
    """SIGTERM ends the run as Ctrl-C does: through the finally blocks that restore services."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300, help="seconds of load")
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=12, help="clients sending at once")
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--drain", type=float, default=240, help="at most this long, after")
    parser.add_argument("--faults", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--keep", action="store_true", help="keep the database and data dir")
    args = parser.parse_args()

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs = OUT / stamp
    logs.mkdir(parents=True)
    data_dir = OUT / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    admin_url, url = database_urls(SOAK_DB)
    env = environment(url, data_dir)

    signal.signal(signal.SIGTERM, interrupted)
    try:
        for db in (CACHE_DB, BROKER_DB):
            subprocess.run(
                ["redis-cli", "-p", str(REDIS_PORT), "-n", str(db), "flushdb"],
                check=True,
                capture_output=True,
            )
        fresh_database(admin_url, SOAK_DB, env)
        manage(env, "collectstatic", "--noinput", "-v0")
        script = SETUP.format(accounts=args.accounts, topup=TOPUP, groups=list(TEXT_MODEL))
        world = json.loads(shell(env, script))
        print(
            f"soak: {len(world)} accounts, {sum(len(a['keys']) for a in world)} keys; "
            f"logs in {logs.relative_to(ROOT)}",
            flush=True,
        )
        report = asyncio.run(soak(args, env, world, url, admin_url, logs))
    finally:
        ensure_services(admin_url)
        if not args.keep:
            drop_database(admin_url, SOAK_DB)
            shutil.rmtree(data_dir, ignore_errors=True)
    summary(report)
    path = OUT / f"{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {path.relative_to(ROOT)}")
    sys.exit(0 if report["invariants_hold"] else 1)


if __name__ == "__main__":
    main()
