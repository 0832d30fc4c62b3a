"""What a non-table reader hands ``import_file``: level 0 ready to write, and the checks every reader shares.

Each format module (``tractograms``, ``swc``, ``meshes``, ``lidar``) reads
its file with the field's own library into a ``Loaded``: the store kind,
counts, the attribute names, and a ``write(folder)`` that writes level 0
into the import's temporary store (``publish=False``). Library errors
become one ``ImportFailed`` sentence naming the file; a missing library
names the extra to install.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tables import EXTRA, ImportFailed


class DataNotKept(UserWarning):
    """Part of an imported file could not be stored (the message names what and why); the rest was imported."""


@dataclass
class Loaded:
    """A file read into level 0: its kind, counts and attribute names, and how to write it (into a temporary)."""

    format: str
    kind: str
    vertices: int
    objects: int
    vertex_attributes: tuple[str, ...]
    object_attributes: tuple[str, ...]
    #: integer attributes that are labels (a class, a node type): aggregated with `mode`, never averaged
    labels: tuple[str, ...]
    write: Callable[[Path], None]


def check_file(source: str | os.PathLike[str], max_bytes: int | None = None, what: str = "") -> Path:
    """``source`` as a Path, refused when missing, a folder, empty, or (``max_bytes``) too large to read whole."""
    path = Path(source)
    if not path.is_file():
        it = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ImportFailed(f"Cannot import '{source}': it {it}. Nothing was written.")
    size = path.stat().st_size
    if size == 0:
        raise ImportFailed(f"Cannot import '{source}': the file is empty. Nothing was written.")
    if max_bytes is not None and size > max_bytes:
        raise ImportFailed(
            f"Cannot import '{source}': it is {size / 2**20:,.0f} MiB, larger than the {max_bytes / 2**20:,.0f} MiB "
            f"this import reads whole{' for ' + what if what else ''}. Split it into smaller files. "
            "Nothing was written."
        )
    return path


def needs(module: str, package: str, what: str) -> Any:
    """Import ``module`` (the library that reads ``what``), or ImportFailed naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportFailed(
            f"Reading {what} needs {package}, which is not installed. "
            f'Install it with: pip install "napari-zarr-vectors[{EXTRA}]"'
        ) from None


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (its first), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def unreadable(source: str | os.PathLike[str], kind: str, exc: BaseException) -> ImportFailed:
    """A library's refusal to read ``source`` as one sentence."""
    return ImportFailed(
        f"Cannot import '{source}': it is not a readable {kind} (truncated, damaged, or not that kind of file: "
        f"{first_line(exc)}). Export it again. Nothing was written."
    )


def attribute_name(name: str) -> str:
    """A file's field name as a store attribute name (no path separators, no leading dot)."""
    cleaned = "".join(c if c.isalnum() or c in "_-." else "_" for c in str(name)).lstrip(".")
    return cleaned or "field"
