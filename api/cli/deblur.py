"""``reloblur train | deblur | evaluate | export-twin-dataset``: the deblurring commands.

Bad input (config, files, options) exits with code 2 and ``error: <message>`` on stderr.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import typer

from api.cli.common import fail, request_from_options
from core.filestore import atomic_write_text
from deblur.config import ConfigError, load_config
from deblur.data import (
    DatasetError,
    list_images,
    read_image,
    read_mask,
    to_float01,
)
from deblur.infer import (
    InferenceError,
    describe_checkpoint,
    export_model,
    load_checkpoint,
)
from deblur.metrics import METRIC_KEYS, average_metrics, evaluate_pair, format_table
from deblur.requests import DeblurRequest
from deblur.services import deblur
from deblur.train import TrainingError, train
from hardware_sim.spec import SceneSpecError
from hardware_sim.training_data import export_twin_dataset

app = typer.Typer()

# ------------------------------------------------------------------------------------ train


@app.command("train")
def train_cmd(
    config: Path = typer.Option(..., "--config", help="Experiment YAML (see configs/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in out_dir."),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Override the config's out_dir."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start afresh, deleting a previous run's checkpoints and logs in out_dir."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a deblurring model (LBAG, MIMO-UNet, ablations) from an experiment YAML."""
    try:
        cfg = load_config(config, {"out_dir": str(out_dir)} if out_dir is not None else None)
        result = train(cfg, resume=resume, progress=progress, overwrite=overwrite)
    except (ConfigError, DatasetError, SceneSpecError) as exc:
        raise fail(str(exc)) from None
    except TrainingError as exc:
        raise fail(str(exc), code=1) from None
    typer.echo(
        f"trained {cfg.model} steps {result['start_step']}→{result['step']} on {result['device']} "
        f"({result['precision']}) "
        f"in {result['seconds']:.1f} s; checkpoint {result['last_checkpoint']}"
    )
    if result["losses"]:
        typer.echo(f"  last loss {result['losses'][-1]:.4f}")
    if result["val"]:
        typer.echo(format_table([{"name": "validation", **result["val"]}], ["name", *METRIC_KEYS]))


@app.command("export-model")
def export_model_cmd(
    checkpoint: Path = typer.Argument(..., help="A training checkpoint (.pt)."),
    out: Path = typer.Option(..., "--out", help="The model file to write (.pt)."),
    notes: str | None = typer.Option(None, "--notes", help="How the model was made (stored in it)."),
) -> None:
    """Write a checkpoint's model alone (weights, model, step, config, sharp timing) for
    shipping: no optimiser or RNG state, about a third of a training checkpoint's size."""
    try:
        path = export_model(checkpoint, out, notes)
    except InferenceError as exc:
        raise fail(str(exc)) from None
    _, meta = load_checkpoint(path, "cpu")
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {describe_checkpoint(meta)}")


# ----------------------------------------------------------------------------------- deblur


