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


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)


def _apt_packages(text: str) -> set[str]:
    """Packages named by the apt-get install lines of ``text`` (options and continuation marks dropped)."""
    joined = text.replace("\\\n", " ")
    found: set[str] = set()
    for line in re.findall(r"apt-get install ([^\n;&|>]*)", joined):
        found |= {w for w in line.split() if not w.startswith("-")}
    return found


def test_the_first_two_blocks_install_what_they_run():
    """A newcomer copies one block to run the demo and one to run the tests, on a fresh Debian machine."""
    readme = (ROOT / "README.md").read_text()
    demo, tests = _bash_blocks(readme)[:2]
    assert "napari-zarr-vectors demo --screenshot" in demo
    assert '".[all]"' in demo  # a Qt binding: napari alone installs none
    assert '".[testing]"' in tests and "python -m pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert _apt_packages(demo) == _apt_packages(tests)
    assert _apt_packages(demo) <= _apt_packages(ci)


def test_the_extras_bring_a_qt_binding():
    text = (ROOT / "pyproject.toml").read_text()
    for extra in ("all", "testing"):
        block = re.search(rf"^{extra} = \[(.*?)\]$", text, flags=re.M | re.S)
        assert block and "napari[pyqt6]" in block.group(1), extra
