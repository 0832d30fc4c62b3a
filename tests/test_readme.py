"""The README's test command is the one CI runs, so a newcomer runs what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^xvfb-run .*pytest.*$", readme, flags=re.M)
    assert commands, "README shows no test command"
    assert commands[0] in ci.splitlines()


def test_readme_starts_with_demo_then_tests():
    readme = (ROOT / "README.md").read_text()
    demo = readme.index("napari-zarr-vectors demo")
    tests = readme.index("python -m pytest")
    assert demo < tests < readme.index("## What it does")
    assert (ROOT / "docs" / "images" / "demo.png").is_file()
