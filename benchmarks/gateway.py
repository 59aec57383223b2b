"""Gateway overhead: a text call through ByteSpike (key auth, hold, translation, upstream call,
settlement) against the same call straight to the upstream.

    uv run python benchmarks/gateway.py [--requests 2000] [--concurrency 1,16,64]
                                         [--transport httpx|aiohttp|both]

A fake OpenAI-compatible upstream (benchmarks/fake_upstream.py) runs in its own process and
answers at once; the gateway runs as one uvicorn process on PostgreSQL (its own database,
``bytespike_bench_gw``, created and dropped here; ``BENCH_DATABASE_URL`` points at the server)
with Redis as its cache, billing on. A load generator (this process) sends chat completions at
each concurrency, first to the upstream directly, then through the gateway, and reports:

- the added latency (gateway minus direct) at p50 and p99,
- requests per second per gateway process,
- the same for streamed calls, by time to first byte,

then checks that the ledger's charges equal the usage rows. Targets on the 2-core machine:
added p50 under 3 ms at concurrency 1; at least 400 requests per second at concurrency 16.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

import httpx
from _common import ROOT, database_urls, drop_database, fresh_database, shell, start_server

BENCH_DB = "bytespike_bench_gw"
UPSTREAM_PORT = 9100
GATEWAY_PORT = 9101
BODY = {"model": "bench-chat", "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 64}  # fmt: skip


SETUP = f"""
import json
from accounts.services import account_create
from accounts.models import User, RoutingGroup
from accounts import keys
from billing.services import wallet_top_up
from billing.models import Wallet
from generation.models import Channel, AIModel
user = User.objects.create_user("bench@example.com", "bench-password-1")
account = account_create(owner=user, name="Bench")
wallet_top_up(account=account, amount=10**15, reference="bench")
Wallet.objects.filter(account=account).update(concurrency_limit=10_000)
group = RoutingGroup.objects.create(slug="bench", name="Bench")
channel = Channel(slug="fake", name="Fake upstream", kind="openai_compatible", mode="live",
                  base_url="http://127.0.0.1:{UPSTREAM_PORT}/v1")
channel.set_secret("sk-fake-upstream-key-0000")
channel.save()
model = AIModel.objects.create(slug="bench-chat", display_name="Bench chat", family="text",
    channel=channel, upstream_model="fake", input_price=1_000_000, output_price=4_000_000,
    context_window=128_000, max_output_tokens=4096)
model.groups.add(group)
_, secret = keys.api_key_issue(account=account, group=group, name="bench", actor=user)
print(json.dumps({{"key": secret, "account": account.pk}}))
"""

CHECK = """
import json
from django.db.models import Sum
from billing.models import LedgerEntry, UsageRecord
from billing.services import wallet_problems
account = {account}
charges = LedgerEntry.objects.filter(account_id=account, kind="charge")
usage = UsageRecord.objects.filter(account_id=account)
print(json.dumps({{
    "usage_rows": usage.count(), "charge_entries": charges.count(),
    "charged": -(charges.aggregate(t=Sum("amount"))["t"] or 0),
    "usage_credits": usage.aggregate(t=Sum("credits"))["t"] or 0,
    "problems": wallet_problems(account)}}))
