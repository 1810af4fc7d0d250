"""Jobs on a real Dask cluster at an address (``RELOBLUR_DASK_SCHEDULER``), started the way
docker-compose.yml starts it: ``dask scheduler`` and ``dask worker`` processes, here on
loopback. The runner connects with no code change and a job runs on the external worker."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from api.jobs.params import validate_params
from api.jobs.runner import JobRunner
from core import migrate
from core.db import make_engine, session_factory
from core.jobs import create_job
from core.models import JobStatus
from core.settings import Settings

DASK = Path(sys.executable).parent / "dask"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path: Path):
    """A scheduler and one worker process (1 thread), as separate programs; their address."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "dask.log", "w")  # noqa: SIM115
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=log, stderr=log)]
    procs.append(subprocess.Popen([str(DASK), "worker", address, "--nworkers", "1", "--nthreads",
                                   "1", "--no-dashboard", "--name", "external-worker"],
                                  stdout=log, stderr=log, cwd=tmp_path))
    try:
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def test_a_job_runs_on_a_cluster_at_an_address(tmp_path: Path, cluster: str):
    from deblur.infer import random_init_checkpoint

    url = f"sqlite:///{tmp_path / 'reloblur.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    data_dir = tmp_path / "data"
    (data_dir / "inbox").mkdir(parents=True)
    img = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(data_dir / "inbox/photo.png"), img)
    random_init_checkpoint("lbag", data_dir / "lbag.pt", seed=0, num_res=1)
    settings = Settings(data_dir=data_dir, database_url=url, dask_scheduler=cluster,
                        device="cpu", job_max_attempts=2)
    kind, model = validate_params("deblur", {"inputs": ["inbox/photo.png"],
                                             "checkpoint": "lbag.pt"}, settings)
    with session_factory(engine)() as session:
        job_id = create_job(session, kind, model.model_dump(mode="json"), max_attempts=2).id
        session.commit()
    deadline = time.monotonic() + 120
    with JobRunner(settings) as runner:
        assert runner.cluster is None  # connected, not started here
        while not runner.client.scheduler_info()["workers"]:
            assert time.monotonic() < deadline, "the external worker never joined"
            time.sleep(0.2)
        runner.submit(job_id)
        job = runner.wait(job_id, timeout=120)
    engine.dispose()
    assert job.status == JobStatus.SUCCEEDED, job.error
    worker_addresses = {job.worker}
    assert all(a.startswith("tcp://127.0.0.1:") for a in worker_addresses)
    [row] = job.result["images"]
    out = cv2.imread(str(data_dir / row["deblurred"]))
    assert out.shape == (48, 40, 3)
