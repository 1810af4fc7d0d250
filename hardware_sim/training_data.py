"""The rig's digital twin as a source of training pairs (the ``twin`` training dataset).

:class:`TwinPairDataset` renders ideal blurred/sharp pairs on the fly; :func:`export_twin_dataset`
writes them in the ReLoBlur layout. :func:`training_datasets` is the factory that the entry
point ``reloblur.training_datasets: twin`` (``pyproject.toml``) gives ``deblur.train``, so the
deblurring package never imports the simulator. Samples follow :mod:`core.samples`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from core import layouts, srgb
from core.filestore import write_mask_png, write_png
from core.samples import pair_sample
from hardware_sim.scene_sampler import DEFAULT_BLUR_B_PX, RANDOM_PRESET, random_scene
from hardware_sim.spec import SHARP_TIMINGS, load_preset, with_sensor_size, with_sharp_timing
from hardware_sim.twin import RigTwin

RENDER_FORMAT = 1
"""Version of the on-disk renders of ``render_dir`` (part of their names)."""

__all__ = ["TwinPairDataset", "export_twin_dataset", "noise_sigma_range", "training_datasets"]


class TwinPairDataset(Dataset):
    """Blurred/sharp pairs rendered by the rig's digital twin on the fly (map-style).

    Index ``i`` ↦ ``(preset, seed, pair index)``: presets outermost, then ``seeds``, then
    ``pairs_per_scene`` pairs (``twin.pair(k, pairs_per_scene)``: pairs spread along the moving
    object's path). The seed changes the twin's camera colour response, misalignment and
    trigger jitter; a preset's scene content is fixed. ``width``×``height``: the sensor size
    (same field of view as the 2152×1436 preset, see ``hardware_sim.spec.with_sensor_size``).

    Images are the twin's noise-free linear views ``blurred_linear`` / ``sharp_linear`` encoded
    with the sRGB transfer curve (clipped to [0, 1]); the mask is the true blur mask. These are
    ideal aligned pairs: they skip the capture and post-processing pipeline. ``noise_sigma`` > 0
    adds Gaussian noise (sRGB units) to the blurred image only, keyed by ``(noise_seed, i)``,
    then clips to [0, 1]. ``noise_sigma`` may also be a range ``(min, max)``: each pair then
    draws its own σ uniformly from it (keyed the same way), so that a model sees clean and noisy
    inputs alike (a range that includes 0 keeps clean pairs in the mix). Everything is
    deterministic for given arguments.

    ``sharp_timing``: when the sharp camera's exposure starts, ``"centre"`` (default: S's window
    is the middle of B's, so the sharp object stands at the centre of its blur trail and the
    target is identifiable from the blurred image) or ``"start"`` (both start together, the
    paper's timing: the sharp object at one end of its trail, as in the published ReLoBlur set).

    The preset name ``"random"`` stands for a different scene per seed
    (:func:`hardware_sim.scene_sampler.random_scene`: background, moving object, path, speed
    and exposures drawn from the seed, the object among ``movers`` (default: the sampler's
    default movers) with ``blur_b_px`` (min, max) px of blur in B at the full sensor;
    ``exclude_assets`` keeps assets such as ``pedestrian``
    out of them so that a preset made of those stays scene-disjoint). Training on many random
    scenes rather than the two or three fixed presets keeps a model from learning the scenes
    instead of the deblurring.

    Each worker caches up to ``cache_twins`` ``RigTwin`` objects (building one costs ~50 ms at
    small sizes, more at full size) and, when ``cache_pairs`` > 0, the ``cache_pairs`` most
    recently rendered pairs (rendering one costs ~35 ms at 384×256 on one core; a pair is
    ``28·W·H`` bytes, 2.6 MB at 384×256). Rendering is deterministic, so a cached pair equals a
    fresh one; cached arrays are read-only.

    ``render_dir`` (optional): a folder where every rendered pair is also kept on disk (the
    noise-free render, ``.npz``, named by a hash of the scene spec, the pair and the size;
    written atomically), so that other runs and processes drawing the same scenes (the
    comparison's fifteen runs, a rerun of a recipe) load it instead of rendering it again. The
    noise is added after loading, so a pair from disk equals a fresh one.
    """

    def __init__(
        self,
        presets: Sequence[str] = ("ball", "car"),
        width: int = 512,
        height: int = 342,
        seeds: Sequence[int] = (0,),
        pairs_per_scene: int = 8,
        noise_sigma: float | tuple[float, float] = 0.0,
        noise_seed: int = 0,
        cache_twins: int = 4,
        cache_pairs: int = 0,
        exclude_assets: Sequence[str] = (),
        sharp_timing: Literal["centre", "start"] = "centre",
        movers: Sequence[str] | None = None,
        blur_b_px: tuple[float, float] = DEFAULT_BLUR_B_PX,
        render_dir: Path | str | None = None,
    ) -> None:
        if not presets:
            raise ValueError("TwinPairDataset needs at least one preset")
        if not seeds:
            raise ValueError("TwinPairDataset needs at least one seed")
        if pairs_per_scene < 1:
            raise ValueError(f"pairs_per_scene must be ≥ 1, got {pairs_per_scene}")
        self.noise_sigma_range = noise_sigma_range(noise_sigma)
        if cache_pairs < 0:
            raise ValueError(f"cache_pairs must be ≥ 0, got {cache_pairs}")
        if sharp_timing not in SHARP_TIMINGS:
            raise ValueError(f"sharp_timing must be one of {', '.join(SHARP_TIMINGS)}, got {sharp_timing!r}")
        self.sharp_timing = sharp_timing
        self.presets = tuple(presets)
        self.seeds = tuple(int(s) for s in seeds)
        self.pairs_per_scene = int(pairs_per_scene)
        self.width, self.height = int(width), int(height)
        self.noise_seed = int(noise_seed)
        self.cache_twins = max(1, int(cache_twins))
        self.cache_pairs = int(cache_pairs)
        self._pairs: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self.exclude_assets = tuple(exclude_assets)
        self.movers = None if movers is None else tuple(movers)
        self.blur_b_px = (float(blur_b_px[0]), float(blur_b_px[1]))
        self.render_dir = None if render_dir is None else Path(render_dir)
        # Validate the presets, sizes and exclusions up front (named errors from hardware_sim).
        self._specs: dict[tuple[str, int], Any] = {}
        for p in self.presets:
            fixed = None if p == RANDOM_PRESET else with_sensor_size(load_preset(p), self.width, self.height)
            for seed in self.seeds:
                spec = fixed if fixed is not None else with_sensor_size(
                    random_scene(seed, self.exclude_assets, self.movers, self.blur_b_px), self.width, self.height
                )
                self._specs[(p, seed)] = with_sharp_timing(spec, sharp_timing)
        self._twins: OrderedDict[tuple[str, int], Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self.presets) * len(self.seeds) * self.pairs_per_scene

    def locate(self, index: int) -> tuple[str, int, int]:
        """``index`` ↦ ``(preset, seed, pair index)``."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} twin pairs")
        index %= n
        per_preset = len(self.seeds) * self.pairs_per_scene
        p, rest = divmod(index, per_preset)
        s, k = divmod(rest, self.pairs_per_scene)
        return self.presets[p], self.seeds[s], k

    def sample_id(self, index: int) -> str:
        preset, seed, k = self.locate(index)
        return f"{preset}_s{seed}/00/{k:05d}"

    @property
    def ids(self) -> list[str]:
        return [self.sample_id(i) for i in range(len(self))]

    def _twin(self, preset: str, seed: int):
        key = (preset, seed)
        twin = self._twins.get(key)
        if twin is None:
            twin = RigTwin(self._specs[(preset, seed)], seed)
            self._twins[key] = twin
            while len(self._twins) > self.cache_twins:
                self._twins.popitem(last=False)
        else:
            self._twins.move_to_end(key)
        return twin

    def load_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """``(blur H×W×3 float32 sRGB [0,1], sharp H×W×3, mask H×W bool, id)``."""
        self.locate(index)  # IndexError when out of range
        index %= len(self)
        cached = self._pairs.get(index)
        if cached is not None:
            self._pairs.move_to_end(index)
            return (*cached, self.sample_id(index))
        blur, sharp, mask = self._render(index)
        if self.cache_pairs > 0:
            for a in (blur, sharp, mask):
                a.setflags(write=False)
            self._pairs[index] = (blur, sharp, mask)
            while len(self._pairs) > self.cache_pairs:
                self._pairs.popitem(last=False)
        return blur, sharp, mask, self.sample_id(index)

    def _render_path(self, preset: str, seed: int, k: int) -> Path:
        spec = self._specs[(preset, seed)]
        key = json.dumps({"spec": spec.model_dump(mode="json"), "seed": seed, "pair": k,
                          "pairs": self.pairs_per_scene, "size": [self.width, self.height],
                          "format": RENDER_FORMAT}, sort_keys=True)
        return self.render_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"

    def _render_clean(self, preset: str, seed: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The noise-free pair, from ``render_dir`` when it is there (and kept there when not)."""
        path = None if self.render_dir is None else self._render_path(preset, seed, k)
        if path is not None and path.is_file():
            with np.load(path) as kept:
                return kept["blur"], kept["sharp"], kept["mask"]
        shot = self._twin(preset, seed).pair(k, self.pairs_per_scene)
        blur = srgb.encode(shot.blurred_linear).astype(np.float32)
        sharp = srgb.encode(shot.sharp_linear).astype(np.float32)
        mask = np.array(shot.mask, dtype=bool)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, blur=blur, sharp=sharp, mask=mask)
            os.replace(tmp, path)
        return blur, sharp, mask

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        preset, seed, k = self.locate(index)
        blur, sharp, mask = self._render_clean(preset, seed, k)
        sigma = self.noise_sigma_of(index)
        if sigma > 0:
            rng = np.random.default_rng([self.noise_seed, index % len(self), 1])
            noise = rng.standard_normal(blur.shape, dtype=np.float32) * np.float32(sigma)
            blur = np.clip(blur + noise, 0.0, 1.0).astype(np.float32)
        return blur, sharp, mask

    def noise_sigma_of(self, index: int) -> float:
        """The noise σ (sRGB units) that pair ``index`` gets on its blurred image."""
        self.locate(index)
        low, high = self.noise_sigma_range
        if low == high:
            return low
        return float(np.random.default_rng([self.noise_seed, index % len(self)]).uniform(low, high))

    def __getitem__(self, index: int) -> dict:
        blur, sharp, mask, sid = self.load_arrays(index)
        return pair_sample(blur, sharp, mask, sid)

    def __getstate__(self) -> dict:
        # Workers start with an empty cache (twins hold large arrays).
        state = self.__dict__.copy()
        state["_twins"] = OrderedDict()
        state["_pairs"] = OrderedDict()
        return state


def noise_sigma_range(noise_sigma: float | Sequence[float]) -> tuple[float, float]:
    """``σ`` or ``(min, max)`` ↦ ``(min, max)`` with 0 ≤ min ≤ max ≤ 1 (sRGB units), else ValueError."""
    if isinstance(noise_sigma, (int, float)):
        low = high = float(noise_sigma)
    else:
        values = [float(v) for v in noise_sigma]
        if len(values) != 2:
            raise ValueError(f"noise_sigma must be a number or [min, max], got {list(noise_sigma)}")
        low, high = values
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"noise_sigma must lie in [0, 1] (as [min, max], min ≤ max), got {noise_sigma}")
    return low, high


def export_twin_dataset(
    out_root: Path | str,
    presets: Sequence[str] = ("ball", "car", "pedestrian"),
    n_scenes: int = 2,
    pairs: int = 4,
    width: int = 512,
    height: int = 342,
    test_presets: Sequence[str] | None = None,
    seed: int = 0,
    noise_sigma: float = 0.0,
    overwrite: bool = False,
    progress: bool = False,
    exclude_assets: Sequence[str] = (),
    sharp_timing: Literal["centre", "start"] = "centre",
) -> dict:
    """Render twin pairs and write them in the ReLoBlur layout under ``out_root``.

    ``presets``: every preset used; ``test_presets`` (a non-empty proper subset, default the
    last preset) go to ``test``, the others to ``train``: the splits are scene-disjoint (a
    preset's content is fixed; seeds only change camera responses, misalignment and trigger
    jitter, so two seeds of one preset count as the same scene; the preset ``"random"`` is a new
    scene per seed, without ``exclude_assets``, see :class:`TwinPairDataset`). Each preset gives ``n_scenes``
    scene folders ``<preset>_s<seed>`` (seeds ``seed … seed + n_scenes − 1``), each one sequence
    ``00`` of ``pairs`` pairs ``<idx>`` = ``00000, 00001, …``. Images: 8-bit sRGB PNG (the
    :class:`TwinPairDataset` images, rounded); masks: 0/255 single-channel PNG. ``sharp_timing``
    as in :class:`TwinPairDataset` (``"start"`` for pairs timed like the published ReLoBlur set).

    Returns ``{"root", "train": [ids], "test": [ids], "width", "height"}``. An existing
    non-empty ``out_root`` raises ``FileExistsError`` unless ``overwrite`` (then its
    ``dataset/`` and ``masks/`` folders are replaced).
    """
    from tqdm import tqdm

    out_root = Path(out_root)
    presets = list(dict.fromkeys(presets))
    if not presets:
        raise ValueError("give at least one preset")
    test = list(dict.fromkeys(test_presets)) if test_presets is not None else presets[-1:]
    unknown = [p for p in test if p not in presets]
    if unknown:
        raise ValueError(f"test preset(s) {', '.join(unknown)} are not among the presets {', '.join(presets)}")
    if not test or len(test) >= len(presets):
        raise ValueError(
            "scene-disjoint splits need at least one preset for test and one for train; "
            f"got presets {presets} with test presets {test}"
        )
    if n_scenes < 1 or pairs < 1:
        raise ValueError(f"n_scenes and pairs must be ≥ 1, got {n_scenes} and {pairs}")
    if out_root.exists() and any(out_root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_root} exists and is not empty (use overwrite)")
        for sub in ("dataset", "masks"):
            shutil.rmtree(out_root / sub, ignore_errors=True)
    seeds = list(range(seed, seed + n_scenes))
    summary: dict[str, Any] = {"root": out_root, "train": [], "test": [], "width": width, "height": height}
    total = len(presets) * n_scenes * pairs
    with tqdm(total=total, desc="export twin pairs", unit="pair", disable=not progress) as bar:
        for preset in presets:
            split = "test" if preset in test else "train"
            ds = TwinPairDataset([preset], width, height, seeds, pairs, noise_sigma, noise_seed=seed,
                                 exclude_assets=exclude_assets, sharp_timing=sharp_timing)
            for i in range(len(ds)):
                blur, sharp, mask, sid = ds.load_arrays(i)
                where = (out_root, split, *sid.split("/"))
                write_png(layouts.blur_path(*where), srgb.to_uint8(blur))
                write_png(layouts.sharp_path(*where), srgb.to_uint8(sharp))
                write_mask_png(layouts.mask_path(*where), np.asarray(mask, bool))
                summary[split].append(sid)
                bar.update()
    return summary


def training_datasets(data: Any, split: Literal["train", "val"], seed: int) -> TwinPairDataset | None:
    """The ``twin`` source of ``deblur.train``: ``data`` is its ``DataConfig`` (``presets``,
    ``width``, ``height``, ``seeds``, ``pairs_per_scene``, ``noise_sigma``, ``cache_pairs``,
    ``exclude_assets``, ``movers``, ``blur_b_px``, ``sharp_timing``, ``render_dir``; for ``val``: ``val_presets``, ``val_seeds``,
    ``val_pairs``). ``val`` without ``val_presets`` → ``None``. ``seed``: the run's seed (the
    training noise's)."""
    if split == "train":
        return TwinPairDataset(
            data.presets, data.width, data.height, data.seeds, data.pairs_per_scene, data.noise_sigma, seed,
            cache_pairs=data.cache_pairs, exclude_assets=data.exclude_assets, sharp_timing=data.sharp_timing,
            movers=data.movers, blur_b_px=tuple(data.blur_b_px), render_dir=data.render_dir,
        )
    if not data.val_presets:
        return None
    return TwinPairDataset(data.val_presets, data.width, data.height, data.val_seeds, data.val_pairs,
                           sharp_timing=data.sharp_timing, render_dir=data.render_dir)
