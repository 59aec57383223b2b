"""Gateway overhead, side by side in one run: a chat completion straight to a fake upstream,
through ByteSpike on PostgreSQL + Redis (one web process, then two), through ByteSpike on the
embedded default (SQLite, no Redis) and through LiteLLM's proxy, all against the same upstream.

    uv run python benchmarks/gateway.py            # about 6 minutes
    uv run python benchmarks/gateway.py --quick    # about 4 minutes: shorter runs, c16 only
    uv run python benchmarks/gateway.py --profile  # and a py-spy profile of a web process at c16
    uv run python benchmarks/gateway.py --report var/bench/gateway-<time>/results.json

What runs (all on 127.0.0.1):

- the upstream: benchmarks/fake_upstream.py in one uvicorn process (uvloop, httptools, no access
  log), answering at once (about 11,000 calls/s here, so it is never the bottleneck);
- ByteSpike as production starts it: ``uvicorn console.asgi:application`` with the flags of the
  README's production command line (and ``--loop uvloop --http httptools``), billing on (key
  check, hold, upstream call, settlement, usage row). On PostgreSQL (its own database
  ``bytespike_bench_gw``, created and dropped here; ``BENCH_DATABASE_URL`` points at the server)
  with Redis as cache and broker (``BENCH_REDIS_URL``, default database 12, 13 for the broker,
  this run's keys deleted at the end): one process, then two processes on the same account and
  key with the load split between them. On the embedded default: a fresh data dir, no
  ``DATABASE_URL`` or ``REDIS_URL``, one process;
- LiteLLM's proxy: ``uv run --with 'litellm[proxy]' --with opentelemetry-sdk litellm --config
  ... --num_workers 1``, the fake upstream as an OpenAI-compatible model, a master key, no
  database. opentelemetry-sdk is there because without it LiteLLM's proxy retries a failing
  import on every call, which halves its throughput (``--litellm-bare`` measures it so). If it
  cannot be installed or started, the run says why and goes on without it.

For each: latency at concurrency 1 (p50 and p99; "added" is that minus the direct call's),
time to the first streamed bytes at concurrency 1 (and added), and calls per second at
concurrency 16 and 64, with the CPU time each call cost the server's processes (and, on
PostgreSQL, its backends): figures that hold when others share the cores, unlike calls/s. The
load generator and why: benchmarks/_load.py (``wrk`` if installed, else aiohttp). Then the
books of both ByteSpike databases: charged credits equal to usage credits and no wallet problem
(the counts of usage rows and charge entries are shown). A markdown table with the issue's
targets and whether each is met goes to stdout, everything to ``var/bench/gateway-<time>/``
(results.json, the servers' logs, and with ``--profile`` py-spy's raw stacks).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import traceback
from datetime import datetime
from pathlib import Path

from _common import (
    BROKER_URL,
    FAST_FLAGS,
    REDIS_URL,
    ROOT,
    bench_env,
    cpu_seconds,
    database_cpu_seconds,
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
from _load import generator, sequential, throughput
from _profile import print_profile, profile

BENCH_DB = "bytespike_bench_gw"
UPSTREAM_PORT = 9100
PG_PORTS = (9101, 9102)
SQLITE_PORT = 9103
LITELLM_PORT = 9104
CACHE_PREFIX = "bench-gateway"
CHAT = "/v1/chat/completions"
BODY = {
    "model": "bench-chat",
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 64,
}
LITELLM_KEY = "sk-litellm-bench-0000"

# The targets, per web process on this machine.
ADDED_P50_MS = 2.0
STREAM_ADDED_MS = 3.0
C16_CALLS = {"pg": 400, "sqlite": 300}
LITELLM_RATIO = 10.0
TWO_PROCESS_RATIO = 1.7

SETUP = f"""
import json
from accounts.services import account_create
from catalogue.models import RoutingGroup
from accounts.models import User
from keys import services as keys
from billing.services import wallet_top_up
from billing.models import Wallet
from catalogue.models import Channel, AIModel, Deployment
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
    input_price=1_000_000, output_price=4_000_000, context_window=128_000,
    max_output_tokens=4096)
