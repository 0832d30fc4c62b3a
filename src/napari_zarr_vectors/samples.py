"""Synthetic sample stores (the tutorial's point cloud and streamlines), cached on disk.

Each is written once, with its pyramid, into a cache folder and reused.
Building happens in a temporary sibling that is renamed into place only
when complete, so an interrupted first run leaves no broken cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import pyramid, store

POINT_FACTORS = [(2.0, 1.0), (2.0, 1.0), (2.0, 1.0)]
STREAMLINE_FACTORS = [(2.0, 1.0), (2.0, 4.0), (2.0, 4.0)]


def cache_dir() -> Path:
    """``$NAPARI_ZARR_VECTORS_CACHE`` or ``~/.cache/napari-zarr-vectors``."""
    env = os.environ.get("NAPARI_ZARR_VECTORS_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "napari-zarr-vectors"
    base.mkdir(parents=True, exist_ok=True)
    return base


def make_point_cloud(
    path: str | os.PathLike[str],
    n: int = 500_000,
    *,
    extent: float = 2000.0,
    chunk: float = 200.0,
    bin_size: float = 50.0,
    factors: list[tuple[float, float]] | None = POINT_FACTORS,
    seed: int = 0,
    ndim: int = 3,
) -> Path:
    """Uniform points in a square or cube with ``intensity`` (float32) and ``label`` (int32), plus a pyramid.

    The pyramid carries both attributes on every level (intensity mean, label mode).
    """
    rng = np.random.default_rng(seed)
    positions = rng.uniform(0, extent, (n, ndim)).astype(np.float32)
    attrs = {
        "intensity": rng.uniform(0, 1, n).astype(np.float32),
        "label": rng.integers(0, 16, n).astype(np.int32),
    }
    with store.atomic_store(path) as tmp:
        store.write_point_cloud(
            tmp, positions, attributes=attrs, chunk_shape=(chunk,) * ndim, bin_shape=(bin_size,) * ndim
        )
        if factors:
            pyramid.build_pyramid(tmp, factors, agg_mode="mean", agg_overrides={"label": "mode"})
    return Path(path).absolute()


def random_walks(
    n: int, *, seed: int = 0, min_len: int = 30, max_len: int = 120, step: float = 30.0
) -> list[np.ndarray]:
    """The tutorial's random-walk streamlines: lengths in [min_len, max_len), steps ~N(0, step)."""
    rng = np.random.default_rng(seed)
    return [
        rng.normal(0, step, (int(rng.integers(min_len, max_len)), 3)).cumsum(0).astype(np.float32) for _ in range(n)
    ]


def make_streamlines(
    path: str | os.PathLike[str],
    n: int = 10_000,
    *,
    chunk: float = 100.0,
    bin_size: float = 25.0,
    factors: list[tuple[float, float]] | None = STREAMLINE_FACTORS,
    seed: int = 0,
) -> Path:
    """Random-walk streamlines, plus a per_object pyramid with compounding random thinning (seed 42)."""
    lines = random_walks(n, seed=seed)
    with store.atomic_store(path) as tmp:
        store.write_polyline_store(
            tmp, lines, geometry_type="streamline", chunk_shape=(chunk,) * 3, bin_shape=(bin_size,) * 3
        )
        if factors:
            pyramid.build_pyramid(tmp, factors, method="per_object", sparsity_strategy="random", sparsity_seed=42)
    return Path(path).absolute()


SAMPLES: dict[str, Callable[[Path], Path]] = {
    "synthetic_points.zv": lambda p: make_point_cloud(p),
    "synthetic_streamlines.zv": lambda p: make_streamlines(p),
}


def sample_store(name: str) -> Path:
    """Path of a cached sample store, building it on first use."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
    path = cache_dir() / name
    if not store.is_store(path):
        SAMPLES[name](path)
    return path
