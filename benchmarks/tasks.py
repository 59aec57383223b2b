"""Task query throughput and how fast status changes reach watchers.

    uv run python benchmarks/tasks.py [--requests 3000] [--concurrency 16]

On PostgreSQL (its own database ``bytespike_bench_tasks``, created and dropped here;
``BENCH_DATABASE_URL`` points at the server) with Redis, one uvicorn process:

- ``POST /v1/tasks/query`` requests per second at the given concurrency (target: 600), with
  p50/p99 latency, over 200 tasks of one account;
- the delay from a status change (made by another process, as a worker would) to the SSE event
  on ``/v1/tasks/stream/{id}`` (Redis pub/sub wakes the stream);
- the delay from a status change to the next poll of the console's task card that shows it
  (the card polls every 2 seconds, as htmx does).
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import threading
import time

import httpx
from _common import (
    ROOT,
    database_urls,
    drop_database,
    fresh_database,
    manage,
    shell,
    start_server,
)

BENCH_DB = "bytespike_bench_tasks"
PORT = 9111

SETUP = """
import json
from accounts.services import account_create
from accounts.models import User
from accounts import keys
from allauth.account.models import EmailAddress
from billing.services import wallet_top_up
from generation.demo_catalogue import seed_catalogue
from generation.models import AIModel
from generation.services import task_submit
user = User.objects.create_user("bench@example.com", "bench-password-1")
EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
account = account_create(owner=user, name="Bench")
wallet_top_up(account=account, amount=10**13, reference="bench")
groups = seed_catalogue()
_, key = keys.api_key_issue(account=account, group=groups["gemini-default"], name="b", actor=user)
model = AIModel.objects.get(slug="veo-3-fast")
ids = [task_submit(account_id=account.pk, api_key_id=None, model=model, multiplier=1,
                   params={"prompt": f"bench {n}", "duration": 4}).task.public_id
       for n in range(200)]
print(json.dumps({"key": key, "tasks": ids}))
"""

# Another process changes a task the way a worker does (claim, then progress), printing when.
CHANGER = """
import json, time
from generation.models import Task
from generation import services
task = Task.objects.get(public_id={task_id!r})
services.task_advance(task.pk, task.lease)  # claim (pending -> running) and submit upstream
task.refresh_from_db()
stamps = [time.time()]
for progress in range(5, 100, 5):
    time.sleep(0.5)
    stamps.append(time.time())
    services._progress(task, progress)
print(json.dumps(stamps))
"""


async def query_load(base: str, key: str, tasks: list[str], requests: int, concurrency: int):
    samples, errors = [], 0
    queue = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers={"x-api-key": key}, limits=limits) as c:

        async def worker():
            nonlocal errors
            for n in queue:
                started = time.perf_counter()
                r = await c.post("/v1/tasks/query", json={"task_id": tasks[n % len(tasks)]})
                samples.append(time.perf_counter() - started)
                errors += r.status_code != 200

        for _ in range(50):
            await c.post("/v1/tasks/query", json={"task_id": tasks[0]})
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    samples.sort()
    return {
        "rps": round(requests / elapsed, 1),
        "p50_ms": round(statistics.median(samples) * 1000, 1),
        "p99_ms": round(samples[int(len(samples) * 0.99)] * 1000, 1),
        "errors": errors,
    }


def sse_delays(base: str, key: str, task_id: str, env: dict) -> list[float]:
    arrivals: list[tuple[float, dict]] = []
    ready = threading.Event()

    def read():
        with httpx.stream("GET", f"{base}/v1/tasks/stream/{task_id}",
                          headers={"x-api-key": key}, timeout=60) as response:  # fmt: skip
            for line in response.iter_lines():
                if line.startswith("data: "):
                    arrivals.append((time.time(), json.loads(line[6:])))
                    ready.set()
                if len(arrivals) >= 21:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(10)
    stamps = json.loads(shell(env, CHANGER.format(task_id=task_id)))
    reader.join(15)
    # Event 0 is the snapshot at connect; then one per change, in order.
    changes = arrivals[1:]
    return [round((at - stamp) * 1000, 1) for (at, _), stamp in zip(changes, stamps, strict=False)]


def poll_delays(base: str, task_id: str, env: dict) -> list[float] | None:
    """Poll the console's task card every 2 s (as htmx does) while another process changes the
    task; the delay from each change to the first poll that shows it."""
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/auth/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    login = {"login": "bench@example.com", "password": "bench-password-1"}
    client.post(
        "/auth/login/",
        data={**login, "csrfmiddlewaretoken": token[1]},
        headers={"Referer": f"{base}/auth/login/"},
    )
    url = f"/tasks/{task_id}/card/"
    if client.get(url, headers={"HX-Request": "true"}).status_code not in (200, 286):
        return None  # no task card in this version of the console
    seen: list[tuple[float, int]] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            response = client.get(url, headers={"HX-Request": "true"})
            match = re.search(r'data-progress="(\d+)"', response.text)
            seen.append((time.time(), int(match[1]) if match else -1))
            stop.wait(2.0)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stamps = json.loads(shell(env, CHANGER.format(task_id=task_id)))
    time.sleep(2.5)
    stop.set()
    poller.join(5)
    delays = []
    for number, stamp in enumerate(stamps[1:], start=1):
        progress = number * 5
        shown = next((at for at, value in seen if value >= progress and at >= stamp), None)
        if shown:
            delays.append(round((shown - stamp) * 1000, 1))
    return delays


def summary(values: list[float]) -> dict:
    values = sorted(values)
    return {
        "n": len(values),
        "p50_ms": statistics.median(values),
        "max_ms": values[-1],
        "mean_ms": round(statistics.mean(values), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    admin, bench_url = database_urls(BENCH_DB)
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "CELERY_BROKER_URL": "memory://localhost/",
        "BYTESPIKE_CACHE_PREFIX": "bench-tasks",
        "BYTESPIKE_DATA_DIR": str(ROOT / "var" / "bench-tasks"),
        "BYTESPIKE_HTTPS": "0",
        "BYTESPIKE_SANDBOX_VIDEO_SECONDS": "600",
        "LOG_LEVEL": "WARNING",
    }
    fresh_database(admin, BENCH_DB, env)
    manage(env, "collectstatic", "--noinput", "-v0")
    world = json.loads(shell(env, SETUP))
    server = start_server(
        [sys.executable, "-m", "uvicorn", "console.asgi:application", "--lifespan", "off",
         "--port", str(PORT), "--no-access-log", "--log-level", "warning"],
        env, PORT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{PORT}"
    try:
        query = asyncio.run(
            query_load(base, world["key"], world["tasks"], args.requests, args.concurrency)
        )
        print("query:", json.dumps(query), flush=True)
        sse = summary(sse_delays(base, world["key"], world["tasks"][1], env))
        print("sse delay after a change:", json.dumps(sse), flush=True)
        polls = poll_delays(base, world["tasks"][2], env)
        print(
            "task card poll delay after a change:",
            json.dumps(summary(polls)) if polls else "no task card in the console yet",
            flush=True,
        )
    finally:
        server.terminate()
        server.wait(timeout=20)
        drop_database(admin, BENCH_DB)


if __name__ == "__main__":
    main()
