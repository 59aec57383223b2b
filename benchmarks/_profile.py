"""A py-spy profile of a web process under load, summarised by area and by function: where a
call's time goes (every busy thread) and what uses the process's one core (the GIL's thread)."""

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from _common import ROOT
from _load import throughput


def profile(
    pid: int, target: str, headers: dict, bodies: list[dict], seconds: int, stem: Path, tool: str
) -> dict:
    """py-spy's stacks of process ``pid`` while concurrency 16 runs against it, twice: every
    thread that is not idle (where a call's time goes, waits on PostgreSQL and Redis included),
    then only the thread holding the GIL (what uses the process's one core)."""
    py_spy = ["uv", "run", "--with", "py-spy", "py-spy"]
    subprocess.run([*py_spy, "--version"], cwd=ROOT, check=True, capture_output=True)
    load: dict = {}

    def drive():
        load.update(throughput([target], headers, bodies, concurrency=16, seconds=2 * seconds + 8,
                               warmup=1, tool=tool))  # fmt: skip

    driver = threading.Thread(target=drive)
    driver.start()
    time.sleep(3)
    out = {}
    for kind, extra in (("threads", []), ("gil", ["--gil"])):
        path = stem.with_name(f"{stem.name}-{kind}.txt")
        subprocess.run([*py_spy, "record", "--pid", str(pid), "--duration", str(seconds),
                        "--rate", "200", "--format", "raw", "--output", str(path), "--nonblocking",
                        *extra], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        out[kind] = {"raw": str(path), **summarise_profile(path)}
    driver.join()
    return {**out, "load": load}


AREAS = [  # (area, substrings of a frame's file), first match wins; for self time
    ("PostgreSQL driver (psycopg)", ("psycopg",)),
    ("SQLite driver", ("sqlite3",)),
    ("Django ORM and db backend", ("django/db/",)),
    ("Django request/response handling", ("django/",)),
    ("asgiref sync/async bridge", ("asgiref/",)),
    ("threads and futures", ("concurrent/futures", "threading.py", "queue.py")),
    ("event loop (asyncio/uvloop)", ("asyncio/", "uvloop")),
    ("uvicorn / httptools server", ("uvicorn/", "httptools", "h11/")),
    ("upstream HTTP client", ("aiohttp/", "httpx/", "httpcore/", "anyio/", "httpx_aiohttp")),
    ("Redis client", ("redis/",)),
    ("JSON", ("json/",)),
    ("logging", ("logging/",)),
    ("ByteSpike code", ("billing/", "generation/", "accounts/", "console/", "core/")),
]


def _frame_file(frame: str) -> str:
    return frame[frame.rfind("(") + 1 : frame.rfind(")")] if "(" in frame else frame


def summarise_profile(path: Path) -> dict:
    """Self time by area and by function, and the ByteSpike functions with most time inside."""
    areas, leaves, inside = Counter(), Counter(), Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        leaf_file = _frame_file(frames[-1])
        area = next((a for a, keys in AREAS if any(k in leaf_file for k in keys)), "other")
        areas[area] += samples
        leaves[frames[-1].rsplit(":", 1)[0] + ")"] += samples
        own = {
            f.rsplit(":", 1)[0] + ")"
            for f in frames
            if any(f"({d}" in f for d in ("billing/", "generation/", "accounts/"))
        }
        for function in own:
            inside[function] += samples

    def share(counter: Counter, n: int) -> list:
        return [[name, round(100 * c / total, 1)] for name, c in counter.most_common(n)]

    return {
        "samples": total,
        "self_by_area": share(areas, 20),
        "self_by_function": share(leaves, 15),
        "bytespike_inclusive": share(inside, 15),
    }


def print_profile(profile: dict, what: str) -> None:
    print(f"\nprofile of {what} (py-spy, 200 Hz; load meanwhile "
          f"{profile['load'].get('calls_per_s', 0):.0f} calls/s)")  # fmt: skip
    for kind, title in (("threads", "all busy threads"), ("gil", "thread holding the GIL")):
        summary = profile[kind]
        print(f"\n{title}: {summary['samples']} samples, raw stacks in {summary['raw']}")
        print("self time by area: " + "; ".join(f"{a} {p}%" for a, p in summary["self_by_area"]))
        print("self time, top functions:")
        for name, pct in summary["self_by_function"]:
            print(f"  {pct:5.1f}%  {name}")
        print("time inside ByteSpike functions (inclusive):")
        for name, pct in summary["bytespike_inclusive"]:
            print(f"  {pct:5.1f}%  {name}")
