"""Real zarr-vectors stores on disk, one per geometry kind, written and pyramided by upstream."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from zarr_vectors import building
from zarr_vectors.multiresolution.coarsen import build_pyramid

KINDS = ("point_cloud", "polyline", "streamline", "line", "graph", "skeleton", "mesh")
FACTORS = [(2.0, 1.0), (2.0, 2.0)]


def _tree_edges(n: int, rng: np.random.Generator) -> np.ndarray:
    """(child, parent) edges of one rooted tree: each vertex hangs off an earlier one."""
    children = np.arange(1, n)
    parents = np.maximum(0, children - 1 - rng.integers(0, 4, n - 1))
    return np.stack([children, parents], axis=1)


def write_upstream_store(kind: str, path: Path, *, seed: int = 0, pyramid: bool = True) -> Path:
    """A small store of ``kind`` written by zarr-vectors' own writers (never by this plugin)."""
    rng = np.random.default_rng(seed)
    cube = dict(chunk_shape=(200.0,) * 3, bin_shape=(50.0,) * 3)
    if kind == "point_cloud":
        n = 20_000
        building.write_points(
            str(path),
            rng.uniform(0, 1000, (n, 3)).astype(np.float32),
            vertex_attributes={
                "intensity": rng.uniform(0, 1, n).astype(np.float32),
                "label": rng.integers(0, 16, n).astype(np.int32),
            },
            **cube,
        )
    elif kind in ("polyline", "streamline"):
        lines = [
            (rng.normal(0, 30, (int(rng.integers(30, 120)), 3)).cumsum(0) + 500).astype(np.float32) for _ in range(120)
        ]
        building.write_polylines(
            str(path),
            lines,
            chunk_shape=(100.0,) * 3,
            bin_shape=(25.0,) * 3,
            geometry_type=kind,
            object_attributes={"length": np.array([len(x) for x in lines], np.float32)},
        )
    elif kind == "line":
        n = 400
        building.write_lines(
            str(path),
            rng.uniform(0, 1000, (n, 2, 3)).astype(np.float32),
            object_attributes={"weight": rng.uniform(0, 1, n).astype(np.float32)},
            **cube,
        )
    elif kind == "graph":
        n = 1000
        edges = np.stack([rng.integers(0, n, 2000), rng.integers(0, n, 2000)], axis=1)
        building.write_graph(
            str(path),
            rng.uniform(0, 1000, (n, 3)).astype(np.float32),
            edges,
            vertex_attributes={"degree": np.bincount(edges.ravel(), minlength=n).astype(np.float32)},
            **cube,
        )
    elif kind == "skeleton":
        n = 600
        pos = (np.cumsum(rng.normal(0, 10, (n, 3)), 0) + 500).astype(np.float32)
        building.write_graph(
            str(path),
            pos,
            _tree_edges(n, rng),
            kind="skeleton",
            vertex_attributes={"radius": rng.uniform(1, 3, n).astype(np.float32)},
            **cube,
        )
    elif kind == "mesh":
        side = 30
        grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2) * 30.0
        verts = np.c_[grid, 300 + 50 * np.sin(grid[:, 0] / 100)].astype(np.float32)
        faces = []
        for i in range(side - 1):
            for j in range(side - 1):
                a = i * side + j
                faces += [[a, a + 1, a + side], [a + 1, a + side + 1, a + side]]
        building.write_mesh(
            str(path),
            verts,
            np.asarray(faces),
            vertex_attributes={"height": verts[:, 2].copy()},
            **cube,
        )
    else:  # pragma: no cover
        raise ValueError(kind)
    if pyramid:
        build_pyramid(str(path), factors=FACTORS)
    return path


@pytest.fixture(scope="session")
def upstream_stores(tmp_path_factory) -> dict[str, Path]:
    """One pyramided store per geometry kind, written once per test session."""
    root = tmp_path_factory.mktemp("upstream")
    return {kind: write_upstream_store(kind, root / f"{kind}.zv") for kind in KINDS}


def ctrl_c_works() -> None:
    """A child's ``preexec_fn``: SIGINT back to its default, so the child's Python turns it into KeyboardInterrupt.

    A test run started in the background of a non-interactive shell (``cmd &``)
    inherits SIGINT ignored; its Ctrl+C tests would then see children that never stop.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def write_cells(path: Path, n: int) -> Path:
    """``n`` level-0 points (upstream's writer) with a float ``intensity`` and an int ``label``, for builds."""
    rng = np.random.default_rng(5)
    building.write_points(
        str(path),
        rng.uniform(0, 2000, (n, 3)).astype(np.float32),
        chunk_shape=(500.0,) * 3,
        bin_shape=(50.0,) * 3,
        vertex_attributes={
            "intensity": rng.uniform(0, 1, n).astype(np.float32),
            "label": rng.integers(0, 8, n).astype(np.int32),
        },
    )
    return path


@pytest.fixture
def cells_store(tmp_path):
    """``cells_store(name, n)``: a level-0 store of ``write_cells`` in ``tmp_path``."""
    return lambda name="cells.zv", n=5_000: write_cells(tmp_path / name, n)


@pytest.fixture
def fresh_point_store(tmp_path) -> Path:
    return write_upstream_store("point_cloud", tmp_path / "points.zv")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """No test sees a developer's budget setting or sample cache."""
    monkeypatch.delenv("NAPARI_ZARR_VECTORS_VERTEX_BUDGET", raising=False)
    if "NAPARI_ZARR_VECTORS_CACHE" not in os.environ:
        monkeypatch.setenv("NAPARI_ZARR_VECTORS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def tree_digest():
    """A hash of every file name and byte below a folder: equal means untouched."""
    return _tree_digest


@pytest.fixture(scope="session")
def two_million_points(tmp_path_factory) -> Path:
    """2,000,000 uniform 2D points, 4 levels (bins 2/4/8/16): 2M / 250k / 62.5k / 15.6k vertices.

    Built once per session with the plugin's builder (~40 s here).
    """
    from napari_zarr_vectors import samples

    path = tmp_path_factory.mktemp("lod") / "two_million.zv"
    return samples.make_uniform_point_cloud(
        path, n=2_000_000, extent=2000.0, chunk=200.0, bin_size=2.0, factors=[(2.0, 1.0)] * 3, ndim=2
    )


@pytest.fixture(scope="session")
def small_points_2d(tmp_path_factory) -> Path:
    """200,000 uniform 2D points, 4 levels (bins 5/10/20/40): 200k / 10k / 2.5k / 625 vertices."""
    from napari_zarr_vectors import samples

    path = tmp_path_factory.mktemp("lod") / "small_2d.zv"
    return samples.make_uniform_point_cloud(
        path, n=200_000, extent=1000.0, chunk=100.0, bin_size=5.0, factors=[(2.0, 1.0)] * 3, ndim=2
    )


def _notifications(severity_name: str):
    """Messages of one severity that napari's notification manager shows while the test runs."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    severity = NotificationSeverity[severity_name]
    seen: list[str] = []

    def _record(event):
        notification = event.value if hasattr(event, "value") else event
        if notification.severity == severity:
            seen.append(str(notification.message))

    notification_manager.notification_ready.connect(_record)
    try:
        yield seen
    finally:
        notification_manager.notification_ready.disconnect(_record)


@pytest.fixture
def error_notifications():
    """Error messages napari's notification manager shows while the test runs."""
    yield from _notifications("ERROR")


@pytest.fixture
def warning_notifications():
    """Warning messages napari's notification manager shows while the test runs."""
    yield from _notifications("WARNING")
