"""Failover under flapping upstreams: 16 clients call a model whose primary deployment fails 30%
of its calls (503) and times out 5%, with a healthy secondary behind it.

    uv run python benchmarks/failover.py                 # both backends, about 2 minutes
    uv run python benchmarks/failover.py --only sqlite --calls 3000

What runs (all on 127.0.0.1): ByteSpike as production starts it (benchmarks/_common.py), on
PostgreSQL + Redis and on the embedded default, with full billing. The model ``flaky-chat`` has
two deployments on two sandbox channels: ``primary`` (priority 1, the channel's sandbox faults:
failure rate 0.30, timeout rate 0.05) and ``secondary`` (priority 0, no faults). The sandbox
answers at once (no added latency), so what is measured is what failover adds: a sandbox
timeout fails at once, where a real one would first wait for the transport's timeout. A quarter
of the calls are streamed. The primary's breaker opens on runs of failures and keeps most calls
away from it; ``--no-breakers`` makes every call try the primary first, which measures what
each failed attempt costs.

Measured from the clients: the share of calls that succeed (target >= 99.9%), latency p50/p99
of the calls the primary served and of those that failed over to the secondary (the
``X-ByteSpike-Upstream`` header says which), and what failover added (p99 of failed-over calls
minus p99 of first-try ones). Then the books: each success has exactly one usage row, naming
the deployment the header named; failures have none; charged credits equal usage credits and
``wallet_problems()`` is empty. Results to stdout and ``var/bench/failover-<time>/``.
"""