Deployment.objects.create(model=model, channel=channel, upstream_model="fake")
model.groups.add(group)
_, secret = keys.api_key_issue(account=account, group=group, name="bench", actor=user)
print(json.dumps({{"key": secret, "account": account.pk}}))
"""

CHECK = """
import json
from django.db.models import Sum
from billing.models import LedgerEntry, UsageRecord
from billing.invariants import wallet_problems
account = {account}
charges = LedgerEntry.objects.filter(account_id=account, kind="charge")
usage = UsageRecord.objects.filter(account_id=account)
print(json.dumps({{
    "usage_rows": usage.count(), "charge_entries": charges.count(),
    "charged": -(charges.aggregate(t=Sum("amount"))["t"] or 0),
    "usage_credits": usage.aggregate(t=Sum("credits"))["t"] or 0,
    "problems": wallet_problems(account)}}))
"""

LITELLM_CONFIG = f"""\
model_list:
  - model_name: bench-chat
    litellm_params:
      model: openai/fake
      api_base: http://127.0.0.1:{UPSTREAM_PORT}/v1
      api_key: sk-fake-upstream-key-0000
general_settings:
  master_key: {LITELLM_KEY}
"""

LABELS = {
    "direct": "direct upstream",
    "pg": "ByteSpike PostgreSQL + Redis",
    "sqlite": "ByteSpike embedded (SQLite)",
    "litellm": "LiteLLM proxy",
}


def urls(*ports: int) -> list[str]:
    return [f"http://127.0.0.1:{port}{CHAT}" for port in ports]


# --- Measuring -------------------------------------------------------------------------------


def measure(
    name: str, targets: list[str], headers: dict, args, servers: list, database: str = ""
) -> dict:
    """Latency and first streamed bytes at concurrency 1, then calls/s at each level (and per
    CPU second of the ``servers``' processes)."""
    result = {}
    if len(targets) == 1:
        result["c1"] = sequential(
            targets[0], headers, BODY, seconds=args.latency_seconds, warmup=args.warmup
        )
        log(f"{name} c1: {fmt(result['c1'])}")
        result["stream_c1"] = sequential(
            targets[0], headers, BODY, stream=True, seconds=args.latency_seconds, warmup=args.warmup
        )
        log(f"{name} streamed first bytes c1: {fmt(result['stream_c1'])}")
    for level in args.levels:
        result[f"c{level}"] = throughput(
            targets,
            headers,
            [BODY],
            concurrency=level,
            seconds=args.seconds,
            warmup=args.warmup,
            tool=args.generator,
            cpu=lambda: cpu_seconds(*(server.pid for server in servers)),
            db_cpu=(lambda: database_cpu_seconds(database)) if database else None,
        )
        log(f"{name} c{level}: {fmt(result[f'c{level}'])}")
    return result


def fmt(row: dict) -> str:
    rate = f"{row['calls_per_s']:.1f} calls/s, " if "calls_per_s" in row else ""
    if row.get("calls_per_cpu_s"):
        rate += f"{row['calls_per_cpu_s']:.1f} calls per server CPU second, "
    if row.get("db_cpu_ms_per_call"):
        rate += f"PostgreSQL {row['db_cpu_ms_per_call']:.2f} ms CPU per call, "
    if row["p50_ms"] is None:
        return f"{row['calls']} calls, all failed"
    if not row["calls"]:
        return f"no call answered in {row.get('generator', 'the run')}'s run ({row['errors']} hung)"
    return (
        f"{rate}p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
        f"{row['calls']} calls, {row['errors']} errors"
    )


# --- The servers -----------------------------------------------------------------------------


def run_bytespike(
    name: str,
    env: dict,
    ports: tuple[int, ...],
    run_dir: Path,
    args,
    prepare,
    cleanup,
    database: str = "",
) -> dict:
    """Set up the bench account, start the web processes, measure, check the books."""
    out: dict = {}
    prepare()
    try:
        world = json.loads(shell(env, SETUP))
        headers = {"authorization": f"Bearer {world['key']}"}
        servers = []
        try:
            for port in ports:
                logfile = (run_dir / f"{name}-web-{port}.log").open("w")
                servers.append(
                    start_server(
                        web_command(port),
                        env,
                        port,
                        timeout=60,
                        stdout=logfile,
                        stderr=subprocess.STDOUT,
                    )
                )
            log(f"{name}: {len(ports)} web process(es) up ({' '.join(web_command(ports[0])[1:])})")
            out["one"] = measure(name, urls(ports[0]), headers, args, servers[:1], database)
            if args.profile:
                out["profile"] = profile(
                    servers[0].pid,
                    urls(ports[0])[0],
                    headers,
                    [BODY],
                    args.profile_seconds,
                    run_dir / f"{name}-profile",
                    args.generator,
                )
                log(f"{name}: profiles in {run_dir}")
            if len(ports) > 1:
                out["two"] = measure(f"{name} x2", urls(*ports), headers, args, servers, database)
        finally:
            for server in servers:
                stop_server(server)
        out["books"] = json.loads(shell(env, CHECK.format(account=world["account"])))
        books = out["books"]
        books["consistent"] = balanced(books)
        log(f"{name} books: {json.dumps(books)}")
    finally:
        cleanup()
    return out


def balanced(books: dict) -> bool:
    """As the books are checked elsewhere (tests, soak): what was charged is what usage records
    say, and the wallet agrees with its ledger. The row counts are reported, not compared: a
    batched settlement may write one charge entry for several usage rows."""
    return books["charged"] == books["usage_credits"] and not books["problems"]


def run_pg(run_dir: Path, args) -> dict:
    admin_url, bench_url = database_urls(BENCH_DB)
    data_dir = ROOT / "var" / "bench-gateway-pg"
    env = bench_env(
        DATABASE_URL=bench_url,
        REDIS_URL=REDIS_URL,
        CELERY_BROKER_URL=BROKER_URL,
        BYTESPIKE_CACHE_PREFIX=CACHE_PREFIX,
        BYTESPIKE_CELERY_QUEUE=CACHE_PREFIX,
        BYTESPIKE_DATA_DIR=str(data_dir),
    )

    def prepare():
        shutil.rmtree(data_dir, ignore_errors=True)
        fresh_database(admin_url, BENCH_DB, env)

    def cleanup():
        drop_database(admin_url, BENCH_DB)
        shutil.rmtree(data_dir, ignore_errors=True)
        redis_forget(CACHE_PREFIX)

    return run_bytespike("pg", env, PG_PORTS, run_dir, args, prepare, cleanup, BENCH_DB)


def run_sqlite(run_dir: Path, args) -> dict:
    data_dir = ROOT / "var" / "bench-gateway-sqlite"
    env = bench_env(BYTESPIKE_DATA_DIR=str(data_dir))

    def prepare():
        shutil.rmtree(data_dir, ignore_errors=True)
        manage(env, "migrate", "-v0")

    def cleanup():
        shutil.rmtree(data_dir, ignore_errors=True)

    return run_bytespike("sqlite", env, (SQLITE_PORT,), run_dir, args, prepare, cleanup)


def run_litellm(run_dir: Path, args) -> dict:
    config = run_dir / "litellm.yaml"
    config.write_text(LITELLM_CONFIG)
    env = bench_env(LITELLM_LOCAL_MODEL_COST_MAP="True")  # offline: the packaged price list
    # LiteLLM's proxy imports opentelemetry.sdk on every call (to route traces) and only logs
    # the failure; without the package that is a failed import per call, about 30 ms here, half
    # its throughput. It is added unless --litellm-bare, so LiteLLM is measured at its best.
    uv = ["uv", "run", "--with", "litellm[proxy]"]
    if not args.litellm_bare:
        uv += ["--with", "opentelemetry-sdk"]
    version = subprocess.run(
        [*uv, "python", "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if version.returncode:
        raise RuntimeError(f"uv run --with 'litellm[proxy]' failed: {version.stderr.strip()}")
    logpath = run_dir / "litellm.log"
    argv = [
        *uv,
        "litellm",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(LITELLM_PORT),
        "--num_workers",
        "1",
    ]
    try:
        server = start_server(
            argv,
            env,
            LITELLM_PORT,
            path="/health/liveliness",
            timeout=300,
            stdout=logpath.open("w"),
            stderr=subprocess.STDOUT,
        )
    except RuntimeError:
        tail = logpath.read_text().strip().splitlines()[-15:]
        raise RuntimeError("LiteLLM did not start:\n" + "\n".join(tail)) from None
    log(f"litellm {version.stdout.strip()} up: {' '.join(argv)}")
    try:
        return {
            "version": version.stdout.strip(),
            "one": measure(
                "litellm",
                urls(LITELLM_PORT),
                {"authorization": f"Bearer {LITELLM_KEY}"},
                args,
                [server],
            ),
        }
    finally:
        stop_server(server)


# --- The report ------------------------------------------------------------------------------


def report(results: dict, args) -> str:
    one = {name: results[name].get("one") for name in LABELS if name in results}
    direct = one.get("direct") or {}
    c = f"c{args.levels[0]}"  # 16 unless told otherwise

    def cell(name, get, digits=1, suffix=""):
        try:
            value = get(one[name])
        except (KeyError, TypeError, ZeroDivisionError):
            return "—"
        return "—" if value is None else f"{value:,.{digits}f}{suffix}"

    def added(key, field):
        return lambda row: row[key][field] - direct[key][field]

    def met(values: dict, ok) -> str:
        short = {"pg": "PG", "sqlite": "embedded"}
        parts = []
        for name, value in values.items():
            if value is None:
                parts.append(f"{short[name]}: n/a")
            else:
                parts.append(f"{short[name]}: {'yes' if ok(name, value) else '**no**'}")
        return ", ".join(parts)

    def value(name, get):
        try:
            return get(one[name])
        except (KeyError, TypeError, ZeroDivisionError):
            return None

    rate = lambda row: row[c]["calls_per_s"]  # noqa: E731
    litellm_rate = value("litellm", rate)
    ratio = lambda row: row[c]["calls_per_s"] / litellm_rate  # noqa: E731
    two = results.get("pg", {}).get("two")
    two_ratio = value("pg", lambda r: two[c]["calls_per_s"] / r[c]["calls_per_s"]) if two else None
    bytespike = ("pg", "sqlite")
    names = list(LABELS)
    head = "| measure | " + " | ".join(LABELS[n] for n in names) + " | target | met? |"
    rows = [head, "|" + "---|" * (len(names) + 3)]

    def row(label, get, target="", verdict="", digits=1, suffix="", only=None):
        cells = [
            cell(n, get, digits, suffix) if (only is None or n in only) else "—" for n in names
        ]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {target} | {verdict} |")

    row("latency p50 / c1 (ms)", lambda r: r["c1"]["p50_ms"], digits=2)
    row("latency p99 / c1 (ms)", lambda r: r["c1"]["p99_ms"], digits=2)
    row(
        "**added p50** / c1 (ms)",
        added("c1", "p50_ms"),
        f"<= {ADDED_P50_MS:g}",
        met(
            {n: value(n, added("c1", "p50_ms")) for n in bytespike}, lambda n, v: v <= ADDED_P50_MS
        ),
        digits=2,
        only=("pg", "sqlite", "litellm"),
    )
    row("added p99 / c1 (ms)", added("c1", "p99_ms"), digits=2, only=("pg", "sqlite", "litellm"))
    row("stream first bytes p50 / c1 (ms)", lambda r: r["stream_c1"]["p50_ms"], digits=2)
    row(
        "**stream first bytes added p50** / c1 (ms)",
        added("stream_c1", "p50_ms"),
        f"<= {STREAM_ADDED_MS:g}",
        met(
            {n: value(n, added("stream_c1", "p50_ms")) for n in bytespike},
            lambda n, v: v <= STREAM_ADDED_MS,
        ),
        digits=2,
        only=("pg", "sqlite", "litellm"),
    )
    for level in args.levels:
        key = f"c{level}"
        get = lambda r, key=key: r[key]["calls_per_s"]  # noqa: E731
        if key == "c16":
            row(
                "**calls/s** / c16",
                get,
                ">= 400 (embedded >= 300)",
                met({n: value(n, get) for n in bytespike}, lambda n, v: v >= C16_CALLS[n]),
            )
        else:
            row(f"calls/s / {key}", get)
        row(f"latency p50 / {key} (ms)", lambda r, key=key: r[key]["p50_ms"])
        row(f"calls per server CPU second / {key}", lambda r, key=key: r[key]["calls_per_cpu_s"])
        row(
            f"server CPU ms per call / {key}",
            lambda r, key=key: 1000 / r[key]["calls_per_cpu_s"],
            digits=2,
        )
        row(
            f"PostgreSQL CPU ms per call / {key}",
            lambda r, key=key: r[key].get("db_cpu_ms_per_call"),
            digits=2,
            only=("pg",),
        )
    row(
        f"**x LiteLLM's calls/s** / {c}",
        ratio,
        f">= {LITELLM_RATIO:g}x",
        met(
            {n: value(n, ratio) for n in bytespike} if litellm_rate else dict.fromkeys(bytespike),
            lambda n, v: v >= LITELLM_RATIO,
        ),
        digits=2,
        suffix="x",
        only=bytespike,
    )
    cpu_rate = value("litellm", lambda r: r[c]["calls_per_cpu_s"])
    row(
        f"x LiteLLM's calls per server CPU second / {c}",
        lambda r: r[c]["calls_per_cpu_s"] / cpu_rate,
        digits=2,
        suffix="x",
        only=bytespike,
    )
    if two:
        both = two[c]
        cost = (
            f"; {1000 / both['calls_per_cpu_s']:.1f} ms web CPU"
            if both.get("calls_per_cpu_s")
            else ""
        )
        if both.get("db_cpu_ms_per_call"):
            cost += f", {both['db_cpu_ms_per_call']:.1f} ms PostgreSQL CPU per call"
        ratio_text = f"{two_ratio:.2f}x one" if two_ratio is not None else "one process: no calls"
        cells = ["—", f"{both['calls_per_s']:,.1f} ({ratio_text}{cost})", "—", "—"]
        verdict = (
            "n/a" if two_ratio is None else "yes" if two_ratio >= TWO_PROCESS_RATIO else "**no**"
        )
        rows.append(
            f"| **two web processes** calls/s / {c} | "
            + " | ".join(cells)
            + f" | >= {TWO_PROCESS_RATIO:g}x one | {verdict} |"
        )
    books = {n: results.get(n, {}).get("books") for n in bytespike}
    cells = []
    for n in names:
        b = books.get(n)
        if not b:
            cells.append("—")
            continue
        same = "=" if b["charged"] == b["usage_credits"] else "!="
        cells.append(
            f"{b['usage_rows']:,} usage rows, {b['charge_entries']:,} charge entries, charged "
            f"{same} usage credits, {len(b['problems'])} wallet problems"
        )
    verdict = ", ".join(
        f"{ {'pg': 'PG', 'sqlite': 'embedded'}[n] }: "
        + ("n/a" if not books[n] else "yes" if balanced(books[n]) else "**no**")
        for n in bytespike
    )
    rows.append(
        "| books after the run | "
        + " | ".join(cells)
        + f" | charged = usage credits, no wallet problem | {verdict} |"
    )
    errors = {n: sum(m.get("errors", 0) for m in (one.get(n) or {}).values()) for n in names}
    if two:
        errors["pg"] += sum(m.get("errors", 0) for m in two.values())
    rows.append(
        "| failed calls | "
        + " | ".join(str(errors[n]) if one.get(n) else "—" for n in names)
        + " | 0 | |"
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, concurrency 16 only")
    parser.add_argument("--seconds", type=float, help="each throughput run (default 10, quick 4)")
    parser.add_argument("--latency-seconds", type=float, help="each c1 run (default 8, quick 3)")
    parser.add_argument("--concurrency", help="throughput levels (default 16,64; quick 16)")
    parser.add_argument("--only", default="pg,sqlite,litellm", help="which of pg,sqlite,litellm")
    parser.add_argument("--generator", default="auto", choices=["auto", "wrk", "aiohttp"])
    parser.add_argument("--profile", action="store_true", help="py-spy a PG web process at c16")
    parser.add_argument(
        "--litellm-bare",
        action="store_true",
        help="LiteLLM from litellm[proxy] alone, no opentelemetry-sdk (see run_litellm)",
    )
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--report", type=Path, help="print the tables of a saved results.json")
    args = parser.parse_args()
    if args.report:
        print_results(json.loads(args.report.read_text()), args.report)
        return
    args.seconds = args.seconds or (4 if args.quick else 10)
    args.latency_seconds = args.latency_seconds or (3 if args.quick else 8)
    args.warmup = 1 if args.quick else 2
    args.levels = [
        int(n) for n in (args.concurrency or ("16" if args.quick else "16,64")).split(",")
    ]
    only = args.only.split(",")
    run_dir = ROOT / "var" / "bench" / f"gateway-{datetime.now().strftime('%Y%m%d-%H%M%S')}"  # noqa: DTZ005
    run_dir.mkdir(parents=True)
    log(f"load generator: {generator(args.generator)}; output in {run_dir}")
    busy = os.getloadavg()
    if busy[0] > 1:
        log(
            f"the machine is busy before starting (load average {busy[0]:.1f}): figures will be low"
        )
    results: dict = {
        "generator": generator(args.generator),
        "args": vars(args),
        "load_average_before": busy,
        "failures": {},
    }
    upstream_argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.fake_upstream:app",
        "--port",
        str(UPSTREAM_PORT),
        "--no-access-log",
        "--log-level",
        "warning",
        *FAST_FLAGS,
    ]
    upstream = start_server(upstream_argv, bench_env(), UPSTREAM_PORT, path="/", timeout=30)
    try:
        results["direct"] = {"one": measure("direct", urls(UPSTREAM_PORT), {}, args, [upstream])}
        runs = {"pg": run_pg, "sqlite": run_sqlite, "litellm": run_litellm}
        for name in ("pg", "sqlite", "litellm"):
            if name not in only:
                continue
            try:
                results[name] = runs[name](run_dir, args)
            except Exception as error:  # report it, go on with the others
                traceback.print_exc()
                results["failures"][name] = f"{type(error).__name__}: {error}"
                log(f"{name} FAILED: {error}")
    finally:
        stop_server(upstream)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    print_results(results, run_dir / "results.json")


def print_results(results: dict, path: Path) -> None:
    args = argparse.Namespace(**results["args"])
    print()
    print(report(results, args))
    print(
        f'\n(load generator {results["generator"]}; "added" is minus the direct upstream call; '
        "stream first bytes = first body bytes of a streamed call; per web process; calls per "
        "server CPU second = calls / CPU time of the server's processes (PostgreSQL and Redis "
        "not counted), what it would answer with a core to itself; machine load average before "
        f"the run {results['load_average_before'][0]:.1f})"
    )
    for name, failure in results["failures"].items():
        print(f"\n{LABELS[name]} not measured: {failure}")
    if "profile" in results.get("pg", {}):
        print_profile(results["pg"]["profile"], "one PostgreSQL web process at c16")
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
