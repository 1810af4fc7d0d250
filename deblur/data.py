"""Training and evaluation data for the deblurring models, and the registry of its sources.

This module is the one the trainer, CLI and benchmarks import; the parts live in
:mod:`deblur.reloblur_dataset` (the ReLoBlur folder layout, image and mask files, the dataset
errors), :mod:`deblur.crops` (BAPC and uniform patch crops) and :mod:`deblur.sampling`
(:class:`PatchDataset`, :class:`StepBatchSampler`, :func:`make_loader`), and are re-exported
here.

Sources
-------
A training source is an entry point of :data:`TRAINING_DATASETS_GROUP`: this package provides
``reloblur`` (:class:`ReLoBlurDataset` of a ReLoBlur-layout root); ``hardware_sim`` provides
``twin`` (:class:`hardware_sim.training_data.TwinPairDataset`, pairs rendered from the rig's
digital twin on the fly). :func:`training_datasets` picks one by name.

Samples are dicts ``{"blur": 3×H×W, "sharp": 3×H×W, "mask": 1×H×W, "id": str}``: float32
tensors in [0, 1] (the mask is 0/1). Patches for training come from :class:`PatchDataset`
(BAPC or uniform crops, :func:`bapc_crop` / :func:`uniform_crop`, numpy ``H×W×C`` arrays) driven
by :class:`StepBatchSampler`, whose draws depend only on (seed, step): a resumed run sees
exactly the batches an uninterrupted run would, whatever the number of workers.
"""

from __future__ import annotations

from typing import Any, Literal

from core.samples import to_float01
from deblur.crops import bapc_crop, uniform_crop
from deblur.reloblur_dataset import (
    IMAGE_SUFFIXES,
    CorruptImageError,
    DatasetError,
    EmptyDatasetError,
    MissingFileError,
    OnBad,
    ReLoBlurDataset,
    SizeMismatchError,
    list_images,
    read_image,
    read_mask,
)
from deblur.sampling import PatchDataset, StepBatchSampler, make_loader, worker_init_fn

__all__ = [
    "IMAGE_SUFFIXES",
    "CorruptImageError",
    "DatasetError",
    "EmptyDatasetError",
    "MissingFileError",
    "OnBad",
    "PatchDataset",
    "ReLoBlurDataset",
    "SizeMismatchError",
    "StepBatchSampler",
    "TRAINING_DATASETS_GROUP",
    "training_datasets",
    "dataset_sources",
    "bapc_crop",
    "list_images",
    "make_loader",
    "read_image",
    "read_mask",
    "reloblur_datasets",
    "to_float01",
    "uniform_crop",
    "worker_init_fn",
]


# ------------------------------------------------------------------------ dataset registry

#: Entry-point group of training-data sources: name → ``factory(data_config, split, seed)``
#: returning a dataset (:mod:`core.samples`) or ``None``; ``split`` is ``"train"`` or ``"val"``.
#: This package provides ``reloblur``; hardware_sim provides ``twin``.
TRAINING_DATASETS_GROUP = "reloblur.training_datasets"


def reloblur_datasets(data: Any, split: Literal["train", "val"], seed: int) -> ReLoBlurDataset:
    """The ``reloblur`` source: :class:`ReLoBlurDataset` of ``data.root``'s ``train_split`` or
    ``val_split`` (``on_bad`` as given); ``seed`` is unused (the files are fixed)."""
    return ReLoBlurDataset(data.root, data.train_split if split == "train" else data.val_split, on_bad=data.on_bad)


def dataset_sources() -> tuple[str, ...]:
    """The installed training-data sources' names, sorted."""
    from importlib.metadata import entry_points

    return tuple(sorted({ep.name for ep in entry_points(group=TRAINING_DATASETS_GROUP)}))


def training_datasets(source: str, data: Any, split: Literal["train", "val"], seed: int):
    """The dataset of ``source`` (an entry point of :data:`TRAINING_DATASETS_GROUP`) for
    ``split``, or ``None`` when that source has none (e.g. the twin without ``val_presets``).
    Raises ``LookupError`` naming the installed sources for an unknown one."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=TRAINING_DATASETS_GROUP)}
    if source not in found:
        raise LookupError(f"unknown data source {source!r}; installed: {', '.join(sorted(found)) or 'none'}")
    return found[source].load()(data, split, seed)
