"""The folder layouts every package shares: the ReLoBlur dataset and the RAW store.

ReLoBlur's dataset layout (the public dataset's, our export's, what training reads)::

    <root>/dataset/<split>/<scene>/<seq>/<idx>_blur.png    8-bit sRGB RGB, the blurred image
    <root>/dataset/<split>/<scene>/<seq>/<idx>_sharp.png   8-bit sRGB RGB, the sharp image
    <root>/masks/<split>/<scene>/<seq>/<idx>.png           blur mask, 0 / 255, one channel

``split`` is ``train`` or ``test``; a sample is named ``<scene>/<seq>/<idx>``.

The RAW store under the data directory (captures and imports write it, post-processing reads
it)::

    raw/<rig>/<scene>/<kind>_<idx:04d>_<role><ext>          a scene's frames (kind: whiteboard,
                                                           reference, pair; role: B or S)
    raw/<rig>/lightbox/lightbox_<idx:04d>_<role><ext>       the colour calibration's frames
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

DATASET_DIR = "dataset"
MASKS_DIR = "masks"
BLUR_SUFFIX = "_blur.png"
SHARP_SUFFIX = "_sharp.png"
SPLITS = ("train", "test")
LIGHTBOX_SCENE = "lightbox"


def sample_id(scene: str, seq: str, idx: str) -> str:
    """``<scene>/<seq>/<idx>``: a ReLoBlur sample's name."""
    return f"{scene}/{seq}/{idx}"


def blur_path(root: Path | str, split: str, scene: str, seq: str, idx: str) -> Path:
    """``<root>/dataset/<split>/<scene>/<seq>/<idx>_blur.png``."""
    return Path(root) / DATASET_DIR / split / scene / seq / f"{idx}{BLUR_SUFFIX}"


def sharp_path(root: Path | str, split: str, scene: str, seq: str, idx: str) -> Path:
    """``<root>/dataset/<split>/<scene>/<seq>/<idx>_sharp.png``."""
    return Path(root) / DATASET_DIR / split / scene / seq / f"{idx}{SHARP_SUFFIX}"


def mask_path(root: Path | str, split: str, scene: str, seq: str, idx: str) -> Path:
    """``<root>/masks/<split>/<scene>/<seq>/<idx>.png``."""
    return Path(root) / MASKS_DIR / split / scene / seq / f"{idx}.png"


def dataset_relpaths(split: str, scene: str, seq: str, idx: str) -> dict[str, str]:
    """The three files of one sample, relative to the dataset root (POSIX), by role
    (``blur``, ``sharp``, ``mask``)."""
    return {role: PurePosixPath(*fn(".", split, scene, seq, idx).parts).as_posix()
            for role, fn in (("blur", blur_path), ("sharp", sharp_path), ("mask", mask_path))}


def blurred_images(root: Path | str, split: str) -> list[tuple[str, str, str, Path]]:
    """Every blurred image of ``split`` under ``root`` as ``(scene, seq, idx, path)``, sorted."""
    image_dir = Path(root) / DATASET_DIR / split
    found = []
    for blur in sorted(image_dir.glob(f"*/*/*{BLUR_SUFFIX}")):
        scene, seq = blur.relative_to(image_dir).parts[:2]
        found.append((scene, seq, blur.name[: -len(BLUR_SUFFIX)], blur))
    return found


def raw_folder(rig: str, scene: str) -> str:
    """``raw/<rig>/<scene>``, relative to the data directory (POSIX); ``scene`` is
    :data:`LIGHTBOX_SCENE` for the colour calibration's frames."""
    return f"raw/{rig}/{scene}"


def frame_name(kind: str, index: int, role: str, ext: str = ".dng") -> str:
    """``<kind>_<index:04d>_<role><ext>``: one RAW frame's file name in its scene folder."""
    return f"{kind}_{index:04d}_{role}{ext}"


def raw_frame(rig: str, scene: str, kind: str, index: int, role: str, ext: str = ".dng") -> str:
    """``raw/<rig>/<scene>/<kind>_<index:04d>_<role><ext>``, relative to the data directory."""
    return f"{raw_folder(rig, scene)}/{frame_name(kind, index, role, ext)}"
