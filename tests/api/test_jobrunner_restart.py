"""Jobs survive a restart of the service: a job left ``running`` by a server that died (its
worker is gone) and a job still ``queued`` are both run by the next runner that starts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from api.jobs.params import validate_params
from api.jobs.runner import JobRunner
from core import migrate
from core.db import make_engine, session_factory
from core.jobs import claim, create_job
from core.models import JobStatus
from core.settings import Settings


def test_a_new_runner_finishes_what_a_dead_server_left(tmp_path: Path):
    from deblur.infer import random_init_checkpoint

    url = f"sqlite:///{tmp_path / 'reloblur.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    data_dir = tmp_path / "data"
    (data_dir / "inbox").mkdir(parents=True)
    for name in ("a", "b"):
        img = np.random.default_rng(len(name)).integers(0, 255, (40, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(data_dir / f"inbox/{name}.png"), img)
    random_init_checkpoint("lbag", data_dir / "lbag.pt", seed=0, num_res=1)
    settings = Settings(data_dir=data_dir, database_url=url, device="cpu", dask_workers=1,
                        job_max_attempts=3)
    ids = []
    with session_factory(engine)() as session:
        for name in ("a", "b"):
            kind, model = validate_params("deblur", {"inputs": [f"inbox/{name}.png"],
                                                     "checkpoint": "lbag.pt",
                                                     "out": f"out/{name}"}, settings)
            ids.append(create_job(session, kind, model.model_dump(mode="json"),
                                  max_attempts=3).id)
        session.commit()
    # the first job was running on a worker of a server that has since died
    assert claim(engine, ids[0], "tcp://127.0.0.1:1") is not None

    with JobRunner(settings, n_workers=1, processes=False) as runner:
        jobs = [runner.wait(job_id, timeout=120) for job_id in ids]
    engine.dispose()
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED]
    assert [j.attempts for j in jobs] == [2, 1]  # the dead server's attempt counts
    for name, job in zip(("a", "b"), jobs, strict=True):
        [row] = job.result["images"]
        assert row["deblurred"] == f"out/{name}/{name}_deblurred.png"
        assert cv2.imread(str(data_dir / row["deblurred"])).shape == (40, 32, 3)
