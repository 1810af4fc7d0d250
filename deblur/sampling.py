"""Feeding training: patch datasets, the step-seeded batch sampler, and the DataLoader.

:class:`PatchDataset` cuts :func:`deblur.crops.bapc_crop` patches from any full-image dataset
(``load_arrays(i)`` and ``len``); :class:`StepBatchSampler` draws each step's keys from
(seed, step) alone, so a resumed run sees exactly the batches an uninterrupted run would,
whatever the number of workers; :func:`make_loader` builds the DataLoader (spawned, seeded
workers).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from core.samples import pair_sample
from deblur.crops import bapc_crop

__all__ = ["PatchDataset", "StepBatchSampler", "make_loader", "worker_init_fn"]


class PatchDataset(Dataset):
    """Training patches from a full-image dataset (anything with ``load_arrays(i)`` and
    ``len``: :class:`ReLoBlurDataset`, :class:`TwinPairDataset`).

    Keys are ``(index, crop_seed)`` pairs (from :class:`StepBatchSampler`) or plain indices
    (crop seed = index). The patch is :func:`bapc_crop` with ``p_blur`` (``p_blur=0`` is a
    uniform crop: "without BAPC"), drawn from ``numpy.random.default_rng(crop_seed)``. With
    ``colour_permute`` the patch's colour channels are then put in a random order (one of the
    six, the same for blurred and sharp; drawn from ``default_rng([crop_seed, 1])``, so crops
    stay those of a run without it): an object's colours vary while its blur does not. Returns
    the sample dict with ``patch_size``² tensors.
    """

    def __init__(
        self,
        base: Dataset,
        patch_size: int = 256,
        p_blur: float = 0.5,
        flips: bool = True,
        erode_px: int = 3,
        colour_permute: bool = False,
    ) -> None:
        if not 0.0 <= p_blur <= 1.0:
            raise ValueError(f"p_blur must lie in [0, 1], got {p_blur}")
        self.base = base
        self.patch_size = int(patch_size)
        self.p_blur = float(p_blur)
        self.flips = flips
        self.erode_px = erode_px
        self.colour_permute = colour_permute

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, crop_seed = key if isinstance(key, tuple) else (int(key), int(key))
        blur, sharp, mask, sid = self.base.load_arrays(index)
        rng = np.random.default_rng(crop_seed)
        blur, sharp, mask = bapc_crop(
            blur, sharp, mask, self.patch_size, self.p_blur, rng, self.flips, self.erode_px
        )
        if self.colour_permute:
            order = np.random.default_rng([crop_seed, 1]).permutation(blur.shape[2])
            blur, sharp = np.ascontiguousarray(blur[..., order]), np.ascontiguousarray(sharp[..., order])
        return pair_sample(blur, sharp, mask, sid)


class StepBatchSampler(Sampler):
    """Batches of ``(index, crop_seed)`` keys for steps ``start_step … total_steps − 1``.

    Step ``s`` draws its ``batch_size`` indices uniformly with replacement (and one crop seed
    per sample) from ``numpy.random.default_rng([seed, s])``: what a step sees depends only on
    the seed and the step, so resuming at step ``s`` reproduces the uninterrupted run exactly.
    (Sampling with replacement instead of epochs; at 300k steps × 12 the difference is nil.)
    """

    def __init__(self, n_samples: int, batch_size: int, seed: int, start_step: int, total_steps: int) -> None:
        if n_samples < 1:
            raise ValueError("no samples to draw from")
        self.n_samples = int(n_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.total_steps = int(total_steps)

    def batch_for_step(self, step: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, step])
        idx = rng.integers(0, self.n_samples, size=self.batch_size)
        seeds = rng.integers(0, 2**63 - 1, size=self.batch_size)
        return [(int(i), int(s)) for i, s in zip(idx, seeds, strict=True)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            yield self.batch_for_step(step)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)


def worker_init_fn(worker_id: int) -> None:
    """Seed ``random`` and numpy's global RNG in a DataLoader worker from the worker's torch
    seed (which the loader's generator determines)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int | None = None,
    batch_sampler: Sampler | None = None,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    prefetch_factor: int = 4,
    multiprocessing_context: str | None = "spawn",
) -> DataLoader:
    """A DataLoader that keeps a GPU fed: ``num_workers`` processes, ``pin_memory`` when CUDA
    is available, persistent workers and ``prefetch_factor`` batches per worker when
    ``num_workers > 0``, worker RNGs seeded through a seeded generator + :func:`worker_init_fn`.

    Workers are started with ``multiprocessing_context`` (default ``"spawn"``): forked workers
    hang in the twin renderer (``hardware_sim.render`` keeps a module-level thread pool whose
    threads do not survive a fork once the parent has rendered), and fork is also unsafe after
    CUDA or OpenMP initialisation. Spawned workers import the modules afresh (a few seconds,
    once: the workers persist); as usual with spawn, a training *script* must guard its entry
    point with ``if __name__ == "__main__":``.

    Give either ``batch_sampler`` (e.g. :class:`StepBatchSampler`) or ``batch_size``.
    """
    kwargs: dict[str, Any] = {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available(),
        "worker_init_fn": worker_init_fn,
        "generator": torch.Generator().manual_seed(int(seed)),
    }
    if num_workers > 0:
        kwargs["persistent_workers"] = True
        kwargs["prefetch_factor"] = prefetch_factor
        kwargs["multiprocessing_context"] = multiprocessing_context
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    if batch_size is None:
        raise ValueError("give batch_size or batch_sampler")
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, **kwargs)
