"""Checkpoints: the ``*.pt`` files under ``<data_dir>/checkpoints`` and ``<data_dir>/runs``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter

from api.http.deps import ModelDep, SettingsDep, ViewerToken
from api.http.schemas import CheckpointList, CheckpointOut, LoadedCheckpointOut

router = APIRouter(tags=["checkpoints"])
CHECKPOINT_DIRS = ("checkpoints", "runs")


@router.get(
    "/checkpoints", response_model=CheckpointList, summary="Checkpoints, and the one loaded"
)
def list_checkpoints(settings: SettingsDep, model: ModelDep, _: ViewerToken) -> CheckpointList:
    root = Path(settings.data_dir)
    found = []
    for folder in CHECKPOINT_DIRS:
        for path in sorted((root / folder).rglob("*.pt")):
            if path.is_file() and not path.name.startswith("."):
                st = path.stat()
                found.append(
                    CheckpointOut(
                        path=path.relative_to(root).as_posix(),
                        size_bytes=st.st_size,
                        modified_at=datetime.fromtimestamp(st.st_mtime, UTC),
                    )
                )
    loaded = None
    if model is not None:
        loaded = LoadedCheckpointOut(
            path=str(model.meta["path"]),
            model_name=model.meta["model_name"],
            gated=model.meta["gated"],
            step=model.meta.get("step"),
            device=str(model.device),
        )
    return CheckpointList(loaded=loaded, checkpoints=found)
