"""The evented models (build options, view state, breadcrumb) run with no Qt and no display.

Their tests run here again in a fresh interpreter with ``DISPLAY`` and
``QT_QPA_PLATFORM`` unset and pytest's Qt and napari plugins off; the
run fails if any Qt binding was imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
MODEL_TESTS = ["test_view_state.py", "test_build_options.py", "test_breadcrumb.py"]
#: Loaded as a pytest plugin in the child: fails the session if a Qt binding got imported.
CHECK = """
import sys

QT = ("PyQt5", "PyQt6", "PySide2", "PySide6", "qtpy", "napari")


def pytest_sessionfinish(session, exitstatus):
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in QT)
    if loaded:
        print("QT IMPORTED:", loaded[:10])
        session.exitstatus = 3
"""


def test_model_tests_pass_without_qt_or_a_display(tmp_path):
    files = [str(HERE / name) for name in MODEL_TESTS if (HERE / name).exists()]
    assert files, "no model tests found"
    (tmp_path / "no_qt_check.py").write_text(CHECK)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH", "")]))
    plugins = ["-p", "no:pytest-qt", "-p", "no:napari", "-p", "no:napari-plugin-engine", "-p", "no:npe2"]
    # A basetemp of its own: else the child's pytest makes the next numbered /tmp/pytest-of-*/pytest-N and
    # deletes the oldest ones, a whole suite's stores, which took two minutes of this test's time.
    basetemp = ["--basetemp", str(tmp_path / "child")]
    args = ["-q", "-p", "no_qt_check", *plugins, "-p", "no:cacheprovider", *basetemp, *files]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=HERE.parent,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "QT IMPORTED" not in run.stdout
    assert " passed" in run.stdout
