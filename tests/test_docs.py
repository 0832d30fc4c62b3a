"""Every ```python block of README.md and docs/*.md runs, as written, on small data.

Each block is one test (id ``file:line`` of its opening fence). It is written to ``example.py``
in a fresh temporary folder and run there as a script (``python example.py``) in a fresh
process, so ``if __name__ == "__main__":`` blocks (the dask example) behave as they do for
a user, and every block must bring its own imports and its own data: the examples make
small stores with the public API or ``napari_zarr_vectors.samples`` (e.g.
``samples.make_point_cloud(path, n=20_000)``). ``$NAPARI_ZARR_VECTORS_CACHE`` points at a
session temporary folder, so a block calling ``samples.sample_store`` never touches the
user's cache (but builds the 500,000-point sample, ~10 s: prefer small data).

Exactly one thing of a block is changed: an interactive example ends with a
``napari.run()`` line, which would block, and that trailing line is replaced by code that
lets pending reads finish (Qt events and napari's worker threads until they are idle) and
then closes every viewer. A block that creates a ``napari.Viewer()`` must end with
``napari.run()``, and ``napari.run()`` anywhere else fails the test. Viewer blocks need a
display: run the suite under ``xvfb-run`` as the README says.

``UserWarning``s from ``napari.plugins.io`` (e.g. "not a valid writer", when a save wrote
nothing) are errors: a save that writes nothing is a failing example.

No block is skipped: a block that cannot run fails. Other blocks must be labelled honestly
(shell commands ```bash, output ```text); a ```py / unlabelled block, or a non-Python block
made of Python statements, fails ``test_code_blocks_are_labelled``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,}|~{3,})[ \t]*(?P<lang>[^`\s]*)[^`]*$")
PYTHON_ALIASES = {"py", "python3", "pycon", "ipython", "python-repl", "pyi"}
PYTHON_LINE = re.compile(r"^\s*(import \w|from [\w.]+ import |>>> |def \w+\(|class \w+[(:])")
RUN_LINE = "napari.run()"
TIMEOUT = 600

# What replaces a trailing ``napari.run()``: settle, close every viewer, settle again.
CLOSE_VIEWERS = """\
def _docs_close_viewers():  # tests/test_docs.py: instead of napari.run()
    import time

    from qtpy.QtCore import QThreadPool
    from qtpy.QtWidgets import QApplication

    def settle(seconds):
        pool, idle, end = QThreadPool.globalInstance(), 0, time.monotonic() + seconds
        while idle < 5:  # quiet for 5 polls in a row: no worker running, debounce timers fired
            assert time.monotonic() < end, f"napari workers still busy after {seconds} s"
            QApplication.processEvents()
            idle = idle + 1 if pool.waitForDone(50) and pool.activeThreadCount() == 0 else 0

    settle(120)
    napari.Viewer.close_all()
    settle(30)


_docs_close_viewers()
"""


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT).as_posix()}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """Every fenced block of a Markdown page, with its language and dedented text."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        ticks, start = m["ticks"], i
        close = re.compile(rf"^[ \t]*{re.escape(ticks[0])}{{{len(ticks)},}}[ \t]*$")
        i += 1
        while i < len(lines) and not close.match(lines[i]):
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page.relative_to(ROOT)}:{start + 1}: code block never closed")
        body = textwrap.dedent("\n".join(lines[start + 1 : i]))
        blocks.append(Block(page, start + 1, m["lang"].lower(), body + "\n"))
        i += 1
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in code_blocks(page)]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "python"]


def as_script(block: Block) -> str:
    """The block as run: only a trailing ``napari.run()`` line is replaced (see the module docstring)."""
    lines = block.code.rstrip().splitlines()
    runs = [k for k, line in enumerate(lines) if "napari.run(" in line]
    if runs and (runs != [len(lines) - 1] or lines[-1].strip() != RUN_LINE or lines[-1] != lines[-1].lstrip()):
        raise AssertionError(
            f"{block.id}: `napari.run()` must be the block's last line, alone and unindented, so the docs test "
            "can replace it by closing the viewer"
        )
    if "napari.Viewer(" in block.code and not runs:
        raise AssertionError(f"{block.id}: a block that creates a napari.Viewer() ends with `napari.run()`")
    if runs:
        lines[-1] = CLOSE_VIEWERS
    return "\n".join(lines) + "\n"


def test_the_docs_have_python_blocks():
    """The collector found the pages and their examples (an empty parametrization would pass silently)."""
    assert (ROOT / "README.md").is_file() and len(PAGES) > 5
    assert len(PYTHON_BLOCKS) >= 8, [b.id for b in PYTHON_BLOCKS]


def test_code_blocks_are_labelled():
    """Python is ```python (and so runs here); commands are ```bash, output ```text."""
    problems = []
    for b in ALL_BLOCKS:
        if not b.lang:
            problems.append(f"{b.id}: no language; label it python, bash or text")
        elif b.lang in PYTHON_ALIASES:
            problems.append(f"{b.id}: ```{b.lang} does not run in tests/test_docs.py; label it ```python")
        elif b.lang != "python":
            statements = [line for line in b.code.splitlines() if PYTHON_LINE.match(line)]
            if statements:
                problems.append(f"{b.id}: ```{b.lang} block holds Python ({statements[0].strip()!r}); label it python")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def docs_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("docs_cache")


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.id for b in PYTHON_BLOCKS])
def test_python_block_runs(block: Block, tmp_path: Path, docs_cache: Path):
    script = tmp_path / "example.py"
    script.write_text(as_script(block), encoding="utf-8")
    env = dict(os.environ)
    env.update(
        NAPARI_ZARR_VECTORS_CACHE=str(docs_cache),
        NAPARI_CONFIG=str(tmp_path / "napari_settings.yaml"),  # never the user's napari settings
        PYTHONUNBUFFERED="1",
    )
    env.pop("NAPARI_ZARR_VECTORS_VERTEX_BUDGET", None)
    cmd = [sys.executable, "-W", "error::UserWarning:napari.plugins.io", script.name]
    try:
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.id}: still running after {TIMEOUT} s\n{exc.stdout or ''}\n{exc.stderr or ''}")
    if done.returncode != 0:
        hint = "" if os.environ.get("DISPLAY") else "\n(no DISPLAY: viewer examples need xvfb-run, see README)"
        pytest.fail(
            f"{block.id} failed (exit {done.returncode}); line k of example.py is line {block.line}+k of the page"
            f"{hint}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-8000:]}",
            pytrace=False,
        )
    print(done.stdout)  # shown with pytest -rP