@app.command("deblur")
def deblur_cmd(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders (recursive)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Model checkpoint (.pt)."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    tile: int | None = typer.Option(
        None,
        "--tile",
        help="Process in overlapping tiles of at most N px (multiple of 4) to bound memory: at "
        "2152×1436 on CPU, --tile 1024 peaks near 2.4 GB RSS, the whole image near 10 GB.",
    ),
    overlap: int = typer.Option(32, "--overlap", help="Tile overlap (px)."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 | bf16 (bf16: CUDA only)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:i]."),
    max_side: int = typer.Option(8192, "--max-side", help="Refuse images with a longer side (px)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Deblur images: writes <name>_deblurred.png and (LBAG) <name>_mask.png, <name>_mask_bin.png.

    No mask input is needed: LBAG predicts the blur mask itself.
    """
    request = request_from_options(DeblurRequest, inputs=[str(i) for i in inputs], checkpoint=str(checkpoint),
                                   out=str(out), tile=tile, overlap=overlap, dtype=dtype, max_side=max_side)
    try:
        rows = deblur(request, device=device, progress=progress,
                      on_model=lambda meta: typer.echo(describe_checkpoint(meta)))
    except (InferenceError, DatasetError) as exc:
        raise fail(str(exc)) from None
    for r in rows:
        extra = f" + {r['mask'].name}, {r['mask_bin'].name}" if r["mask"] is not None else ""
        typer.echo(f"{r['input']} ({r['width']}×{r['height']}, {r['seconds']:.2f} s) → {r['deblurred']}{extra}")


# --------------------------------------------------------------------------------- evaluate

_SUFFIX = {
    "pred": re.compile(r"_(deblurred|blur)$"),
    "gt": re.compile(r"_(sharp|gt)$"),
    "mask": re.compile(r"_(mask_bin|mask|blur)$"),
}
_PREFER = {"pred": "_deblurred", "gt": "_sharp", "mask": "_mask_bin"}


def _index(folder: Path, kind: str) -> dict[str, Path]:
    """Relative key (folder/stem without the kind's suffix) → file."""
    if not folder.is_dir():
        raise fail(f"--{kind if kind != 'mask' else 'masks'} {folder} is not a folder")
    files = list_images(folder)
    prefer = _PREFER[kind]
    if prefer is not None and any(f.stem.endswith(prefer) for f in files):
        files = [f for f in files if f.stem.endswith(prefer)]
    out: dict[str, Path] = {}
    for f in files:
        rel = f.relative_to(folder)
        stem = _SUFFIX[kind].sub("", _SUFFIX[kind].sub("", rel.stem))
        out[(rel.parent / stem).as_posix()] = f
    return out


def _match(key: str, index: dict[str, Path]) -> Path | None:
    if key in index:
        return index[key]
    stem = key.rsplit("/", 1)[-1]
    hits = [p for k, p in index.items() if k.rsplit("/", 1)[-1] == stem]
    return hits[0] if len(hits) == 1 else None


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


@app.command("evaluate")
def evaluate_cmd(
    pred: Path = typer.Option(..., "--pred", help="Folder of deblurred images."),
    gt: Path = typer.Option(..., "--gt", help="Folder of sharp ground-truth images."),
    masks: Path | None = typer.Option(None, "--masks", help="Folder of blur masks (0/255)."),
    quantise: bool = typer.Option(True, "--quantise/--no-quantise", help="Round both images to 8 bits first (released)."),
    psnra: bool = typer.Option(True, "--psnra/--no-psnra", help="Compute PSNRa (ECC alignment; slower)."),
    out_csv: Path | None = typer.Option(None, "--out-csv", help="Write per-image metrics and the mean as CSV."),
    out_json: Path | None = typer.Option(None, "--out-json", help="Write per-image metrics and the mean as JSON."),
) -> None:
    """Table 1 metrics (PSNR, SSIM, PSNRw, SSIMw, PSNRa) of deblurred images against ground truth.

    Files match by relative path and stem, ignoring the suffixes _deblurred/_blur (pred),
    _sharp (gt) and _mask/_mask_bin/_blur (masks); when a folder holds *_deblurred (pred),
    *_sharp (gt) or *_mask_bin (masks) files only those are used, so a ReLoBlur dataset/test
    folder works as --gt and a `reloblur deblur` output folder as --masks (its binarised
    predicted masks). Masks are binarised as value > 0. A stem that is unique in a folder also
    matches across subfolders. Weighted metrics of an empty mask print "undefined" (empty CSV
    cell, JSON null); an infinite PSNR is "inf" in JSON.
    """
    preds = _index(pred, "pred")
    gts = _index(gt, "gt")
    mask_idx = _index(masks, "mask") if masks is not None else None
    if not preds:
        raise fail(f"no image in --pred {pred}")
    rows: list[dict[str, Any]] = []
    for key, p in preds.items():
        g = _match(key, gts)
        if g is None:
            raise fail(f"no ground truth in {gt} for {p} (looked for {key})")
        m = None
        if mask_idx is not None:
            m = _match(key, mask_idx)
            if m is None:
                raise fail(f"no mask in {masks} for {p} (looked for {key})")
        try:
            pi, gi = to_float01(read_image(p)), to_float01(read_image(g))
            mi = read_mask(m) if m is not None else None
            metrics = evaluate_pair(pi, gi, mi, quantise=quantise, aligned=psnra)
        except DatasetError as exc:
            raise fail(str(exc)) from None
        except ValueError as exc:
            raise fail(f"{p} vs {g}{'' if m is None else f' / {m}'}: {exc}") from None
        rows.append({"name": key, **metrics})
    mean = average_metrics(rows)
    columns = ["name", *METRIC_KEYS]
    typer.echo(format_table([*rows, {"name": "mean", **mean}], columns))
    if out_csv is not None:
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(columns)
        for r in [*rows, {"name": "mean", **mean}]:
            w.writerow([r["name"]] + ["" if r.get(k) is None else r[k] for k in METRIC_KEYS])
        atomic_write_text(out_csv, buf.getvalue())
        typer.echo(f"wrote {out_csv}")
    if out_json is not None:
        doc = {
            "pred": str(pred),
            "gt": str(gt),
            "masks": None if masks is None else str(masks),
            "quantised": quantise,
            "images": [{k: _json_value(v) for k, v in r.items()} for r in rows],
            "mean": {k: _json_value(v) for k, v in mean.items()},
        }
        atomic_write_text(out_json, json.dumps(doc, indent=2))
        typer.echo(f"wrote {out_json}")


# -------------------------------------------------------------------------------- twin data


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@app.command("export-twin-dataset")
def export_twin_dataset_cmd(
    out: Path = typer.Option(..., "--out", help="Output root (ReLoBlur layout: dataset/, masks/)."),
    presets: str = typer.Option(
        "ball,car,pedestrian", "--presets",
        help="Comma-separated presets; 'random' is a new random scene per seed (e.g. random,pedestrian).",
    ),
    test_presets: str = typer.Option("pedestrian", "--test-presets", help="Presets for the test split (the rest: train)."),
    scenes: int = typer.Option(2, "--scenes", min=1, help="Scenes (seeds) per preset."),
    pairs: int = typer.Option(4, "--pairs", min=1, help="Pairs per scene."),
    width: int = typer.Option(512, "--width", help="Sensor width (px, even); same field of view."),
    height: int = typer.Option(342, "--height", help="Sensor height (px, even)."),
    seed: int = typer.Option(0, "--seed", help="First seed."),
    noise_sigma: float = typer.Option(0.0, "--noise-sigma", min=0.0, help="Gaussian noise on the blurred images (sRGB units)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export."),
    exclude_assets: str = typer.Option(
        "", "--exclude-assets", help="Comma-separated assets kept out of 'random' scenes (e.g. pedestrian)."
    ),
) -> None:
    """Render twin pairs into the ReLoBlur layout with scene-disjoint train/test splits."""
    try:
        summary = export_twin_dataset(
            out, _names(presets), scenes, pairs, width, height, _names(test_presets), seed,
            noise_sigma, overwrite, progress=True, exclude_assets=_names(exclude_assets),
        )
    except (ValueError, FileExistsError, SceneSpecError) as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"wrote {len(summary['train'])} train and {len(summary['test'])} test pairs "
        f"({width}×{height}) under {out}"
    )
