"""The lab service under load: read latency with 50 concurrent clients, and job start latency.

Set-up (a fresh data directory in a temporary folder, SQLite unless ``--database-url``):
``reloblur db upgrade``; a lightbox frame per camera (``reloblur capture-lightbox``); an admin
token (``reloblur token create``); ``reloblur serve --workers W`` (``--workers``, default 2:
two HTTP processes beside the job runner and its Dask LocalCluster of 2 worker processes) in
its own process tree on loopback; then, through the API, a capture job on the simulated rig
(``twin``, 2 pairs) and a post-processing job of that scene, so that the read endpoints return
real rows. The read cache and the token cache are on, as they are by default.

Read load, two ways, each ``--seconds`` (30) long over the read endpoints below:

* closed loop (the issue's "50 concurrent clients"): ``--clients`` (50) connections that each
  send the next request as soon as the answer is in. With ``wrk`` installed (Debian package
  ``wrk``; a C load generator that takes little CPU from the server) it drives the load, the
  paths in rotation; otherwise asyncio + httpx does. Latency then is mostly queueing: by
  Little's law p50 ≈ clients / throughput, so it measures the server's throughput. After a
  5 s warm-up, ``--runs`` (3) runs; the table gives each and their medians.
* paced: ``--clients`` asyncio clients that each send ``--rate`` (2) requests per second on a
  fixed schedule (operators' pages and batch scripts polling), timed from the scheduled send to
  the end of the body, per endpoint.

The load generator runs on the same machine as the server (2 cores here).

Job start latency: ``--jobs`` (10) post-processing jobs of the captured scene (every product
already exists, so each job is short) are submitted one after another, each once the previous
has ended; the latency is ``started_at - created_at`` of the job's row (the server's clocks:
recorded → claimed by a Dask worker).

    .venv/bin/python benchmarks/bench_api.py                 # ~3 min
    .venv/bin/python benchmarks/bench_api.py --workers 1     # one process: HTTP and runner
    .venv/bin/python benchmarks/bench_api.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
        # (in a schema of its own, dropped at the end)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
READS = (
    "/api/v1/health",
    "/api/v1/scenes",
    "/api/v1/scenes/bench",
    "/api/v1/captures",
    "/api/v1/jobs?limit=20",
    "/api/v1/products",
    "/api/v1/rigs",
)
TARGET_P99_MS = 25.0


def fresh_schema(url: str, cleanup: ExitStack) -> str:
    """``url`` in a new schema of its own (PostgreSQL), dropped when ``cleanup`` closes; other
    URLs unchanged. The benchmark leaves nothing in the database it was pointed at."""
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.pool import NullPool

    if make_url(url).get_backend_name() != "postgresql":
        return url
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, poolclass=NullPool)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    cleanup.callback(drop)
    return (make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reloblur(env: dict[str, str], *args: str) -> str:
    exe = Path(sys.executable).parent / "reloblur"
    done = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"reloblur {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def wait_job(client: httpx.Client, url: str, timeout: float = 300.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        job = client.get(url).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise SystemExit(f"job {url} did not end within {timeout} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def read_load(base: str, token: str, clients: int, seconds: float,
                    rate: float | None = None) -> dict[str, list]:
    """Per endpoint: a list of (latency_s, status) for every request made. ``rate`` None: closed
    loop; else each client sends ``rate`` requests/s on a fixed schedule (latency counted from
    the scheduled time, so a late send counts against the server)."""
    results: dict[str, list] = {path: [] for path in READS}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as http:
        start = time.perf_counter()
        stop = start + seconds

        async def client(k: int) -> None:
            i = k
            due = start + (k / clients / rate if rate else 0.0)
            while time.perf_counter() < stop:
                if rate:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                path = READS[i % len(READS)]
                i += 1
                t0 = due if rate else time.perf_counter()
                r = await http.get(path)
                await r.aread()
                results[path].append((time.perf_counter() - t0, r.status_code))
                due += 1.0 / rate if rate else 0.0

        await asyncio.gather(*(client(k) for k in range(clients)))
    return results


WRK_SCRIPT = """paths = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end
"""


def wrk_load(base: str, token: str, clients: int, seconds: float, folder: Path) -> dict:
    """Closed loop with wrk: requests/s, p50/p99 latency (ms), non-2xx count."""
    script = folder / "rotate.lua"
    script.write_text(WRK_SCRIPT % ", ".join(f'"{p}"' for p in READS))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--latency", "-s", str(script),
         "-H", f"Authorization: Bearer {token}", base],
        capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        value = next(line.split()[1] for line in out.splitlines() if line.strip().startswith(label))
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
        unit = value.lstrip("0123456789.")
        return float(value[: len(value) - len(unit)]) * scale[unit]

    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    bad = sum(int(line.split()[-1]) for line in out.splitlines() if "Non-2xx" in line)
    total = int(next(line.split()[0] for line in out.splitlines() if "requests in" in line))
    return {"rps": rps, "p50": ms("50%"), "p99": ms("99%"), "non_2xx": bad, "requests": total}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--jobs", type=int, default=10)
    p.add_argument("--rate", type=float, default=2.0, help="requests/s per paced client")
    p.add_argument("--database-url", default=None)
    p.add_argument("--workers", type=int, default=2, help="HTTP worker processes of serve")
    p.add_argument("--runs", type=int, default=3, help="closed-loop runs (after a warm-up)")
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False,
                   help="uvicorn's access log (one line per request, to a file here)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp, ExitStack() as cleanup:
        port = free_port()
        env = {
            **os.environ,
            "RELOBLUR_DATA_DIR": tmp,
            "RELOBLUR_RIGS_DIR": str(ROOT / "configs" / "rigs"),
            "RELOBLUR_DASK_WORKERS": "2",
        }
        env.pop("RELOBLUR_DASK_SCHEDULER", None)
        if args.database_url:
            env["RELOBLUR_DATABASE_URL"] = fresh_schema(args.database_url, cleanup)
        reloblur(env, "db", "upgrade")
        reloblur(env, "capture-lightbox", "--rig", str(ROOT / "configs" / "rigs" / "twin.yaml"),
                 "--exposure-ms", "1.8", "--nd", "0.125")
        token = reloblur(env, "token", "create", "--name", "bench", "--role", "admin").split()[-1]
        exe = Path(sys.executable).parent / "reloblur"
        server = subprocess.Popen(
            [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(args.workers),
             "--access-log" if args.access_log else "--no-access-log"], env=env,
            stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "server.log", "w"),  # noqa: SIM115
        )
        base = f"http://127.0.0.1:{port}"
        try:
            http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            t0 = time.monotonic()
            while True:
                try:
                    if http.get("/api/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() - t0 > 120 or server.poll() is not None:
                    raise SystemExit((Path(tmp) / "server.log").read_text())
                time.sleep(0.2)
            print(f"server up in {time.monotonic() - t0:.1f} s; seeding a capture and its processing")
            r = http.post("/api/v1/captures", json={"rig": "twin", "scene": "bench", "pairs": 2, "sharp_blur": 2.5})
            r.raise_for_status()
            job = wait_job(http, r.headers["Location"])
            assert job["status"] == "succeeded", job
            r = http.post("/api/v1/jobs/postprocess", json={"scene": "bench"})
            job = wait_job(http, r.headers["Location"])
            assert job["status"] == "succeeded", job

            starts = []
            for _ in range(args.jobs):
                r = http.post("/api/v1/jobs/postprocess", json={"scene": "bench"})
                job = wait_job(http, r.headers["Location"])
                created = datetime.fromisoformat(job["created_at"])
                started = datetime.fromisoformat(job["started_at"])
                starts.append((started - created).total_seconds() * 1000)

            def closed_loop(seconds: float) -> dict:
                if shutil.which("wrk"):
                    return wrk_load(base, token, args.clients, seconds, Path(tmp))
                rows = asyncio.run(read_load(base, token, args.clients, seconds))
                lat = [x * 1000 for r in rows.values() for x, _ in r]
                return {"rps": len(lat) / seconds, "p50": percentile(lat, 50),
                        "p99": percentile(lat, 99), "requests": len(lat),
                        "non_2xx": sum(1 for r in rows.values() for _, c in r if c != 200)}

            closed_by = "wrk" if shutil.which("wrk") else "asyncio + httpx"
            closed_loop(5.0)  # warm-up
            runs = []
            for k in range(args.runs):
                print(f"closed loop {k + 1}/{args.runs}: {args.clients} clients for "
                      f"{args.seconds:.0f} s")
                runs.append(closed_loop(args.seconds))
            print(f"paced: {args.clients} clients x {args.rate:g} req/s for {args.seconds:.0f} s")
            results = asyncio.run(read_load(base, token, args.clients, args.seconds, args.rate))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    db = "PostgreSQL" if args.database_url else "SQLite"
    median = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
    lines = [
        f"### API read load, loopback, {db}, `reloblur serve --workers {args.workers}` "
        f"(access log {'on' if args.access_log else 'off'})",
        "",
        f"Closed loop ({closed_by}, {args.clients} connections, {args.seconds:.0f} s per run, "
        "the seven read endpoints in rotation):",
        "",
        "| run | requests/s | p50 (ms) | p99 (ms) | requests | non-2xx |",
        "| --- | --- | --- | --- | --- | --- |",
        *(f"| {k + 1} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['requests']} | "
          f"{r['non_2xx']} |" for k, r in enumerate(runs)),
        f"| **median** | **{median['rps']:.0f}** | **{median['p50']:.1f}** | "
        f"**{median['p99']:.1f}** | | |",
        "",
        f"Target read p99 ≤ {TARGET_P99_MS:.0f} ms (median of the runs): "
        f"{'met' if median['p99'] <= TARGET_P99_MS else 'NOT met'}.",
        "",
        f"Paced ({args.clients} clients × {args.rate:g} requests/s = {args.clients * args.rate:g} "
        f"offered, {args.seconds:.0f} s):",
        "",
        "| endpoint | requests | p50 (ms) | p99 (ms) |",
        "| --- | --- | --- | --- |",
    ]
    for path, rows in results.items():
        lat = [x * 1000 for x, _ in rows]
        lines.append(f"| GET {path} | {len(rows)} | {percentile(lat, 50):.1f} | "
                     f"{percentile(lat, 99):.1f} |")
    all_ms = [x * 1000 for rows in results.values() for x, _ in rows]
    errors = sum(1 for rows in results.values() for _, status in rows if status != 200)
    p99 = percentile(all_ms, 99)
    lines += [
        f"| **all reads** | {len(all_ms)} ({len(all_ms) / args.seconds:.0f}/s) | "
        f"{percentile(all_ms, 50):.1f} | **{p99:.1f}** |",
        "",
        f"Paced non-200 answers: {errors}; p99 ≤ {TARGET_P99_MS:.0f} ms: "
        f"{'met' if p99 <= TARGET_P99_MS else 'NOT met'}.",
        f"Job submit → start (created_at → started_at, {len(starts)} post-processing jobs in a row): "
        f"median {statistics.median(starts):.0f} ms, min {min(starts):.0f}, max {max(starts):.0f}.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"server ({args.workers} HTTP worker process(es), the job runner and its Dask "
        "LocalCluster) and load generator on the same machine.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