import argparse
import asyncio
import json
import shutil
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from _common import (
    BROKER_URL,
    REDIS_URL,
    ROOT,
    bench_env,
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

BENCH_DB = "bytespike_bench_failover"
PORTS = {"pg": 9111, "sqlite": 9112}
CACHE_PREFIX = "bench-failover"
SUCCESS_TARGET = 0.999

SETUP = """
import json
from accounts.models import User
from accounts.services import account_create
from billing.models import Wallet
from billing.services import wallet_top_up
from catalogue.models import AIModel, Channel, Deployment, RoutingGroup
from keys import services as keys
user = User.objects.create_user("bench@example.com", "bench-password-1")
account = account_create(owner=user, name="Bench")
wallet_top_up(account=account, amount=10**15, reference="bench")
Wallet.objects.filter(account=account).update(concurrency_limit=10_000)
group = RoutingGroup.objects.create(slug="bench", name="Bench")
primary = Channel.objects.create(slug="primary", name="Primary", kind="openai",
    sandbox_failure_rate="0.30", sandbox_timeout_rate="0.05")
secondary = Channel.objects.create(slug="secondary", name="Secondary", kind="openai_compatible")
model = AIModel.objects.create(slug="flaky-chat", display_name="Flaky chat", family="text",
    input_price=1_000_000, output_price=4_000_000, context_window=128_000,
    max_output_tokens=4096)
Deployment.objects.create(model=model, channel=primary, upstream_model="chat-a", priority=1)
Deployment.objects.create(model=model, channel=secondary, upstream_model="chat-b", priority=0)
model.groups.add(group)
_, secret = keys.api_key_issue(account=account, group=group, name="bench", actor=user)
print(json.dumps({"key": secret, "account": account.pk}))
"""

BOOKS = """
import json
from collections import Counter
from django.db.models import Sum
from billing.invariants import wallet_problems
from billing.models import LedgerEntry, UsageRecord
successes = json.load(open({successes!r}))
failures = set(json.load(open({failures!r})))
rows = {{r.request_id: r.deployment.channel.slug
        for r in UsageRecord.objects.select_related("deployment__channel")}}
ids = list(UsageRecord.objects.values_list("request_id", flat=True))
charged = -(LedgerEntry.objects.filter(account_id={account}, kind="charge")
            .aggregate(s=Sum("amount"))["s"] or 0)
print(json.dumps({{
    "usage_rows": len(ids),
    "duplicate_rows": len(ids) - len(set(ids)),
    "successes_without_one_row": sum(1 for r in successes if r not in rows),
    "rows_naming_another_upstream": sum(1 for r, up in successes.items() if rows.get(r, up) != up),
    "failures_billed": sum(1 for r in failures if r in rows),
    "rows_by_upstream": dict(Counter(rows.values())),
    "charged": charged,
    "usage_credits": UsageRecord.objects.aggregate(s=Sum("credits"))["s"] or 0,
    "problems": wallet_problems({account}),
}}))
"""


def percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def load(url: str, key: str, calls: int, concurrency: int) -> dict:
    """``calls`` calls from ``concurrency`` clients; every fourth one streamed."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    outcomes: list[tuple[int, str, str, float]] = []  # status, upstream, request id, ms
    counter = iter(range(calls))

    async def client(session: aiohttp.ClientSession) -> None:
        for n in counter:
            body = {"model": "flaky-chat", "max_tokens": 32, "stream": n % 4 == 0,
                    "messages": [{"role": "user", "content": f"Say hello ({n})."}]}  # fmt: skip
            started = time.perf_counter()
            async with session.post(url, json=body, headers=headers) as response:
                text = await response.text()
                ok = response.status == 200 and (
                    not body["stream"] or ("[DONE]" in text and '"error"' not in text)
                )
                outcomes.append((
                    200 if ok else response.status or 599,
                    response.headers.get("x-bytespike-upstream", ""),
                    response.headers.get("x-request-id", ""),
                    (time.perf_counter() - started) * 1000,
                ))  # fmt: skip

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    first = [ms for status, up, _, ms in outcomes if status == 200 and up == "primary"]
    over = [ms for status, up, _, ms in outcomes if status == 200 and up == "secondary"]
    successes = {rid: up for status, up, rid, _ in outcomes if status == 200}
    failures = [rid for status, _, rid, _ in outcomes if status != 200]
    return {
        "calls": len(outcomes),
        "seconds": round(seconds, 1),
        "calls_per_second": round(len(outcomes) / seconds, 1),
        "success_rate": len(successes) / len(outcomes),
        "statuses": dict(Counter(status for status, *_ in outcomes)),
        "served_by": {"primary": len(first), "secondary": len(over)},
        "first_try_ms": {"p50": percentile(first, 0.5), "p99": percentile(first, 0.99)},
        "failed_over_ms": {"p50": percentile(over, 0.5), "p99": percentile(over, 0.99)},
        "failover_added_p50_ms": percentile(over, 0.5) - percentile(first, 0.5),
        "failover_added_p99_ms": percentile(over, 0.99) - percentile(first, 0.99),
        "_successes": successes,
        "_failures": failures,
    }


def run(backend: str, run_dir: Path, args) -> dict:
    data_dir = ROOT / "var" / f"bench-failover-{backend}"
    shutil.rmtree(data_dir, ignore_errors=True)
    quiet = {"BYTESPIKE_SANDBOX_LATENCY_MS": "0", "BYTESPIKE_SANDBOX_TOKEN_DELAY_MS": "0"}
    if args.no_breakers:  # every call tries the primary first: failover's cost on each failure
        quiet |= {"BYTESPIKE_BREAKER_FAILURES": "1000000000", "BYTESPIKE_BREAKER_ERROR_RATE": "2"}
    if backend == "pg":
        admin_url, bench_url = database_urls(BENCH_DB)
        env = bench_env(
            DATABASE_URL=bench_url, REDIS_URL=REDIS_URL, CELERY_BROKER_URL=BROKER_URL,
            BYTESPIKE_CACHE_PREFIX=CACHE_PREFIX, BYTESPIKE_CELERY_QUEUE=CACHE_PREFIX,
            BYTESPIKE_DATA_DIR=str(data_dir), **quiet,
        )  # fmt: skip
        fresh_database(admin_url, BENCH_DB, env)
    else:
        env = bench_env(BYTESPIKE_DATA_DIR=str(data_dir), **quiet)
        manage(env, "migrate", "-v0")
    try:
        world = json.loads(shell(env, SETUP))
        port = PORTS[backend]
        logfile = (run_dir / f"{backend}-web.log").open("w")
        server = start_server(
            web_command(port), env, port, timeout=60, stdout=logfile, stderr=subprocess.STDOUT
        )
        try:
            log(f"{backend}: {args.calls} calls from {args.concurrency} clients")
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            result = asyncio.run(load(url, world["key"], args.calls, args.concurrency))
        finally:
            stop_server(server)
        successes, failures = result.pop("_successes"), result.pop("_failures")
        (run_dir / f"{backend}-successes.json").write_text(json.dumps(successes))
        (run_dir / f"{backend}-failures.json").write_text(json.dumps(failures))
        result["books"] = json.loads(shell(env, BOOKS.format(
            successes=str(run_dir / f"{backend}-successes.json"),
            failures=str(run_dir / f"{backend}-failures.json"),
            account=world["account"],
        )))  # fmt: skip
        log(f"{backend}: {json.dumps(result)}")
        return result
    finally:
        if backend == "pg":
            drop_database(admin_url, BENCH_DB)
            redis_forget(CACHE_PREFIX)
        shutil.rmtree(data_dir, ignore_errors=True)


def books_clean(books: dict) -> bool:
    return (
        books["duplicate_rows"] == 0
        and books["successes_without_one_row"] == 0
        and books["rows_naming_another_upstream"] == 0
        and books["failures_billed"] == 0
        and books["charged"] == books["usage_credits"]
        and not books["problems"]
    )


def report(results: dict) -> str:
    names = {"pg": "PostgreSQL + Redis", "sqlite": "embedded"}
    lines = [
        "| measure | " + " | ".join(names[b] for b in results) + " | target | met? |",
        "|---|" + "---|" * len(results) + "---|---|",
    ]

    def row(label, cells, target="", met=""):
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} | {met} |")

    rates = [r["success_rate"] for r in results.values()]
    row("calls (16 clients)", [f"{r['calls']:,} in {r['seconds']} s" for r in results.values()])
    row("**succeeded**", [f"{x:.3%}" for x in rates], ">= 99.9%",
        "yes" if all(x >= SUCCESS_TARGET for x in rates) else "no")  # fmt: skip
    row("answers", [json.dumps(r["statuses"]) for r in results.values()])
    row("served by primary / failed over", [
        f"{r['served_by']['primary']:,} / {r['served_by']['secondary']:,}"
        for r in results.values()
    ])  # fmt: skip
    row("first try p50 / p99 (ms)", [
        f"{r['first_try_ms']['p50']:.1f} / {r['first_try_ms']['p99']:.1f}" for r in results.values()
    ])  # fmt: skip
    row("failed over p50 / p99 (ms)", [
        f"{r['failed_over_ms']['p50']:.1f} / {r['failed_over_ms']['p99']:.1f}"
        for r in results.values()
    ])  # fmt: skip
    row("**added by failover**, p50 / p99 (ms)", [
        f"{r['failover_added_p50_ms']:.1f} / {r['failover_added_p99_ms']:.1f}"
        for r in results.values()
    ], "reported")  # fmt: skip
    clean = [books_clean(r["books"]) for r in results.values()]
    row("books: one row per success, naming its upstream; failures free; no wallet problem",
        ["clean" if c else json.dumps(r["books"]) for c, r in zip(clean, results.values(),
                                                                  strict=True)],
        "clean", "yes" if all(clean) else "no")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["pg", "sqlite"])
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--no-breakers", action="store_true",
        help="breakers that never open: every call tries the flapping primary first",
    )  # fmt: skip
    args = parser.parse_args()
    run_dir = ROOT / "var" / "bench" / f"failover-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for backend in ("pg", "sqlite"):
        if args.only in (None, backend):
            results[backend] = run(backend, run_dir, args)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    print(report(results))
    print(f"\n(everything in {run_dir})")


if __name__ == "__main__":
    main()
