"""The deblurring use case behind every front door: a request's images through a model.

One request model (:class:`deblur.requests.DeblurRequest`) and one function
(:func:`deblur`), called by ``reloblur deblur`` (paths relative to the current directory) and
by the deblur job handler (paths relative to the data directory, after it has turned product
ids into paths and developed DNG uploads with :mod:`postprocess.develop`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from deblur.errors import InferenceError
from deblur.infer import deblur_paths
from deblur.requests import DeblurRequest

__all__ = ["deblur"]


def deblur(
    request: DeblurRequest,
    *,
    root: Path | str = ".",
    checkpoint: Path | str | None = None,
    out: Path | str | None = None,
    device: str = "auto",
    progress: bool = False,
    on_model: Callable[[dict[str, Any]], None] | None = None,
    before_image: Callable[[int, int, Path, Path], None] | None = None,
    after_image: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Deblur the request's inputs (:func:`deblur.infer.deblur_paths`: one row per image).

    ``root``: what the request's relative paths (inputs, checkpoint, out) are relative to;
    ``checkpoint`` / ``out``: the defaults where the request gives none (InferenceError when
    neither names a checkpoint or an output folder). ``before_image(index, total, file, stem)``
    runs before each image (a job's progress point, where a cancel stops it) and
    ``after_image(row)`` after each image's files are written.
    """
    root = Path(root)
    model_file = root / request.checkpoint if request.checkpoint else checkpoint
    if model_file is None:
        raise InferenceError("checkpoint: none given and no default (RELOBLUR_CHECKPOINT) is set")
    out_dir = root / request.out if request.out else out
    if out_dir is None:
        raise InferenceError("out: no output folder given")
    return deblur_paths([root / i for i in request.inputs], model_file, out_dir, device, request.dtype,
                        request.tile, request.overlap, request.max_side, progress, on_model,
                        before_image=before_image, after_image=after_image)
