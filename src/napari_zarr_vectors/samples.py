"""Synthetic sample stores (a structured point cloud and the tutorial's streamlines), cached on disk.

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
    """A point cloud with structure (``structured_points``) in a square or cube, plus a pyramid.

    ``intensity`` (float32) and ``label`` (int32) on every level: intensity
    aggregated by mean, label by mode. For evenly spread points use
    ``make_uniform_point_cloud``.
    """
    positions, attrs = structured_points(n, extent=extent, seed=seed, ndim=ndim)
    return _write_points(path, positions, attrs, chunk, bin_size, factors)


def make_uniform_point_cloud(
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
    """Uniform points with random ``intensity`` (float32) and ``label`` (int32), plus a pyramid.

    Every bin of every level is occupied at about the same density, which
    level-of-detail tests and benchmarks rely on; there is nothing to see.
    """
    rng = np.random.default_rng(seed)
    positions = rng.uniform(0, extent, (n, ndim)).astype(np.float32)
    attrs = {
        "intensity": rng.uniform(0, 1, n).astype(np.float32),
        "label": rng.integers(0, 16, n).astype(np.int32),
    }
    return _write_points(path, positions, attrs, chunk, bin_size, factors)


def make_clustered_point_cloud(
    path: str | os.PathLike[str],
    *,
    background: int = 25_000,
    blobs: int = 4,
    per_blob: int = 250_000,
    sigma: float = 150.0,
    extent: float = 2000.0,
    chunk: float = 200.0,
    bin_size: float = 2.0,
    factors: list[tuple[float, float]] | None = None,
    seed: int = 0,
) -> Path:
    """Dense Gaussian blobs in a sparse uniform background (2D), plus a pyramid: what per-region levels are for.

    Viewed whole, the background's level-0 vertices fit a budget many times
    over while the blobs need their coarsest metanodes.
    """
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2 * extent, 0.8 * extent, (blobs, 2))
    parts = [rng.uniform(0, extent, (background, 2))]
    parts += [rng.normal(c, sigma, (per_blob, 2)) for c in centres]
    positions = np.clip(np.concatenate(parts), 0, np.nextafter(extent, 0)).astype(np.float32)
    n = len(positions)
    attrs = {
        "intensity": rng.uniform(0, 1, n).astype(np.float32),
        "label": np.repeat(np.arange(blobs + 1), [background] + [per_blob] * blobs).astype(np.int32),
    }
    return _write_points(path, positions, attrs, chunk, bin_size, factors or [(4.0, 1.0)] * 3)


def _write_points(
    path: str | os.PathLike[str],
    positions: np.ndarray,
    attrs: dict[str, np.ndarray],
    chunk: float,
    bin_size: float,
    factors: list[tuple[float, float]] | None,
) -> Path:
    ndim = positions.shape[1]
    with store.atomic_store(path) as tmp:
        store.write_point_cloud(
            tmp, positions, attributes=attrs, chunk_shape=(chunk,) * ndim, bin_shape=(bin_size,) * ndim
        )
        if factors:
            pyramid.build_pyramid(tmp, factors, agg_mode="mean", agg_overrides={"label": "mode"})
    return Path(path).absolute()


#: The structured cloud's shares of points: cell membranes, cell nuclei, fibres.
MEMBRANE, NUCLEUS, FIBRE = 0.5, 0.15, 0.35
N_CELLS, N_FIBRES = 6, 4


def structured_points(
    n: int, *, extent: float = 2000.0, seed: int = 0, ndim: int = 3
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Positions and attributes of a cloud with structure that a pyramid keeps and a viewer shows.

    ``N_CELLS`` cells, each a thin spherical membrane (a circle in 2D)
    around a dense Gaussian nucleus, and ``N_FIBRES`` smooth fibres
    winding between them, inside ``[0, extent)``. ``label`` (int32) names
    the structure: 1..N_CELLS the cells, then the fibres. Every point of a
    structure carries its label, so the most common label in a coarse bin
    (``mode``) is the structure that fills it. ``intensity`` (float32,
    0..1) is a smooth field over space plus a little noise, so a coarse
    bin's mean stays close to its points' values.
    """
    rng = np.random.default_rng(seed)
    n_membrane, n_nucleus, n_fibre = rng.multinomial(n, [MEMBRANE, NUCLEUS, FIBRE])
    centres, radii = _cells(rng, extent, ndim)

    cell = rng.integers(0, N_CELLS, n_membrane)
    direction = rng.normal(size=(n_membrane, ndim))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    shell = radii[cell] + rng.normal(0, 0.004 * extent, n_membrane)
    membrane = centres[cell] + direction * shell[:, None]
    nucleus_cell = rng.integers(0, N_CELLS, n_nucleus)
    nucleus = centres[nucleus_cell] + rng.normal(size=(n_nucleus, ndim)) * 0.22 * radii[nucleus_cell, None]

    # each fibre: a straight line plus a few low-frequency sines per axis, so a smooth curve
    fibre = rng.integers(0, N_FIBRES, n_fibre)
    t = rng.uniform(0, 1, n_fibre)
    curve = np.zeros((n_fibre, ndim))
    for f in range(N_FIBRES):
        mine = fibre == f
        start, end = rng.uniform(0.1, 0.9, ndim), rng.uniform(0.1, 0.9, ndim)
        path = start + np.outer(t[mine], end - start)
        for k in (1, 2, 3):
            path += np.sin(np.pi * k * t[mine])[:, None] * rng.normal(0, 0.12 / k, ndim)
        curve[mine] = np.clip(path, 0.03, 0.97) * extent
    curve += rng.normal(0, 0.005 * extent, (n_fibre, ndim))

    top = np.nextafter(np.float32(extent), np.float32(0))
    positions = np.clip(np.concatenate([membrane, nucleus, curve]), 0, top).astype(np.float32)
    label = np.concatenate([cell + 1, nucleus_cell + 1, N_CELLS + 1 + fibre]).astype(np.int32)
    order = rng.permutation(n)  # structures interleaved, as an instrument would record them
    positions, label = positions[order], label[order]
    u = positions / extent
    field = 0.5 + 0.3 * np.sin(2 * np.pi * (0.8 * u[:, 0] + 0.3)) * np.cos(2 * np.pi * (0.6 * u[:, 1] - 0.1))
    if ndim > 2:
        field += 0.15 * np.cos(2 * np.pi * u[:, 2])
    intensity = np.clip(field + rng.normal(0, 0.03, n), 0, 1).astype(np.float32)
    return positions, {"intensity": intensity, "label": label}


