from pathlib import Path

import npe2

import napari_zarr_vectors

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_validates():
    manifest = npe2.PluginManifest.from_distribution("napari-zarr-vectors")
    assert manifest.name == "napari-zarr-vectors"
    assert {w.layer_types[0] for w in manifest.contributions.writers} == {"points", "shapes", "surface"}
    assert len(manifest.contributions.sample_data) == 2


def test_top_level_manifest_is_the_package_manifest():
    top = ROOT / "napari.yaml"
    assert top.is_symlink()
    assert top.resolve() == (Path(napari_zarr_vectors.__file__).parent / "napari.yaml").resolve()


def test_npe2_validate_command():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-zarr-vectors"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_framework_classifier():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"Framework :: napari"' in text
