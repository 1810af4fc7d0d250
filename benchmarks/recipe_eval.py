"""How well a trained LBAG restores held-out twin scenes: the figures of the CPU recipe.

Scores a checkpoint (default: the shipped ``deblur/weights/lbag_twin_cpu.pt``) on two held-out
sets the twin renders at the recipe's size (1076×718, sharp timing ``centre``):

- the pedestrian preset (an object no training scene shows: scene-disjoint), 8 seeds from 100
  (one fixed scene: the seeds change the cameras' responses, misalignment and trigger jitter);
- random scenes of seeds the training never drew (24 seeds from 200: known objects and
  backgrounds in new places, paths, speeds and exposures). Their gains spread widely from scene
  to scene (a standard deviation of 1.2–1.9 dB PSNRw), so it takes 24 pairs to know the mean
  within about ±0.3 dB (4 pairs: ±0.8 dB); the per-pair gain's standard error is printed with
  each set;

optionally with Gaussian noise of ``--noise-sigma`` (sRGB units) on the blurred inputs, as a
camera's sensor adds (the twin's renders are noise-free); and, with ``--reloblur-root``, a
ReLoBlur-layout folder's test split (``make demo``'s export ``var/exports/demo``: pairs that
came through the whole rig and post-processing pipeline). Every set is scored with the
paper's Table 1 columns (8-bit quantised first) for the blurred input (the floor) and
the model, the gain, and the predicted mask's IoU against the true mask (gate ≥ 0.5). With
``--run-dir`` (a training run's ``out_dir``) it also draws the learning curve (held-out PSNRw
against the input's, from ``val.csv``) and reports the median training speed (``train_log.csv``).

Writes ``<out>/table.md``, ``<out>/results.json``, ``<out>/learning_curve.png`` (with
``--run-dir``) and ``<out>/<set>_before_after.png``: for the first six pairs, blurred | deblurred | sharp |
predicted mask | true mask.

    .venv/bin/python benchmarks/recipe_eval.py [--checkpoint CKPT] [--run-dir var/runs/lbag_cpu]
        [--noise-sigma 0.01] [--reloblur-root var/exports/demo]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from core.filestore import write_png
from deblur.data import to_float01
from deblur.infer import deblur_image, describe_checkpoint, load_checkpoint
from deblur.metrics import METRIC_KEYS, average_metrics, evaluate_pair, format_table, mask_iou
from deblur.reloblur_dataset import ReLoBlurDataset
from hardware_sim.training_data import TwinPairDataset

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "deblur" / "weights" / "lbag_twin_cpu.pt"
COLUMNS = ["name", "PSNR", "SSIM", "PSNRw", "SSIMw", "maskIoU"]


#: Pairs per before/after sheet.
SHEET_PAIRS = 6
#: The noise's seed on the held-out sets (training runs draw theirs from the run's seed).
HELD_OUT_NOISE_SEED = 7


def held_out_sets(args: argparse.Namespace) -> dict[str, TwinPairDataset | ReLoBlurDataset]:
    """The held-out sets (see the module docstring)."""
    size = (args.width, args.height)
    noise = {"noise_sigma": args.noise_sigma, "noise_seed": HELD_OUT_NOISE_SEED}
    suffix = f" (noise σ {args.noise_sigma:g})" if args.noise_sigma > 0 else ""
    sets: dict[str, TwinPairDataset | ReLoBlurDataset] = {
        f"pedestrian{suffix}": TwinPairDataset(["pedestrian"], *size, list(range(100, 100 + args.pedestrian_seeds)),
                                               args.pairs, sharp_timing=args.sharp_timing, **noise),
        f"held-out random{suffix}": TwinPairDataset(["random"], *size, list(range(200, 200 + args.random_seeds)),
                                                    args.pairs, sharp_timing=args.sharp_timing, **noise),
    }
    if args.reloblur_root is not None:
        sets[f"{args.reloblur_root.name} test split"] = ReLoBlurDataset(args.reloblur_root, split="test")
    return sets


def _gray3(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)
    m = m / 255.0 if mask.dtype == np.uint8 else m
    return np.repeat(m[..., None], 3, axis=2)


def score_set(model, dataset: TwinPairDataset | ReLoBlurDataset, picture: Path) -> tuple[list[dict], list[dict]]:
    """Per-pair metric rows of the input and of the model; writes the before/after sheet (the
    first :data:`SHEET_PAIRS` pairs)."""
    floor_rows, model_rows, strips = [], [], []
    for i in range(len(dataset)):
        blur, sharp, mask, sid = dataset.load_arrays(i)
        blur, sharp = to_float01(blur), to_float01(sharp)
        pred, gate = deblur_image(model, blur, str(next(model.parameters()).device))
        floor_rows.append({"name": sid, **evaluate_pair(blur, sharp, mask, aligned=False)})
        row = {"name": sid, **evaluate_pair(pred, sharp, mask, aligned=False)}
        row["maskIoU"] = mask_iou(gate, mask) if gate is not None else None
        model_rows.append(row)
        if i >= SHEET_PAIRS:
            continue
        panels = [blur, pred, sharp, _gray3(gate if gate is not None else np.zeros(mask.shape)),
                  _gray3(mask)]
        strips.append(cv2.resize(np.hstack(panels), None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA))
    write_png(picture, np.clip(np.vstack(strips), 0.0, 1.0))
    return floor_rows, model_rows


def gain_spread(floor_rows: list[dict], model_rows: list[dict]) -> dict[str, float | None]:
    """Standard error of the mean per-pair gain (dB) of PSNR and PSNRw; None with one pair."""
    out: dict[str, float | None] = {}
    for key in ("PSNR", "PSNRw"):
        gains = [m[key] - f[key] for f, m in zip(floor_rows, model_rows, strict=True)
                 if m.get(key) is not None and f.get(key) is not None]
        out[key] = statistics.stdev(gains) / len(gains) ** 0.5 if len(gains) > 1 else None
    return out


def learning_curve(run_dir: Path, out: Path) -> dict[str, float | None]:
    """Draw held-out PSNRw (model, and the input's) against the step from ``val.csv``; → the
    median it/s of ``train_log.csv`` and the last validation's gain."""
    with (run_dir / "val.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("PSNRw")]
    with (run_dir / "train_log.csv").open() as fh:
        speeds = [float(r["it_per_s"]) for r in csv.DictReader(fh) if r.get("it_per_s")]
    steps = [int(r["step"]) for r in rows]
    model = [float(r["PSNRw"]) for r in rows]
    floor = [float(r["input_PSNRw"]) for r in rows]
    w, h, pad = 720, 420, 60
    img = np.full((h, w, 3), 255, np.uint8)
    lo, hi = min(model + floor) - 0.5, max(model + floor) + 0.5
    x_max = max(steps)

    def pt(step: float, value: float) -> tuple[int, int]:
        return (int(pad + (w - 2 * pad) * step / x_max), int(h - pad - (h - 2 * pad) * (value - lo) / (hi - lo)))

    cv2.rectangle(img, (pad, pad), (w - pad, h - pad), (0, 0, 0), 1)
    for k in range(6):
        v = lo + (hi - lo) * k / 5
        y = pt(0, v)[1]
        cv2.putText(img, f"{v:.1f}", (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        s = x_max * k / 5
        cv2.putText(img, f"{s:.0f}", (pt(s, lo)[0] - 12, h - pad + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1)
    cv2.polylines(img, [np.array([pt(0, floor[0])] + [pt(s, v) for s, v in zip(steps, floor, strict=True)])],
                  False, (128, 128, 128), 2)
    cv2.polylines(img, [np.array([pt(0, floor[0])] + [pt(s, v) for s, v in zip(steps, model, strict=True)])],
                  False, (200, 60, 20), 2)
    for s, v in zip(steps, model, strict=True):
        cv2.circle(img, pt(s, v), 3, (200, 60, 20), -1)
    cv2.putText(img, "held-out PSNRw (dB): model (blue), blurred input (grey)", (pad, 35),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "training step", (w // 2 - 50, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    write_png(out, img[..., ::-1])
    return {"median_it_per_s": statistics.median(speeds) if speeds else None,
            "last_val_gain_PSNRw": model[-1] - floor[-1] if rows else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=SHIPPED)
    p.add_argument("--run-dir", type=Path, default=None, help="training run (val.csv, train_log.csv)")
    p.add_argument("--width", type=int, default=1076)
    p.add_argument("--height", type=int, default=718)
    p.add_argument("--pedestrian-seeds", type=int, default=8)
    p.add_argument("--random-seeds", type=int, default=24)
    p.add_argument("--pairs", type=int, default=1, help="pairs per scene")
    p.add_argument("--sharp-timing", default="centre", choices=["centre", "start"])
    p.add_argument("--noise-sigma", type=float, default=0.0, help="Gaussian noise on the twin's blurred inputs (sRGB)")
    p.add_argument("--reloblur-root", type=Path, default=None,
                   help="also score this ReLoBlur-layout folder's test split (e.g. var/exports/demo)")
    p.add_argument("--out", type=Path, default=ROOT / "var" / "recipe_eval")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = p.parse_args(argv)
    model, meta = load_checkpoint(args.checkpoint, args.device)
    lines = [f"### {describe_checkpoint(meta)}", ""]
    results: dict[str, dict] = {"checkpoint": str(args.checkpoint), "sets": {}}
    t0 = time.perf_counter()
    for name, dataset in held_out_sets(args).items():
        floor_rows, model_rows = score_set(model, dataset, args.out / f"{name.replace(' ', '_')}_before_after.png")
        floor, mean = average_metrics(floor_rows), average_metrics(model_rows)
        gain = {k: (mean[k] - floor[k]) if mean.get(k) is not None and floor.get(k) is not None else None
                for k in METRIC_KEYS}
        spread = gain_spread(floor_rows, model_rows)
        results["sets"][name] = {"input": floor, "model": mean, "gain": gain, "gain_se": spread,
                                 "pairs": len(dataset), "images": model_rows, "input_images": floor_rows}
        size = f" at {args.width}×{args.height}" if isinstance(dataset, TwinPairDataset) else ""
        lines += [f"{name} ({len(dataset)} pairs{size}):", "",
                  format_table([{"name": "blurred input", **floor}, {"name": "LBAG (this model)", **mean},
                                {"name": "gain", **gain}], COLUMNS), ""]
        if spread["PSNRw"] is not None:
            lines += [f"per-pair gain: PSNR {gain['PSNR']:+.2f} ± {spread['PSNR']:.2f} dB, PSNRw "
                      f"{gain['PSNRw']:+.2f} ± {spread['PSNRw']:.2f} dB (mean ± standard error over the pairs)", ""]
    if args.run_dir is not None:
        results["training"] = learning_curve(args.run_dir, args.out / "learning_curve.png")
        lines.append(f"Training: median {results['training']['median_it_per_s']:.2f} it/s.")
    lines.append(f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, CPU; "
                 f"scored in {time.perf_counter() - t0:.0f} s.")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
