"""``reloblur serve --workers 2`` as its users run it: a real process tree on loopback (SQLite).

Two HTTP worker processes listen on the port with SO_REUSEPORT beside the job runner; a job
recorded by an HTTP worker is taken by the runner; a write through one worker is read back
through any; a killed HTTP worker is replaced; SIGTERM stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "reloblur"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listeners(root: psutil.Process, port: int) -> list[psutil.Process]:
    """The processes under ``root`` that listen on ``port``."""
    found = []
    for child in root.children(recursive=True):
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in child.net_connections(kind="tcp")):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_two_http_workers_beside_one_runner(tmp_path):
    env = {**os.environ, "RELOBLUR_DATA_DIR": str(tmp_path / "data"),
           "RELOBLUR_RIGS_DIR": str(REPO / "configs" / "rigs"), "RELOBLUR_DASK_WORKERS": "1"}
    for key in ("RELOBLUR_DATABASE_URL", "RELOBLUR_DASK_SCHEDULER", "RELOBLUR_CHECKPOINT"):
        env.pop(key, None)
    subprocess.run([str(EXE), "db", "upgrade"], env=env, check=True, capture_output=True)
    token = subprocess.run([str(EXE), "token", "create", "--name", "t", "--role", "operator"],
                           env=env, check=True, capture_output=True, text=True).stdout.strip()
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(EXE), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
         "--no-access-log"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        root = psutil.Process(server.pid)
        workers = _wait(lambda: len(_listeners(root, port)) == 2 and _listeners(root, port),
                        120, "two HTTP workers listening")
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                          timeout=30) as c:
            _wait(lambda: c.get("/health").status_code == 200, 60, "health")
            assert c.get("/health").json()["runner"] is True
            # A job recorded by an HTTP worker runs on the serving process's runner (a
            # reprocess of an empty database: it runs, on a Dask worker, and fails at once
            # with its named error).
            r = c.post("/jobs/reprocess", json={})
            assert r.status_code == 202, r.text
            job_url = r.headers["Location"]
            done = _wait(lambda: (j := c.get(job_url).json())["status"] in
                         ("succeeded", "failed") and j, 120, "the job to end")
            assert done["status"] == "failed" and "no scene with pairs" in done["error"], done
            assert done["started_at"] is not None and done["attempts"] == 1
            assert "on tcp://" in done["message"]  # the attempt ran on a Dask worker
        # Many connections: each answers, whichever worker it reached, and sees the job.
        for _ in range(8):
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
                assert done["id"] in {j["id"] for j in c.get("/jobs").json()}
        # A killed HTTP worker is replaced; the service goes on.
        victim = workers[0]
        victim.kill()
        _wait(lambda: len(_listeners(root, port)) == 2 and victim.pid not in
              {p.pid for p in _listeners(root, port)}, 120, "a replacement HTTP worker")
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            _wait(lambda: all(c.get("/scenes").status_code == 200 for _ in range(4)), 60,
                  "answers after the restart")
        # SIGTERM: everything stops, nothing is left behind.
        children = root.children(recursive=True)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        _wait(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                              for p in children), 30, "the children to exit")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    logged = (tmp_path / "serve.log").read_text()
    # the project's loggers are on: the audit line of the write, with its caller
    assert "reloblur.audit: POST /api/v1/jobs/reprocess -> 202 by token 1 't' (operator)" in logged
    assert '"GET /api/v1/scenes' not in logged  # no access log unless asked for


def test_several_workers_need_a_fixed_port(tmp_path):
    env = {**os.environ, "RELOBLUR_DATA_DIR": str(tmp_path / "data")}
    env.pop("RELOBLUR_DATABASE_URL", None)
    subprocess.run([str(EXE), "db", "upgrade"], env=env, check=True, capture_output=True)
    done = subprocess.run([str(EXE), "serve", "--port", "0", "--workers", "2"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "fixed port" in done.stderr
