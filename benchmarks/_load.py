"""The benchmarks' load generator: sequential calls timed one by one, and closed-loop throughput.

Why these tools (measured on the 2-core machine, against benchmarks/fake_upstream.py at
concurrency 16, client CPU per call): ``wrk`` (Debian's package) about 0.03 ms and 11,000
calls/s from one thread; aiohttp about 0.35 ms (1,300 calls/s); httpx.AsyncClient about 3 ms
(200 calls/s). The load generator shares the two cores with the servers it measures, so
throughput is driven by ``wrk`` when it is installed (``apt-get install wrk``), with aiohttp
as the fallback, and the generator used is reported. Latency at concurrency 1 and a stream's
first byte are timed per call with aiohttp: a call in flight at a time leaves a core free, the
client's own cost is in the direct baseline too (so it cancels out of "added"), and ``wrk``
cannot see a stream's first byte.

Throughput is closed-loop: ``concurrency`` keep-alive connections, each sending its next call
when the previous one answered, for a fixed time after a warm-up. Several servers (two web
processes) share the connections: ``wrk`` gives each server its own thread with an equal
share of the connections (like a load balancer pinning keep-alive connections), aiohttp
alternates calls between them.
"""

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from urllib.parse import urlparse

import aiohttp

WRK_SCRIPT = """
local ports = {%(ports)s}
local bodies = {%(bodies)s}
local path = %(path)s
local headers = {%(headers)s}
local threads = 0
function setup(thread)
  thread.addr = wrk.lookup("127.0.0.1", tostring(ports[threads %% #ports + 1]))[1]
  threads = threads + 1
end
local sent = 0
function request()
  sent = sent + 1
  return wrk.format("POST", path, headers, bodies[sent %% #bodies + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"calls": %%d, "duration_us": %%d, "errors": %%d, "p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def generator(prefer: str = "auto") -> str:
    """``wrk`` or ``aiohttp``: what drives the throughput runs."""
    if prefer == "aiohttp" or (prefer == "auto" and not shutil.which("wrk")):
        return "aiohttp"
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    return "wrk"


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _lua(text: str) -> str:
    return "[==[" + text + "]==]"


# --- One call at a time ----------------------------------------------------------------------


async def _sequential(url, headers, body: bytes, *, seconds, warmup, stream) -> dict:
    samples: list[float] = []
    errors = 0
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as s:
        for phase, length in (("warmup", warmup), ("measure", seconds)):
            deadline = time.perf_counter() + length
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    async with s.post(url, data=body) as response:
                        if stream:
                            first = await response.content.readany()
                            elapsed = time.perf_counter() - started
                            whole = first + await response.read()
                            ok = response.status == 200 and b"[DONE]" in whole
                        else:
                            await response.read()
                            elapsed = time.perf_counter() - started
                            ok = response.status == 200
                except aiohttp.ClientError:  # a broken answer: a failed call
                    ok = False
                if phase != "measure":
                    continue
                errors += not ok
                if ok:
                    samples.append(elapsed * 1000)
    return {
        "calls": len(samples) + errors,
        "p50_ms": statistics.median(samples) if samples else None,  # of the calls that worked
        "p99_ms": _percentile(samples, 0.99) if samples else None,
        "errors": errors,
    }


def sequential(
    url: str,
    headers: dict,
    body: dict,
    *,
    seconds: float,
    warmup: float = 1.0,
    stream: bool = False,
) -> dict:
    """Calls one after another for ``seconds``: latency (or, streamed, time to the first body
    bytes) at p50 and p99 in ms. A streamed call counts as an error unless it ends in [DONE]."""
    payload = json.dumps({**body, "stream": True} if stream else body).encode()
    headers = {"content-type": "application/json", **headers}
    return asyncio.run(
        _sequential(url, headers, payload, seconds=seconds, warmup=warmup, stream=stream)
    )


# --- Throughput ------------------------------------------------------------------------------


def _wrk(urls, headers, bodies, *, concurrency, seconds) -> dict:
    parsed = [urlparse(url) for url in urls]
    threads = len(urls)
    script = WRK_SCRIPT % {
        "ports": ", ".join(str(p.port) for p in parsed),
        "bodies": ", ".join(_lua(b) for b in bodies),
        "path": _lua(parsed[0].path + (f"?{parsed[0].query}" if parsed[0].query else "")),
        "headers": ", ".join(f"[ {_lua(k)} ] = {_lua(v)}" for k, v in headers.items()),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    try:
        argv = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(max(concurrency, threads)),
            "-d",
            f"{seconds}s",
            "--timeout",
            "30s",
            "-s",
            file.name,
            urls[0],
        ]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(file.name)
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    if not result["calls"]:  # nothing answered during the run: count the calls left hanging
        result["errors"] = max(result["errors"], concurrency)
    return {
        "calls": result["calls"],
        "calls_per_s": result["calls"] / (result["duration_us"] / 1e6),
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "errors": result["errors"],
    }


async def _closed_loop(urls, headers, bodies, *, concurrency, seconds) -> dict:
    samples: list[float] = []
    errors = 0
    sent = 0
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as s:
        deadline = time.perf_counter() + seconds

        async def worker():
            nonlocal errors, sent
            while time.perf_counter() < deadline:
                url, body = urls[sent % len(urls)], bodies[sent % len(bodies)]
                sent += 1
                started = time.perf_counter()
                try:
                    async with s.post(url, data=body) as response:
                        await response.read()
                        errors += response.status >= 400
                except aiohttp.ClientError:
                    errors += 1
                samples.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {
        "calls": len(samples),
        "calls_per_s": len(samples) / elapsed,
        "p50_ms": statistics.median(samples),
        "p99_ms": _percentile(samples, 0.99),
        "errors": errors,
    }


def throughput(
    urls: list[str],
    headers: dict,
    bodies: list[dict],
    *,
    concurrency: int,
    seconds: float,
    warmup: float = 2.0,
    tool: str = "auto",
    cpu=None,
    db_cpu=None,
) -> dict:
    """Closed-loop calls per second over ``urls`` (same path, one port each), cycling through
    ``bodies``; with p50/p99 latency in ms and the count of failed calls (non-2xx, broken).

    ``cpu``, a function giving the servers' CPU seconds so far, adds ``calls_per_cpu_s``: calls
    per CPU second the servers used, about what they would answer with a core each to
    themselves, whoever else shares the machine. ``db_cpu``, the same for the database's
    processes, adds ``db_cpu_ms_per_call``.
    """
    headers = {"content-type": "application/json", **headers}
    payloads = [json.dumps(body) for body in bodies]
    encoded = [p.encode() for p in payloads]
    tool = generator(tool)
    results = []
    used = db_used = 0.0
    for length in (warmup, seconds):
        used = cpu() if cpu else 0.0
        db_used = db_cpu() if db_cpu else 0.0
        if tool == "wrk":
            run = _wrk(
                urls, headers, payloads, concurrency=concurrency, seconds=max(1, round(length))
            )
        else:
            run = asyncio.run(_closed_loop(urls, headers, encoded, concurrency=concurrency,
                                           seconds=length))  # fmt: skip
        results.append(run)
    measured, warm = results[-1], results[0]
    if cpu:
        used = cpu() - used
        measured["server_cpu_s"] = round(used, 2)
        measured["calls_per_cpu_s"] = measured["calls"] / used if used else None
    if db_cpu and measured["calls"]:
        measured["db_cpu_ms_per_call"] = 1000 * (db_cpu() - db_used) / measured["calls"]
    return {**measured, "warmup_calls": warm["calls"], "warmup_errors": warm["errors"],
            "generator": tool, "load_average": os.getloadavg()[0]}  # fmt: skip