"""


async def load(url: str, headers: dict, body: dict, *, requests: int, concurrency: int,
               stream: bool) -> dict:  # fmt: skip
    """Send ``requests`` calls, ``concurrency`` at a time; latencies (or time to first byte)."""
    samples: list[float] = []
    errors = 0
    queue = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60, headers=headers) as client:

        async def worker():
            nonlocal errors
            for _ in queue:
                started = time.perf_counter()
                if stream:
                    async with client.stream("POST", url, json={**body, "stream": True}) as r:
                        first = True
                        async for _chunk in r.aiter_bytes():
                            if first:
                                samples.append(time.perf_counter() - started)
                                first = False
                        ok = r.status_code == 200
                else:
                    r = await client.post(url, json=body)
                    samples.append(time.perf_counter() - started)
                    ok = r.status_code == 200
                errors += not ok

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    samples.sort()
    return {
        "p50_ms": statistics.median(samples) * 1000,
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000,
        "rps": requests / elapsed,
        "errors": errors,
    }


def measure(key: str, requests: int, levels: list[int], stream: bool) -> list[dict]:
    upstream = f"http://127.0.0.1:{UPSTREAM_PORT}/v1/chat/completions"
    gateway = f"http://127.0.0.1:{GATEWAY_PORT}/v1/chat/completions"
    rows = []
    for concurrency in levels:
        count = max(requests // (4 if concurrency == 1 else 1), 200)
        asyncio.run(load(gateway, {"x-api-key": key}, BODY, requests=100, concurrency=concurrency,
                         stream=stream))  # fmt: skip  # warm-up
        direct = asyncio.run(
            load(upstream, {}, BODY, requests=count, concurrency=concurrency, stream=stream)
        )
        via = asyncio.run(
            load(gateway, {"x-api-key": key}, BODY, requests=count, concurrency=concurrency,
                 stream=stream)
        )  # fmt: skip
        rows.append(
            {
                "stream": stream,
                "concurrency": concurrency,
                "requests": count,
                "direct_p50_ms": round(direct["p50_ms"], 2),
                "gateway_p50_ms": round(via["p50_ms"], 2),
                "added_p50_ms": round(via["p50_ms"] - direct["p50_ms"], 2),
                "added_p99_ms": round(via["p99_ms"] - direct["p99_ms"], 2),
                "gateway_rps": round(via["rps"], 1),
                "errors": via["errors"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--transport", default="httpx", choices=["httpx", "aiohttp", "both"])
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    admin_url, bench_url = database_urls(BENCH_DB)
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "BYTESPIKE_DATA_DIR": str(ROOT / "var" / "bench-gateway"),
        "BYTESPIKE_HTTPS": "0",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "BYTESPIKE_CACHE_PREFIX": "bench-gateway",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("CELERY_BROKER_URL", None)
    fresh_database(admin_url, BENCH_DB, env)
    world = json.loads(shell(env, SETUP))
    uvicorn = [sys.executable, "-m", "uvicorn", "--no-access-log", "--log-level", "warning"]
    upstream = start_server(
        [*uvicorn, "benchmarks.fake_upstream:app", "--port", str(UPSTREAM_PORT)], env, UPSTREAM_PORT
    )
    results = {}
    try:
        transports = ["httpx", "aiohttp"] if args.transport == "both" else [args.transport]
        for transport in transports:
            gateway = start_server(
                [*uvicorn, "console.asgi:application", "--lifespan", "off",
                 "--port", str(GATEWAY_PORT)],
                {**env, "BYTESPIKE_UPSTREAM_TRANSPORT": transport}, GATEWAY_PORT,
            )  # fmt: skip
            try:
                print(f"--- transport {transport}", flush=True)
                results[transport] = measure(world["key"], args.requests, levels, False)
                results[transport] += measure(world["key"], args.requests // 2, levels, True)
            finally:
                gateway.terminate()
                gateway.wait(timeout=20)
        books = json.loads(shell(env, CHECK.format(account=world["account"])))
    finally:
        upstream.terminate()
        upstream.wait(timeout=20)
        drop_database(admin_url, BENCH_DB)
    print("\ntransport  stream  conc  direct p50  gateway p50  added p50  added p99  rps/process")
    for transport, rows in results.items():
        for row in rows:
            print(
                f"{transport:9}  {'yes' if row['stream'] else 'no':6}  {row['concurrency']:4}  "
                f"{row['direct_p50_ms']:10.2f}  {row['gateway_p50_ms']:11.2f}  "
                f"{row['added_p50_ms']:9.2f}  {row['added_p99_ms']:9.2f}  "
                f"{row['gateway_rps']:11.1f}"
            )
    print("(ms; streamed rows measure time to first byte)")
    consistent = books["charged"] == books["usage_credits"] and not books["problems"]
    print(f"books: {json.dumps(books)} -> {'consistent' if consistent else 'INCONSISTENT'}")


if __name__ == "__main__":
    main()