def _cells(rng: np.random.Generator, extent: float, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """``N_CELLS`` centres and radii, kept apart from each other and from the walls (overlapping if need be)."""
    centres: list[np.ndarray] = []
    radii: list[float] = []
    for tries in range(100_000):
        if len(centres) == N_CELLS:
            break
        r = extent * rng.uniform(0.09, 0.17)
        c = rng.uniform(0.1 * extent + r, 0.9 * extent - r, ndim)
        apart = all(np.linalg.norm(c - o) > r + ro + 0.03 * extent for o, ro in zip(centres, radii, strict=True))
        if apart or tries > 10_000:
            centres.append(c)
            radii.append(r)
    return np.asarray(centres), np.asarray(radii)


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


#: The point sample's arguments to make_point_cloud. Bin 25: its first coarse level still holds ~7,000 vertices
#: of these thin structures (bin 50 left 1,300, a sparse view for a 250,000-vertex budget).
POINT_SAMPLE = {"bin_size": 25.0}
SAMPLES: dict[str, Callable[[Path], Path]] = {
    "synthetic_points.zv": lambda p: make_point_cloud(p, **POINT_SAMPLE),
    "synthetic_streamlines.zv": lambda p: make_streamlines(p),
}
#: Bumped when a sample's contents change, so a cache built by an older version is not reused.
SAMPLE_VERSIONS = {"synthetic_points.zv": 2}


def sample_path(name: str) -> Path:
    """Where sample ``name`` is cached: ``cache_dir()/name``, or ``cache_dir()/v<N>/name`` from version 2 on."""
    version = SAMPLE_VERSIONS.get(name, 1)
    return cache_dir() / name if version == 1 else cache_dir() / f"v{version}" / name


def sample_store(name: str) -> Path:
    """Path of a cached sample store, building it on first use."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
    path = sample_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not store.is_store(path):
        SAMPLES[name](path)
    return path
