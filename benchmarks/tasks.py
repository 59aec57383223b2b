"""Task API throughput on PostgreSQL + Redis and on the embedded default, and how fast status
changes reach watchers.

    uv run python benchmarks/tasks.py            # about 3 minutes
    uv run python benchmarks/tasks.py --quick    # about 1.5 minutes: shorter runs, no watchers
    uv run python benchmarks/tasks.py --profile  # and a py-spy profile of the queries on PG

For each backend, one ByteSpike web process started as production starts it (the README's
uvicorn flags, see benchmarks/_common.py) over one account with 200 video tasks (the sandbox's
``veo-3-fast``, kept running for minutes; no worker runs, so submitted tasks stay pending):

- PostgreSQL + Redis: its own database ``bytespike_bench_tasks`` (created and dropped here;
  ``BENCH_DATABASE_URL`` points at the server), Redis as cache and Celery broker
  (``BENCH_REDIS_URL``, default database 12, 13 for the broker, under a queue of its own whose
  keys are deleted at the end);
- the embedded default: a fresh data dir, SQLite, the filesystem broker, no Redis.

It measures, at concurrency 16 (closed loop, the load generator of benchmarks/_load.py):

- ``POST /v1/tasks/query`` calls per second over the 200 tasks (target: 1,000);
- ``POST /v1/tasks/submit`` calls per second, each a new task with its hold and its job
  published to the broker (target: 200);

then that every submit made a task and the wallet's books hold. On PostgreSQL, unless
``--quick`` or ``--no-watchers``: the delay from a status change (made by another process, as a
worker would) to the SSE event on ``/v1/tasks/stream/{id}`` (Redis pub/sub wakes the stream),
and to the console's task card showing it (the card polls every 2 seconds, as htmx does).
A markdown table with the targets and whether each is met goes to stdout.
"""

import argparse
import json
import re
import shutil
import statistics
import subprocess
import threading
import time
from datetime import datetime

import httpx
from _common import (
    BROKER_URL,
    REDIS_URL,
    ROOT,
    bench_env,
    cpu_seconds,
    database_urls,
    drop_database,
    fresh_database,
    log,
    manage,
    redis_forget,
    shell,
    start_server,
    stop_server,
    web_command,
)
from _load import generator, throughput
from _profile import print_profile, profile

BENCH_DB = "bytespike_bench_tasks"
PORT = 9111
PREFIX = "bench-tasks"
QUERY_TARGET = 1000
SUBMIT_TARGET = 200
SUBMIT = {"model": "veo-3-fast", "prompt": "A lighthouse at dusk", "duration": 4}
LABELS = {"pg": "PostgreSQL + Redis", "sqlite": "embedded (SQLite)"}

SETUP = """
import json
from accounts.services import account_create
from accounts.models import User
from keys import services as keys
from allauth.account.models import EmailAddress
from billing.services import wallet_top_up
from catalogue.demo import seed_catalogue
from catalogue.models import AIModel
from generation.services import task_submit
user = User.objects.create_user("bench@example.com", "bench-password-1")
EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
account = account_create(owner=user, name="Bench")
wallet_top_up(account=account, amount=10**15, reference="bench")
groups = seed_catalogue()
_, key = keys.api_key_issue(account=account, group=groups["gemini-default"], name="b", actor=user)
model = AIModel.objects.get(slug="veo-3-fast")
ids = [task_submit(account_id=account.pk, api_key_id=None, model=model, multiplier=1,
                   params={"prompt": f"bench {n}", "duration": 4}).task.public_id
       for n in range(200)]
print(json.dumps({"key": key, "tasks": ids, "account": account.pk}))
"""

