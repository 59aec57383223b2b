"""Usage report latency on PostgreSQL with 100k, 1M and 10M usage rows.

    uv run python benchmarks/usage_report.py [--sizes 100000,1000000,10000000] [--requests 30]

Needs PostgreSQL (``BENCH_DATABASE_URL``, default postgres://postgres@127.0.0.1:5432/postgres:
the script creates and drops its own database ``bytespike_bench``). It seeds one account with
20 keys (in 4 projects, created by 2 members) and 8 models, writes usage rows spread over 90
days with SQL (two in three tagged; and rebuilds the hourly rollups, per key and per tag, from
them, as the billing path would have kept them), starts one uvicorn process on that database,
and times, after a warm-up:

- the console's usage page (30 days, grouped by day; filtered by one key; by model, project,
  member and tag; filtered by a tag),
- GET /api/v1/usage?group_by=day (30 days), by project and by tag, and the CSV export,
- GET /api/v1/usage/records (first page),

reporting the median and p95 in milliseconds for each size. Target: under 200 ms at 10M rows.

``--keep`` keeps the database (and what the run seeded, in var/bench/usage_report.json);
``--reuse`` then times it again, migrated to this checkout, without writing rows (one size: the
one written).
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

import httpx
import psycopg
from _common import ROOT, database_urls, drop_database, fresh_database, manage, shell, start_server

BENCH_DB = "bytespike_bench"
DAYS = 90
KEYS = 20
MODELS = 8


def setup_database(admin_url: str, env: dict) -> dict:
    fresh_database(admin_url, BENCH_DB, env)
    script = f"""
import json
from accounts.services import account_create
from catalogue.models import RoutingGroup
from accounts.models import User
from keys import services as keys
from allauth.account.models import EmailAddress
from catalogue.models import Channel, AIModel, Deployment
from accounts.models import Membership, Project, Role
user = User.objects.create_user("bench@example.com", "bench-password-1")
EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
account = account_create(owner=user, name="Bench")
colleague = User.objects.create_user("dev@example.com", "bench-password-2")
Membership.objects.create(account=account, user=colleague, role=Role.DEVELOPER)
projects = [Project.objects.create(account=account, name=f"Project {{i}}") for i in range(4)]
group = RoutingGroup.objects.create(slug="bench", name="Bench")
channel = Channel.objects.create(slug="bench", name="Bench", kind="openai")
models = []
for i in range({MODELS}):
    m = AIModel.objects.create(slug=f"bench-model-{{i}}", display_name=f"Bench {{i}}",
        family="text", input_price=1_000_000, output_price=4_000_000)
    Deployment.objects.create(model=m, channel=channel, upstream_model="x")
    m.groups.add(group)
    models.append(m.pk)
api_keys = [keys.api_key_issue(account=account, group=group, name=f"key {{i}}",
                               actor=user if i % 2 else colleague)[0]
            for i in range({KEYS})]
for i, key in enumerate(api_keys):
    key.project = projects[i % len(projects)]
    key.save(update_fields=["project"])
other = account_create(owner=user, name="Noise")
_, mkey = keys.management_key_issue(account=account, actor=user, name="bench")
print(json.dumps({{"account": account.pk, "other": other.pk, "group": group.pk,
                  "models": models, "keys": [k.pk for k in api_keys],
                  "projects": [k.project_id for k in api_keys],
                  "key_public_ids": [k.public_id for k in api_keys], "management_key": mkey}}))
