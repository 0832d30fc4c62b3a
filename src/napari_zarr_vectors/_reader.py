"""npe2 reader: claims Zarr Vectors stores, returns one layer per geometry."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import layers, store

PathLike = str | os.PathLike[str]


def _claims(path: PathLike) -> bool:
    """Ours when the metadata says so, or when a .zv/.zarrvectors folder has a (maybe broken) zarr.json.

    The second case lets a corrupt store get a clear message from us
    instead of a silent "no reader found".
    """
    if store.is_store(path):
        return True
    p = Path(path)
    return store.has_store_suffix(p) and (p / "zarr.json").is_file()


def get_reader(path: PathLike | list[PathLike]) -> Callable[[Any], list] | None:
    """Return a reader for Zarr Vectors stores, or None so napari tries other readers."""
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(_claims(p) for p in paths):
        return None
    return read_stores


def read_stores(path: PathLike | list[PathLike]) -> list:
    """Layer-data tuples for every store in ``path`` (a StoreError explains any failure)."""
    paths = path if isinstance(path, list) else [path]
    out: list = []
    for p in paths:
        out.extend(layers.layers_for_store(p))
    if any(len(d[1].get("axis_labels", ())) >= 3 for d in out):
        _show_in_3d_once_added([d[1]["name"] for d in out])
    return out


def _show_in_3d_once_added(names: list[str]) -> None:
    """Switch the current viewer to 3D when our layer arrives.

    A 3D cloud seen through napari's default 2D slice shows a sliver of a
    bin's thickness; the whole cloud is what a user opening it wants.
    """
    try:
        import napari
    except ImportError:  # pragma: no cover - napari is a dependency
        return
    viewer = napari.current_viewer()
    if viewer is None or viewer.dims.ndisplay == 3:
        return

    def _on_inserted(event: Any) -> None:
        layer = getattr(event, "value", None)
        if layer is not None and any(layer.name.startswith(n) for n in names):
            viewer.layers.events.inserted.disconnect(_on_inserted)
            viewer.dims.ndisplay = 3

    viewer.layers.events.inserted.connect(_on_inserted)