CHECK = """
import json
from billing.invariants import wallet_problems
from generation.models import Task
print(json.dumps({{"tasks": Task.objects.filter(account_id={account}).count(),
                   "problems": wallet_problems({account})}}))
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


def sse_delays(base: str, key: str, task_id: str, env: dict) -> list[float]:
    arrivals: list[tuple[float, dict]] = []
    ready = threading.Event()

    def read():
        with httpx.stream(
            "GET", f"{base}/v1/tasks/stream/{task_id}", headers={"x-api-key": key}, timeout=60
        ) as response:
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


def run(name: str, env: dict, args, *, prepare, cleanup, watchers: bool) -> dict:
    out: dict = {}
    prepare()
    try:
        world = json.loads(shell(env, SETUP))
        headers = {"authorization": f"Bearer {world['key']}"}
        logpath = ROOT / "var" / "bench" / f"tasks-{name}-web.log"
        server = start_server(
            web_command(PORT),
            env,
            PORT,
            timeout=60,
            stdout=logpath.open("w"),
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{PORT}"
        cpu = lambda: cpu_seconds(server.pid)  # noqa: E731
        try:
            queries = [{"task_id": task} for task in world["tasks"]]
            out["query"] = throughput(
                [f"{base}/v1/tasks/query"],
                headers,
                queries,
                concurrency=args.concurrency,
                seconds=args.seconds,
                warmup=args.warmup,
                tool=args.generator,
                cpu=cpu,
            )
            log(f"{name} query: {json.dumps(out['query'])}")
            if args.profile and name == "pg":
                stem = ROOT / "var" / "bench" / f"tasks-{name}-query-profile"
                out["profile"] = profile(
                    server.pid,
                    f"{base}/v1/tasks/query",
                    headers,
                    queries,
                    args.profile_seconds,
                    stem,
                    args.generator,
                )
            out["submit"] = throughput(
                [f"{base}/v1/tasks/submit"],
                headers,
                [SUBMIT],
                concurrency=args.concurrency,
                seconds=args.seconds,
                warmup=args.warmup,
                tool=args.generator,
                cpu=cpu,
            )
            log(f"{name} submit: {json.dumps(out['submit'])}")
            if watchers:
                out["sse"] = summary(sse_delays(base, world["key"], world["tasks"][1], env))
                log(f"{name} SSE delay after a change: {json.dumps(out['sse'])}")
                polls = poll_delays(base, world["tasks"][2], env)
                out["card"] = summary(polls) if polls else None
                log(f"{name} task card delay after a change: {json.dumps(out['card'])}")
        finally:
            stop_server(server)
        books = json.loads(shell(env, CHECK.format(account=world["account"])))
        # 200 set-up tasks and one per submit that answered (warm-up included); a few more may
        # have been in flight when the load generator stopped counting.
        submit = out["submit"]
        answered = (
            submit["calls"] - submit["errors"] + submit["warmup_calls"] - submit["warmup_errors"]
        )
        books["expected"] = [200 + answered, 200 + answered + 2 * args.concurrency]
        books["consistent"] = (
            books["expected"][0] <= books["tasks"] <= books["expected"][1] and not books["problems"]
        )
        out["books"] = books
        log(f"{name} books: {json.dumps(books)}")
    finally:
        cleanup()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, no watcher delays")
    parser.add_argument("--seconds", type=float, help="each throughput run (default 10, quick 4)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", default="pg,sqlite", help="which of pg,sqlite")
    parser.add_argument("--no-watchers", action="store_true", help="skip the SSE and card delays")
    parser.add_argument("--generator", default="auto", choices=["auto", "wrk", "aiohttp"])
    parser.add_argument("--profile", action="store_true", help="py-spy the PG queries")
    parser.add_argument("--profile-seconds", type=int, default=10)
    args = parser.parse_args()
    args.seconds = args.seconds or (4 if args.quick else 10)
    args.warmup = 1 if args.quick else 2
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)
    log(f"load generator: {generator(args.generator)}")
    admin_url, bench_url = database_urls(BENCH_DB)
    pg_dir = ROOT / "var" / "bench-tasks-pg"
    sqlite_dir = ROOT / "var" / "bench-tasks-sqlite"
    pg_env = bench_env(
        DATABASE_URL=bench_url,
        REDIS_URL=REDIS_URL,
        CELERY_BROKER_URL=BROKER_URL,
        BYTESPIKE_CACHE_PREFIX=PREFIX,
        BYTESPIKE_CELERY_QUEUE=PREFIX,
        BYTESPIKE_DATA_DIR=str(pg_dir),
        BYTESPIKE_SANDBOX_VIDEO_SECONDS="600",
    )
    sqlite_env = bench_env(BYTESPIKE_DATA_DIR=str(sqlite_dir))

    def pg_prepare():
        shutil.rmtree(pg_dir, ignore_errors=True)
        fresh_database(admin_url, BENCH_DB, pg_env)
        manage(pg_env, "collectstatic", "--noinput", "-v0")  # the console's login page

    def pg_cleanup():
        drop_database(admin_url, BENCH_DB)
        shutil.rmtree(pg_dir, ignore_errors=True)
        redis_forget(PREFIX)

    def sqlite_prepare():
        shutil.rmtree(sqlite_dir, ignore_errors=True)
        manage(sqlite_env, "migrate", "-v0")

    results: dict = {"failures": {}}
    runs = {
        "pg": lambda: run(
            "pg",
            pg_env,
            args,
            prepare=pg_prepare,
            cleanup=pg_cleanup,
            watchers=not (args.quick or args.no_watchers),
        ),
        "sqlite": lambda: run(
            "sqlite",
            sqlite_env,
            args,
            prepare=sqlite_prepare,
            cleanup=lambda: shutil.rmtree(sqlite_dir, ignore_errors=True),
            watchers=False,
        ),
    }
    for name in args.only.split(","):
        try:
            results[name] = runs[name]()
        except Exception as error:  # report it, go on with the other backend
            results["failures"][name] = f"{type(error).__name__}: {error}"
            log(f"{name} FAILED: {error}")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")  # noqa: DTZ005 (a local file name)
    out = ROOT / "var" / "bench" / f"tasks-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    print()
    print(report(results, args))
    print(
        "\n(per server CPU s: calls / CPU time of the web process, PostgreSQL and Redis not "
        "counted: what it would answer with a core to itself)"
    )
    for name, failure in results["failures"].items():
        print(f"\n{LABELS[name]} not measured: {failure}")
    if "profile" in results.get("pg", {}):
        print_profile(results["pg"]["profile"], "the PostgreSQL web process answering queries")
    print(f"\nresults: {out}")


def report(results: dict, args) -> str:
    c = args.concurrency
    rows = [
        "| measure | backend | calls/s | per server CPU s | p50 ms | p99 ms | failed | target "
        "| met? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label, target in (
        ("query", "`POST /v1/tasks/query`", QUERY_TARGET),
        ("submit", "`POST /v1/tasks/submit`", SUBMIT_TARGET),
    ):
        for name in LABELS:
            row = results.get(name, {}).get(key)
            if not row:
                rows.append(
                    f"| {label}, c{c} | {LABELS[name]} | — | | | | | >= {target:,}/s | n/a |"
                )
                continue
            met = row["calls_per_s"] >= target and not row["errors"]
            rows.append(
                f"| {label}, c{c} | {LABELS[name]} | {row['calls_per_s']:,.1f} | "
                f"{row.get('calls_per_cpu_s') or 0:,.1f} | "
                f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} | "
                f">= {target:,}/s | {'yes' if met else '**no**'} |"
            )
    for name in LABELS:
        books = results.get(name, {}).get("books")
        if books:
            rows.append(
                f"| books: a task per submit, wallet holds | {LABELS[name]} | | | | | | | "
                f"{'yes' if books['consistent'] else '**no**'} ({books['tasks']:,} tasks) |"
            )
    pg = results.get("pg", {})
    for key, label in (
        ("sse", "status change to SSE event"),
        ("card", "status change to console task card"),
    ):
        if pg.get(key):
            rows.append(
                f"| {label} | {LABELS['pg']} | | | {pg[key]['p50_ms']:.1f} | max "
                f"{pg[key]['max_ms']:.1f} | | | |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
