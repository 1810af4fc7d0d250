"""The lab service under load: read latency with 50 concurrent clients, and job start latency.

Set-up (a fresh data directory in a temporary folder, SQLite unless ``--database-url``):
``reloblur db upgrade``; a lightbox frame per camera (``reloblur capture-lightbox``); an admin token (``reloblur token create``); ``reloblur serve`` in its
own process on loopback with its Dask LocalCluster (2 worker processes); then, through the API,
a capture job on the simulated rig (``twin``, 2 pairs) and a post-processing job of that scene,
so that the read endpoints return real rows.

Read load: ``--clients`` (50) asyncio clients on one httpx connection pool each loop over the
read endpoints below for ``--seconds`` (30); every request is timed from send to the end of the
body. Reported: p50 / p99 latency (ms) and requests/s, overall and per endpoint, and the count
of non-200 answers. The load generator runs on the same machine as the server (2 cores here),
so the figures include its own CPU use.

Job start latency: ``--jobs`` (10) post-processing jobs of the captured scene (every product
already exists, so each job is short) are submitted one after another, each once the previous
has ended; the latency is ``started_at - created_at`` of the job's row (the server's clocks:
recorded → claimed by a Dask worker).

    .venv/bin/python benchmarks/bench_api.py                 # ~2 min
    .venv/bin/python benchmarks/bench_api.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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


async def read_load(base: str, token: str, clients: int, seconds: float) -> dict[str, list]:
    """Per endpoint: a list of (latency_s, status) for every request made."""
    results: dict[str, list] = {path: [] for path in READS}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as http:
        stop = time.perf_counter() + seconds

        async def client(k: int) -> None:
            i = k
            while time.perf_counter() < stop:
                path = READS[i % len(READS)]
                i += 1
                t0 = time.perf_counter()
                r = await http.get(path)
                await r.aread()
                results[path].append((time.perf_counter() - t0, r.status_code))

        await asyncio.gather(*(client(k) for k in range(clients)))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--jobs", type=int, default=10)
    p.add_argument("--database-url", default=None)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp:
        port = free_port()
        env = {
            **os.environ,
            "RELOBLUR_DATA_DIR": tmp,
            "RELOBLUR_RIGS_DIR": str(ROOT / "configs" / "rigs"),
            "RELOBLUR_DASK_WORKERS": "2",
        }
        env.pop("RELOBLUR_DASK_SCHEDULER", None)
        if args.database_url:
            env["RELOBLUR_DATABASE_URL"] = args.database_url
        reloblur(env, "db", "upgrade")
        reloblur(env, "capture-lightbox", "--rig", str(ROOT / "configs" / "rigs" / "twin.yaml"),
                 "--exposure-ms", "1.8", "--nd", "0.125")
        token = reloblur(env, "token", "create", "--name", "bench", "--role", "admin").split()[-1]
        exe = Path(sys.executable).parent / "reloblur"
        server = subprocess.Popen(
            [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
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

            print(f"read load: {args.clients} clients for {args.seconds:.0f} s")
            results = asyncio.run(read_load(base, token, args.clients, args.seconds))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    all_lat = [lat for rows in results.values() for lat, _ in rows]
    errors = sum(1 for rows in results.values() for _, status in rows if status != 200)
    lines = [
        f"### API under load ({args.clients} clients, {args.seconds:.0f} s, loopback, "
        f"{'PostgreSQL' if args.database_url else 'SQLite'})",
        "",
        "| endpoint | requests | req/s | p50 (ms) | p99 (ms) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for path, rows in results.items():
        lat = [x * 1000 for x, _ in rows]
        lines.append(f"| GET {path} | {len(rows)} | {len(rows) / args.seconds:.0f} | "
                     f"{percentile(lat, 50):.1f} | {percentile(lat, 99):.1f} |")
    all_ms = [x * 1000 for x in all_lat]
    p99 = percentile(all_ms, 99)
    lines += [
        f"| **all reads** | {len(all_ms)} | {len(all_ms) / args.seconds:.0f} | "
        f"{percentile(all_ms, 50):.1f} | **{p99:.1f}** |",
        "",
        f"Non-200 answers: {errors}. Target read p99 ≤ {TARGET_P99_MS:.0f} ms: "
        f"{'met' if p99 <= TARGET_P99_MS else 'NOT met'}.",
        f"Job submit → start (created_at → started_at, {len(starts)} post-processing jobs in a row): "
        f"median {statistics.median(starts):.0f} ms, min {min(starts):.0f}, max {max(starts):.0f}.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        "server and load generator on the same machine.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
