"""Benchmark ``mailwarden api``: p50/p99 latency at a fixed request rate, as a ratio to the
framework's own "hello" endpoint measured in the same run (issue 11, item 7).

Servers, each its own process on 127.0.0.1, all started before the first round:
  hello     a FastAPI app with one sync route returning ``{"hello": "world"}``, served the
            way ``mailwarden api`` serves its app (uvicorn.Config with access_log=False,
            lifespan="off", ``Server.run`` on a ``daemon.listen.bind`` socket); defined
            here, not in the product
  sqlite    ``mailwarden api`` over SQLite with 100,000 mailboxes (api.log on)
  mariadb   ``mailwarden api`` over MariaDB (tests/servers.MariaDB), the same 100,000

The mailboxes are bulk-inserted through the store's transaction (``Database.transaction``,
multi-row INSERTs of the columns ``store.mailboxes.add`` writes), not through the API.

Requests (HTTP/1.1 keep-alive, admin bearer token, from one asyncio client with raw
sockets): ``one`` = GET /api/v1/mailboxes/<a random one of the 100,000>; ``page`` = GET
/api/v1/mailboxes?limit=100 (page 1). The load is open-loop: request i is sent at
start + i/rate on an idle connection (a new one if none is idle), and its latency counts
from that scheduled time, so a slow answer does not lower the rate or hide the queueing;
a server that falls ``SATURATED`` (50) requests behind is marked so and that measurement
stops there. Then the cursor pages: p50 of page 1, page 100 and page 1000 of
``?limit=100`` (cursors made as ``ops.base.encode_cursor`` makes them; page 2's checked
against the API's).

Each measurement is preceded by an unmeasured closed-loop warm-up (40 connections x 5
requests, 3 s at most): uvicorn's worker threads, and with them the per-thread database
connections, are started then, not during the paced run. Every measurement runs in ``--rounds``
interleaved rounds (hello, sqlite, mariadb one after the other in each round), with the
load average before each round: the machine is shared, so only numbers of the same
round are compared.

Usage:  PYTHONPATH=src python3 bench/bench_api.py [--rate 200] [--seconds 5]
            [--rounds 3] [--mailboxes 100000] [--skip sqlite|mariadb] [--json out.json]
Needs root (MariaDB runs as mysql) and mariadbd for the mariadb rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

DOMAIN = "bench.test"
HASH = "{CRYPT}$6$benchsalt$" + "x" * 86  # never checked: the bench logs in with a token
PAGES = (1, 100, 1000)
SATURATED = 50  # requests in flight at which a measurement stops: the server is behind

HELLO_SERVER = r"""
import sys
import uvicorn
from fastapi import FastAPI
from mailwarden.daemon import listen

app = FastAPI()

@app.get("/hello")
def hello() -> dict[str, str]:
    return {"hello": "world"}

