"""The declared dependencies are what the code imports: none missing, none unused (no Qt or viewer needed)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src" / "napari_zarr_vectors"
#: Imported only inside a try/except ImportError, for an extra the user may install (remote.py: AWS profiles;
#: importers/: the [import] extra, which [all] and [testing] include: pyarrow, nibabel, trx-python; laspy and
#: trimesh are imported by name through importers.geometry.needs).
OPTIONAL = {"boto3", "pyarrow", "nibabel", "trx"}


def _declared() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}


def _imported() -> set[str]:
    """Top-level names of every module the package imports that is not its own or the standard library's."""
    names = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "napari_zarr_vectors"}


@cache
def _distributions() -> dict[str, list[str]]:
    return packages_distributions()


def _distribution(module: str) -> str:
    dists = _distributions().get(module, [module])
    return dists[0].lower().replace("_", "-")


def test_every_imported_package_is_declared():
    missing = {m: _distribution(m) for m in _imported() - OPTIONAL if _distribution(m) not in _declared()}
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_every_declared_package_is_imported():
    used = {_distribution(m) for m in _imported()}
    assert not _declared() - used, f"declared but never imported: {sorted(_declared() - used)}"
    assert "scipy" not in _declared()
