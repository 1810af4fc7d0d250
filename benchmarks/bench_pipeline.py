"""Benchmark the post-processing pipeline: one whole pair at 2152×1436 with the scene's flow cached.

Set-up (not timed): the ``car`` preset at full sensor size is simulated (lightbox, whiteboard,
reference, 2 pairs), imported into a fresh SQLite database and processed once with the default
parameters, so that the calibrations, the flow and the scene colour exist.

Timed, ``--repeats`` times (default 5): one pair's products are deleted (rows and files) and
``process_scene`` is run again. That run loads the cached flow and scene colour, finds the
calibrations, reads and checksums both DNGs, runs the ISP on S and on B (α, β, Menon, white
balance, colour matrix), warps B by the flow with CMTF, encodes both to 8-bit sRGB PNG and
commits their rows; the masks are found unchanged and reused. The table gives the median and
min–max of the whole call, then a per-step breakdown measured on the same pair by calling the
steps directly. Target: ≤ 2 s per pair.

Run from the repository root on an idle machine:

    .venv/bin/python benchmarks/bench_pipeline.py [--repeats 5]

The last line is machine-readable: ``BENCH_PIPELINE {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

from acquisition.raw_import import import_scene
from core import migrate
from core.db import make_engine, session_factory
from core.filestore import sha256_file, write_png
from core.models import Capture, CaptureKind, Frame, Product, ProductKind
from core.rawio import read_raw
from hardware_sim.scene_writer import simulate_scene
from hardware_sim.spec import load_preset
from postprocess.isp import encode_srgb, run_isp
from postprocess.pipeline import ScenePipeline
from postprocess.warp import warp

TARGET_S = 2.0


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        simulate_scene(load_preset("car"), 2, root / "sim")
        url = f"sqlite:///{root / 'db.sqlite'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        data_dir = root / "data"
        scene = import_scene(root / "sim", None, engine, data_dir).scene
        pipeline = ScenePipeline(engine, data_dir)
        t1 = time.perf_counter()
        first = pipeline.process(scene)
        t2 = time.perf_counter()
        assert not first.failures, first.failures
        sessions = session_factory(engine)
        pair = first.pairs[0]
        whole = []
        for _ in range(args.repeats):
            with sessions() as session:
                for pid in (pair.blurred, pair.sharp):
                    row = session.scalar(select(Product).where(Product.params_hash == (
                        pair.blurred_hash if pid == pair.blurred else pair.sharp_hash)))
                    (data_dir / row.path).unlink()
                    session.delete(row)
                session.commit()
            start = time.perf_counter()
            outcome = pipeline.process(scene)
            whole.append(time.perf_counter() - start)
            assert outcome.made == {"blurred": 1, "sharp": 1}, outcome.made
            pair = outcome.pairs[0]

        # Per-step breakdown on the same pair (the steps of postprocess.stages.pairs, called directly).
        colour = outcome.info["scene_colour"]
        wb, ccm, beta = (np.array(colour[k]) for k in ("wb_gains", "ccm", "beta"))
        with sessions() as session:
            frames = {f.role.value: f for f in session.scalars(select(Frame).join(Capture).where(
                Capture.kind == CaptureKind.PAIR, Capture.trigger_index == 0))}
            flow_path = data_dir / session.scalar(select(Product.path).where(Product.kind == ProductKind.FLOW))
            session.expunge_all()
        calibrations = {r: pipeline.calibration_for(_camera(engine, frames[r].camera_id))[0] for r in "BS"}
        steps: dict[str, list[float]] = {k: [] for k in (
            "load flow (.npy)", "read + sha256 2 DNGs", "ISP S", "ISP B (with β)", "CMTF warp B",
            "sRGB 8-bit encode ×2", "PNG write ×2")}
        out = root / "steps"
        for _ in range(args.repeats):
            t = time.perf_counter()
            flow = np.load(flow_path)
            steps["load flow (.npy)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            raw = {}
            for r in "BS":
                sha256_file(data_dir / frames[r].path)
                raw[r] = read_raw(data_dir / frames[r].path)
            steps["read + sha256 2 DNGs"].append(time.perf_counter() - t)
            t = time.perf_counter()
            s = run_isp(*raw["S"], calibrations["S"], wb, ccm)
            steps["ISP S"].append(time.perf_counter() - t)
            t = time.perf_counter()
            b = run_isp(*raw["B"], calibrations["B"], wb, ccm, beta=beta)
            steps["ISP B (with β)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            b = warp(b, flow, "cmtf")
            steps["CMTF warp B"].append(time.perf_counter() - t)
            t = time.perf_counter()
            s8, b8 = encode_srgb(s), encode_srgb(b)
            steps["sRGB 8-bit encode ×2"].append(time.perf_counter() - t)
            t = time.perf_counter()
            write_png(out / "s.png", s8)
            write_png(out / "b.png", b8)
            steps["PNG write ×2"].append(time.perf_counter() - t)
        engine.dispose()
    cpu = platform.processor() or platform.machine()
    print(f"Machine: {cpu}, {os.cpu_count()} cores; set-up (simulate + import) {t1 - t0:.1f} s, "
          f"first processing of the scene (2 calibrations, flow, 3 pairs, 2 masks) {t2 - t1:.1f} s")
    print()
    print("| step (2152×1436) | seconds, median (min–max) |")
    print("| --- | --- |")
    print(f"| **whole pair, flow cached (`process_scene`)** | **{_median(whole)}** (target ≤ {TARGET_S:g}) |")
    for name, values in steps.items():
        print(f"| {name} | {_median(values)} |")
    print()
    print("BENCH_PIPELINE " + json.dumps({
        "whole_pair_s": statistics.median(whole), "first_scene_s": t2 - t1,
        "steps_s": {k: statistics.median(v) for k, v in steps.items()}, "target_s": TARGET_S,
    }))


def _camera(engine, camera_id: int):
    from core.models import CameraRecord

    with session_factory(engine)() as session:
        camera = session.get(CameraRecord, camera_id)
        session.expunge(camera)
        return camera


if __name__ == "__main__":
    main()