sock = listen.bind(listen.parse(f"127.0.0.1:{sys.argv[1]}"))
config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
uvicorn.Server(config).run(sockets=[sock])
"""


# --- the load generator ------------------------------------------------------------------


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _open(port: int) -> Conn:
    return await asyncio.open_connection("127.0.0.1", port)


async def _exchange(conn: Conn, raw: bytes) -> tuple[int, bytes]:
    reader, writer = conn
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


def request(path: str, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()


async def _paced(port: int, make: Callable[[int], bytes], rate: float, seconds: float) -> Any:
    """Open loop: request i at start + i/rate; latency from that scheduled time."""
    idle: list[Conn] = [await _open(port) for _ in range(4)]
    lat: list[float] = []
    bad: list[int] = []

    async def one(i: int, scheduled: float) -> None:
        conn = idle.pop() if idle else await _open(port)
        status, _ = await _exchange(conn, make(i))
        lat.append(time.perf_counter() - scheduled)
        if status != 200:
            bad.append(status)
        idle.append(conn)

    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks: list[asyncio.Task[None]] = []
    saturated = False
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if sum(not t.done() for t in tasks[-SATURATED:]) >= SATURATED:
            saturated = True  # the server cannot keep up: stop, the queue only grows
            break
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for _, writer in idle:
        writer.close()
    if bad:
        raise SystemExit(f"{len(bad)} answers not 200 (first: {bad[0]})")
    return _summary(lat, elapsed) | {"saturated": saturated}


async def _warm(
    port: int, make: Callable[[int], bytes], conns: int = 40, each: int = 5, limit: float = 3.0
) -> None:
    """Closed loop, not measured (at most ``limit`` seconds): the server's worker threads
    and their database connections exist before the paced run (else the paced run
    measures their start; docs/benchmarks.md, "REST API")."""
    deadline = time.perf_counter() + limit

    async def worker(k: int) -> None:
        conn = await _open(port)
        try:
            for j in range(each):
                if time.perf_counter() > deadline:
                    break
                await _exchange(conn, make(k * each + j))
        finally:
            conn[1].close()

    await asyncio.gather(*(worker(k) for k in range(conns)))


def _summary(lat: list[float], elapsed: float) -> dict[str, Any]:
    lat.sort()
    q = statistics.quantiles(lat, n=100)
    return {
        "requests": len(lat),
        "rps": round(len(lat) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "max_ms": round(lat[-1] * 1000, 2),
    }


async def _get(port: int, path: str, token: str) -> Any:
    conn = await _open(port)
    try:
        status, body = await _exchange(conn, request(path, token))
    finally:
        conn[1].close()
    if status != 200:
        raise SystemExit(f"GET {path}: {status} {body[:200]!r}")
    return json.loads(body)


async def _cursors(port: int, token: str) -> dict[int, str | None]:
    """The cursor of pages 1, 100 and 1000 of ?limit=100: the address before each page's
    first, as ``ops.base.encode_cursor`` makes it (the API's page-2 cursor checked)."""
    from mailwarden.ops.base import encode_cursor

    found: dict[int, str | None] = {
        page: encode_cursor(f"u{(page - 1) * 100 - 1:06d}@{DOMAIN}") if page > 1 else None
        for page in (*PAGES, 2)
    }
    first = await _get(port, "/api/v1/mailboxes?limit=100", token)
    if first["next_cursor"] != found.pop(2):
        raise SystemExit(f"unexpected cursor {first['next_cursor']!r}: the bench needs fixing")
    return found


# --- the servers -------------------------------------------------------------------------


def free_port() -> int:
    from tests.servers import free_port as fp

    return fp()


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(_probe(port, path))
            return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server on port {port} did not start")
        time.sleep(0.1)


async def _probe(port: int, path: str) -> None:
    conn = await _open(port)
    try:
        await _exchange(conn, request(path, None))
    finally:
        conn[1].close()


def start_hello() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen([sys.executable, "-c", HELLO_SERVER, str(port)], env=env)
    wait_http(port, "/hello", proc)
    return proc, port


def prepare(base: Path, url: str, n: int) -> tuple[Path, str]:
    """Schema, the domain, ``n`` mailboxes bulk-inserted, an admin token; (config, token)."""
    from tests.conftest import Cli, write_config

    from mailwarden.store import domains, groups
    from mailwarden.store.db import Database

    base.mkdir(exist_ok=True)
    (base / "vmail").mkdir(exist_ok=True)
    cfg = write_config(base / "cfg.toml", url, base / "vmail")
    cli = Cli(cfg, url)
    cli.ok("db", "init")
    cli.ok("domain", "add", DOMAIN)
    t0 = time.perf_counter()
    db = Database(url)
    try:
        with db.transaction() as tx:
            domain_id = domains.require(tx, DOMAIN).id
            group_id = groups.require(tx, groups.DEFAULT).id
            now = int(time.time())
            for start in range(0, n, 1000):
                params: list[object] = []
                for i in range(start, min(n, start + 1000)):
                    local = f"u{i:06d}"
                    params += [domain_id, local, f"{local}@{DOMAIN}", HASH, ""]
                    params += [f"{DOMAIN}/{local}/", 0, 0, group_id, 7, 1, now]
                rows = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * (len(params) // 12))
                tx.execute(
                    "INSERT INTO mailboxes (domain_id, local_part, address, password, name,"
                    " maildir, quota_bytes, quota_messages, group_id, services, active,"
                    f" created_at) VALUES {rows}",
                    params,
                )
    finally:
        db.close()
    print(f"  {n} mailboxes inserted in {time.perf_counter() - t0:.1f} s", flush=True)
    token = json.loads(cli.ok("token", "create", "bench", "--role", "admin", "--json"))["token"]
    return cfg, str(token)


def start_api(base: Path, cfg: Path) -> tuple[subprocess.Popen[bytes], int]:
    from tests.conftest import mailwarden_bin

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [*mailwarden_bin(), "api", "--config", str(cfg), "--listen", f"127.0.0.1:{port}"]
        + ["--log", str(base / "api.log")],
        env=env,
        stderr=(base / "api.err").open("wb"),
    )
    wait_http(port, "/api/v1/openapi.json", proc)
    return proc, port


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- the run -----------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mailboxes", type=int, default=100_000)
    ap.add_argument("--skip", action="append", default=[], help="sqlite|mariadb")
    ap.add_argument("--json")
    args = ap.parse_args()
    from tests.servers import MariaDB, make_workdir

    base = make_workdir("mw-bench-api-")
    procs: list[subprocess.Popen[bytes]] = []
    db = None
    results: dict[str, Any] = {"rounds": [], "load": []}
    try:
        hello, hello_port = start_hello()
        procs.append(hello)
        apis: dict[str, tuple[int, str, dict[int, str | None]]] = {}
        for name in ("sqlite", "mariadb"):
            if name in args.skip:
                continue
            print(f"{name}: preparing", flush=True)
            if name == "sqlite":
                url = f"sqlite:///{base}/sqlite.db"
            else:
                db = MariaDB(base)
                db.start()
                url = db.create_database("bench", "bench", "pw")
            cfg, token = prepare(base / name, url, args.mailboxes)
            proc, port = start_api(base / name, cfg)
            procs.append(proc)
            got = asyncio.run(_get(port, f"/api/v1/mailboxes/u000001@{DOMAIN}", token))
            assert got["address"] == f"u000001@{DOMAIN}", got
            apis[name] = (port, token, asyncio.run(_cursors(port, token)))
        rng = random.Random(11)
        n, secs = args.mailboxes, args.seconds
        for rnd in range(1, args.rounds + 1):
            load = os.getloadavg()
            results["load"].append(load)
            print(f"round {rnd}: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
            row: dict[str, Any] = {}
            hello_req = request("/hello", None)
            row["hello"] = measure("hello", hello_port, lambda i, r=hello_req: r, args.rate, secs)
            for name, (port, token, cursors) in apis.items():
                boxes = [rng.randrange(n) for _ in range(int(args.rate * secs))]

                def one(i: int, t: str = token, b: list[int] = boxes) -> bytes:
                    return request(f"/api/v1/mailboxes/u{b[i % len(b)]:06d}@{DOMAIN}", t)

                row[f"{name} one"] = measure(f"{name} one", port, one, args.rate, secs)
                page1 = request("/api/v1/mailboxes?limit=100", token)
                row[f"{name} page"] = measure(
                    f"{name} page", port, lambda i, r=page1: r, args.rate, secs
                )
                for page in PAGES:
                    cur = cursors[page]
                    path = "/api/v1/mailboxes?limit=100" + (f"&cursor={cur}" if cur else "")
                    raw = request(path, token)
                    label = f"{name} page {page}"
                    row[label] = measure(label, port, lambda i, r=raw: r, args.rate, secs / 2)
            results["rounds"].append(row)
    finally:
        for p in procs:
            stop(p)
        if db is not None:
            db.stop()
        shutil.rmtree(base, ignore_errors=True)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def measure(
    label: str, port: int, make: Callable[[int], bytes], rate: float, seconds: float
) -> dict[str, Any]:
    asyncio.run(_warm(port, make))
    r: dict[str, Any] = asyncio.run(_paced(port, make, rate, seconds))
    print(
        f"  {label:22} {r['rps']:6.1f} req/s  p50 {r['p50_ms']:6.2f} ms"
        f"  p99 {r['p99_ms']:6.2f} ms  max {r['max_ms']:7.2f} ms"
        + ("  SATURATED (stopped)" if r["saturated"] else ""),
        flush=True,
    )
    return r


def report(results: dict[str, Any]) -> None:
    """Per measurement: the median over rounds of p50, p99 and their ratio to hello's."""
    rounds = results["rounds"]
    print("\nmedian over rounds (ratio = this / hello of the same round)")
    print(f"{'':22} {'p50 ms':>8} {'p99 ms':>8} {'p50/hello':>10} {'p99/hello':>10}")
    for label in rounds[0]:
        p50 = statistics.median(r[label]["p50_ms"] for r in rounds)
        p99 = statistics.median(r[label]["p99_ms"] for r in rounds)
        r50 = statistics.median(r[label]["p50_ms"] / r["hello"]["p50_ms"] for r in rounds)
        r99 = statistics.median(r[label]["p99_ms"] / r["hello"]["p99_ms"] for r in rounds)
        print(f"{label:22} {p50:8.2f} {p99:8.2f} {r50:9.1f}x {r99:9.1f}x")
    loads = results["load"]
    print("load average (1 min) before each round: " + ", ".join(f"{x[0]:.2f}" for x in loads))


if __name__ == "__main__":
    tempfile.tempdir = None
    sys.exit(main())
