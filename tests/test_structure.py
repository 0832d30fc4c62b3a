"""The package's shape, read from its source with ``ast`` (nothing is imported; no napari or Qt).

Two rules: only ``napari_zarr_vectors/store/`` talks to zarr, zarr-vectors and obstore, so a change of
storage library touches one package; and the package's modules import one another without cycles, so
each can be read, tested and changed from the bottom up. Imports inside functions count: a lazy import
still ties the two modules together. ``if TYPE_CHECKING:`` blocks do not run and are left out of cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

SRC = Path(__file__).parent.parent / "src"
PACKAGE = "napari_zarr_vectors"
STORAGE_LIBRARIES = {"zarr", "zarr_vectors", "obstore"}


class Import(NamedTuple):
    line: int
    level: int  # 0 absolute, 1 for ``from .``, 2 for ``from ..``
    module: str  # "" for ``from . import x``
    names: tuple[str, ...]  # () for ``import a.b``
    text: str


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module under ``root/package`` by dotted name: its file, or for a package its ``__init__.py``
    (its folder when it has none)."""
    found: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        for i in range(1, len(parts)):
            found.setdefault(".".join(parts[:i]), root.joinpath(*parts[:i]))
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _where(path: Path, root: Path, i: Import) -> str:
    return f"{path.relative_to(root.parent)}:{i.line}: {i.text}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, *, type_checking: bool = True) -> list[Import]:
    """Every import in ``path`` at any depth, ``importlib.import_module("x")`` too; without ``type_checking``,
    not those under ``if TYPE_CHECKING:``."""
    found, stack = [], [ast.parse(path.read_text(), str(path))]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and not type_checking and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, 0, a.name, (), ast.unparse(node)) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names)
            found.append(Import(node.lineno, node.level, node.module or "", names, ast.unparse(node)))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            found.append(Import(node.lineno, 0, node.args[0].value, (), ast.unparse(node)))
    return sorted(found)


def storage_imports(root: Path, package: str) -> list[str]:
    """``file:line: import ...`` for each import of a storage library outside ``package/store/``."""
    store = root / package / "store"
    return [
        _where(path, root, i)
        for path in sorted((root / package).rglob("*.py"))
        if store not in path.parents
        for i in imports(path)
        if i.level == 0 and i.module.split(".")[0] in STORAGE_LIBRARIES
    ]


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module that defines dotted ``name``: itself if it is a module, else the nearest package above."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path, package: str) -> dict[str, dict[str, list[str]]]:
    """``graph[a][b]``: the ``file:line: import`` lines by which module ``a`` imports module ``b``.

    Only the named module is an edge, not the parent packages Python also imports on the way: else every
    package whose ``__init__`` re-exports a submodule would be a cycle with it.
    """
    known = modules(root, package)
    graph: dict[str, dict[str, list[str]]] = {name: {} for name in known}
    for name, path in known.items():
        if path.suffix != ".py":
            continue
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for i in imports(path, type_checking=False):
            base = ".".join(here[: len(here) - i.level + 1]) if i.level else ""
            target = ".".join(filter(None, [base, i.module]))
            for target_name in [f"{target}.{n}" for n in i.names] or [target]:
                other = _owner(target_name, known)
                if other and other != name:
                    graph[name].setdefault(other, []).append(_where(path, root, i))
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = stack[stack.index(node) :]
                    del stack[stack.index(node) :]
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return sorted(found)


def cycle_report(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    """Each cycle's modules, then the import lines between them that close it."""
    report = []
    for component in cycles(graph):
        report.append("cycle: " + " <-> ".join(component))
        report += [f"    {line}" for a in component for b in component for line in graph[a].get(b, [])]
    return report


def test_only_the_store_package_imports_zarr():
    found = storage_imports(SRC, PACKAGE)
    assert not found, (
        f"only {PACKAGE}/store/ may import {', '.join(sorted(STORAGE_LIBRARIES))}; these do too:\n"
        + "\n".join(found)
        + "\nMove the code that needs them into a module of store/ and call that instead."
    )


def test_no_import_cycles_between_the_packages_modules():
    report = cycle_report(import_graph(SRC, PACKAGE))
    assert not report, (
        "these modules import each other (a lazy import inside a function counts too):\n"
        + "\n".join(report)
        + "\nMove the shared code into a module both can import, or pass what one needs in as an argument."
    )


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    return tmp_path


def test_the_checks_see_lazy_relative_and_string_imports(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from . import b\n",
            "b.py": "def f():\n    from .a import g\n    return g\n",
            "c.py": "import importlib\n\ndef f():\n    return importlib.import_module('zarr.storage')\n",
            "store.py": "import zarr_vectors.core as core\nfrom obstore import auth\nimport zarrita\n",
            "store/x.py": "import zarr\n",
            "ui/__init__.py": "",
            "ui/w.py": "from .. import c\n\ndef f():\n    from ..a import g\n",
            "ui/v.py": "from .w import f\nfrom . import w\n",
        },
    )
    top = tmp_path.name
    assert storage_imports(root, "pkg") == [
        f"{top}/pkg/c.py:4: importlib.import_module('zarr.storage')",
        f"{top}/pkg/store.py:1: import zarr_vectors.core as core",
        f"{top}/pkg/store.py:2: from obstore import auth",
    ]
    graph = import_graph(root, "pkg")
    assert graph["pkg.ui.w"] == {
        "pkg.c": [f"{top}/pkg/ui/w.py:1: from .. import c"],
        "pkg.a": [f"{top}/pkg/ui/w.py:4: from ..a import g"],
    }
    assert graph["pkg.ui.v"] == {
        "pkg.ui.w": [f"{top}/pkg/ui/v.py:1: from .w import f", f"{top}/pkg/ui/v.py:2: from . import w"]
    }
    assert cycle_report(graph) == [
        "cycle: pkg.a <-> pkg.b",
        f"    {top}/pkg/a.py:1: from . import b",
        f"    {top}/pkg/b.py:2: from .a import g",
    ]


def test_a_reexporting_init_and_type_checking_imports_are_not_cycles(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "from .a import f\nfrom . import a\n",
            "a.py": "from typing import TYPE_CHECKING\nfrom . import b\n\nif TYPE_CHECKING:\n    from . import c\n",
            "b.py": "x = 1\n",
            "c.py": "from .a import f\n",
            "sub/__init__.py": "from .d import x\nfrom . import d\n",
            "sub/d.py": "from .. import b\n",
        },
    )
    graph = import_graph(root, "pkg")
    assert graph["pkg"].keys() == {"pkg.a"} and graph["pkg.a"].keys() == {"pkg.b"}
    assert graph["pkg.sub"].keys() == {"pkg.sub.d"} and graph["pkg.sub.d"].keys() == {"pkg.b"}
    assert cycles(graph) == []