"""
    return json.loads(shell(env, script))


def grow_usage(bench_url: str, world: dict, start: int, end: int) -> None:
    """Usage rows start..end-1: 90% for the measured account, 10% for another one."""
    keys = "ARRAY[" + ",".join(map(str, world["keys"])) + "]"
    models = "ARRAY[" + ",".join(map(str, world["models"])) + "]"
    projects = "ARRAY[" + ",".join(map(str, world["projects"])) + "]"
    with psycopg.connect(bench_url, autocommit=True) as conn:
        conn.execute(  # integers of our own making, no user input
            f"""
            INSERT INTO billing_usagerecord (request_id, account_id, api_key_id, project_id,
                group_id, model_id, family, protocol, stream, input_tokens, output_tokens,
                cache_read_tokens, cache_write_tokens, reasoning_tokens, images, seconds,
                credits, shortfall, latency_ms, ttft_ms, batch, tags, created_at)
            SELECT 'bench_' || g,
                   CASE WHEN g % 10 = 0 THEN {world["other"]} ELSE {world["account"]} END,
                   CASE WHEN g % 10 = 0 THEN NULL ELSE ({keys})[1 + (g * 7) % {KEYS}] END,
                   CASE WHEN g % 10 = 0 THEN NULL ELSE ({projects})[1 + (g * 7) % {KEYS}] END,
                   {world["group"]}, ({models})[1 + (g * 13) % {MODELS}], 'text',
                   'openai', g % 2 = 0, 200 + g % 3000, 50 + g % 900, g % 500, 0, 0, 0, 0,
                   500 + g % 9000, 0, 200 + g % 3000, 100 + g % 700, '',
                   CASE g % 3 WHEN 0 THEN 'env=prod,team=search' WHEN 1 THEN 'team=ads'
                              ELSE '' END,
                   now() - ((g * 7919) % ({DAYS} * 86400)) * interval '1 second'
            FROM generate_series({start}::bigint, {end - 1}::bigint) AS g
            """  # noqa: S608
        )
        sums = """count(*), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
                  sum(cache_write_tokens), sum(images), sum(seconds), sum(credits)"""
        columns = """calls, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                     images, seconds, credits"""
        conn.execute("TRUNCATE billing_usagerollup, billing_usagetagrollup")
        conn.execute(
            f"""
            INSERT INTO billing_usagerollup (account_id, api_key_id, project_id, model_id,
                family, hour, {columns})
            SELECT account_id, api_key_id, project_id, model_id, family,
                   date_trunc('hour', created_at), {sums}
            FROM billing_usagerecord GROUP BY 1, 2, 3, 4, 5, 6
            """  # noqa: S608
        )
        conn.execute(
            f"""
            INSERT INTO billing_usagetagrollup (account_id, api_key_id, project_id, model_id,
                family, tag, hour, {columns})
            SELECT account_id, api_key_id, project_id, model_id, family, tag,
                   date_trunc('hour', created_at), {sums}
            FROM billing_usagerecord, unnest(string_to_array(tags, ',')) AS tag
            WHERE tags <> '' GROUP BY 1, 2, 3, 4, 5, 6, 7
            """  # noqa: S608
        )
        for table in ("billing_usagerecord", "billing_usagerollup", "billing_usagetagrollup"):
            conn.execute(f"VACUUM ANALYZE {table}")


def console_client(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60)
    page = client.get("/auth/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    client.post(
        "/auth/login/",
        data={"login": "bench@example.com", "password": "bench-password-1",
              "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/auth/login/"},
    )  # fmt: skip
    return client


def timed(client: httpx.Client, url: str, requests: int, **kwargs) -> dict:
    for _ in range(3):
        response = client.get(url, **kwargs)
        response.raise_for_status()
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url, **kwargs)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--reuse", action="store_true", help="time a kept database again")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    admin_url, bench_url = database_urls(BENCH_DB)
    data_dir = ROOT / "var" / "bench"
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "BYTESPIKE_DATA_DIR": str(data_dir),
        "BYTESPIKE_HTTPS": "0",
        "DATABASE_CONN_MAX_AGE": "60",
        "LOG_LEVEL": "WARNING",  # no access log line per timed request
    }
    env.pop("REDIS_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    manage(env, "collectstatic", "--noinput", "-v0")
    kept = data_dir / "usage_report.json"
    if args.reuse:
        manage(env, "migrate", "--noinput", "-v0")
        world = json.loads(kept.read_text())
        written = sizes[0]
    else:
        world = setup_database(admin_url, env)
        written = 0
    if args.keep:
        kept.write_text(json.dumps(world))
    results = []
    try:
        for size in sizes:
            if size > written:
                print(f"writing usage rows up to {size:,}...", flush=True)
                started = time.monotonic()
                grow_usage(bench_url, world, written, size)
                written = size
                print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
            server = start_server(
                [sys.executable, "-m", "uvicorn", "console.asgi:application",
                 "--port", str(args.port), "--lifespan", "off", "--log-level", "warning"],
                env, args.port,
            )  # fmt: skip
            try:
                base = f"http://127.0.0.1:{args.port}"
                page = console_client(base)
                api = httpx.Client(
                    base_url=base, timeout=60, headers={"x-api-key": world["management_key"]}
                )
                key = world["key_public_ids"][3]
                row = {"rows": size}
                row["usage page, 30 d by day"] = timed(page, "/usage/", args.requests)
                row["usage page, one key"] = timed(
                    page, f"/usage/?api_key_id={key}&group_by=day", args.requests
                )
                for dimension in ("model", "project", "member", "tag"):
                    row[f"usage page, by {dimension}"] = timed(
                        page, f"/usage/?group_by={dimension}", args.requests
                    )
                row["usage page, one tag"] = timed(page, "/usage/?tag=team:search", args.requests)
                row["api usage, 30 d by day"] = timed(
                    api, "/api/v1/usage?group_by=day", args.requests
                )
                for dimension in ("project", "tag"):
                    row[f"api usage, by {dimension}"] = timed(
                        api, f"/api/v1/usage?group_by={dimension}", args.requests
                    )
                row["api usage csv"] = timed(
                    api, "/api/v1/usage?group_by=day&format=csv", args.requests
                )
                row["api usage records"] = timed(api, "/api/v1/usage/records", args.requests)
                results.append(row)
                print(json.dumps(row), flush=True)
            finally:
                server.terminate()
                server.wait(timeout=20)
    finally:
        if not (args.keep or args.reuse):
            drop_database(admin_url, BENCH_DB)
    print("\nrows        " + "  ".join(k for k in results[0] if k != "rows"))
    for row in results:
        cells = [f"{v['median_ms']:>6} / {v['p95_ms']:<6}" for k, v in row.items() if k != "rows"]
        print(f"{row['rows']:>10,}  " + "  ".join(cells))
    print("(median / p95, ms)")


if __name__ == "__main__":
    main()
