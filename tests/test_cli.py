import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np

from napari_zarr_vectors import cli, layers, store


def test_info_prints_levels(upstream_stores, capsys):
    path = upstream_stores["streamline"]
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    info = store.open_info(path)
    assert "streamline" in out
    for lv in info.levels:
        row = f"{lv.index:>5} {lv.vertex_count:>12,} {lv.object_count:>10,}"
        assert row in out
    assert "25 x 25 x 25" in out and "50 x 50 x 50" in out


def test_info_on_a_non_store_says_so(tmp_path, capsys):
    assert cli.main(["info", str(tmp_path)]) == 1
    assert "no zarr.json" in capsys.readouterr().err


def test_demo_screenshot_shows_the_point_cloud(tmp_path):
    out = tmp_path / "demo.png"
    env = dict(os.environ, NAPARI_ZARR_VECTORS_CACHE=str(tmp_path / "cache"))
    run = subprocess.run(
        [sys.executable, "-m", "napari_zarr_vectors.cli", "demo", "--screenshot", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "cache" / "v2" / "synthetic_points.zv").is_dir()  # samples.sample_path: version 2
    image = iio.imread(out)[..., :3].astype(int)
    coloured = (image.max(-1) > 60) & (image.max(-1) - image.min(-1) > 40)
    assert coloured.mean() > 0.05, f"only {coloured.mean():.1%} of the screenshot shows points"
    # coloured by label, one colour per structure: the sample's ten structures, not one colour for all
    palette = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in layers.LABEL_PALETTE])
    nearest = np.abs(image[coloured][:, None, :] - palette[None]).sum(-1)
    shares = np.bincount(nearest.argmin(1)[nearest.min(1) < 30], minlength=len(palette)) / coloured.sum()
    assert np.sum(shares > 0.01) >= 6, f"label colours seen (share of coloured pixels): {shares.round(3)}"


def _small_point_store(path):
    rng = np.random.default_rng(2)
    store.write_point_cloud(
        path,
        rng.uniform(0, 1000, (8000, 3)),
        attributes={"intensity": rng.uniform(0, 1, 8000), "label": rng.integers(0, 4, 8000)},
        chunk_shape=(500.0,) * 3,
        bin_shape=(50.0,) * 3,
    )
    return path


def test_build_command_with_overrides_and_progress(tmp_path, capsys):
    path = _small_point_store(tmp_path / "cli.zv")
    code = cli.main(["build", str(path), "--factors", "2,1", "2,1", "--agg", "mean", "--agg-override", "label=mode"])
    out = capsys.readouterr().out
    assert code == 0
    assert "[##############################] 5/5" in out
    assert store.list_levels(path) == [0, 1, 2]
    assert set(store.vertex_attribute_names(path, 2)) == {"intensity", "label"}


def test_build_command_refuses_bad_input_without_touching_the_store(tmp_path, capsys, tree_digest):
    path = _small_point_store(tmp_path / "bad.zv")
    before = tree_digest(path)
    assert cli.main(["build", str(path), "--factors", "2,1", "--agg-override", "nope=mode"]) == 1
    assert "not a level-0 vertex attribute" in capsys.readouterr().err
    assert tree_digest(path) == before


def test_export_dzi_writes_a_deep_zoom_image(upstream_stores, tmp_path, capsys):
    from napari_zarr_vectors import density

    path = upstream_stores["point_cloud"]
    assert cli.main(["export-dzi", str(path), str(tmp_path / "web"), "--axis", "z", "--pixel-size", "5"]) == 0
    out = capsys.readouterr().out
    dzi = tmp_path / "web" / "point_cloud.dzi"
    assert f"wrote {dzi}: 200 x 200 px, 9 levels" in out
    assert density.read_descriptor(dzi)["Width"] == 200
    assert (tmp_path / "web" / "point_cloud_files" / "8" / "0_0.png").is_file()
    # a second export to the same place is refused, naming the file, and changes nothing
    assert cli.main(["export-dzi", str(path), str(tmp_path / "web"), "--axis", "z", "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err
    # a 3D store needs an axis
    assert cli.main(["export-dzi", str(path), str(tmp_path / "other"), "--quiet"]) == 1
    assert "name the axis" in capsys.readouterr().err


def test_demo_without_a_qt_binding_says_what_to_install(tmp_path):
    """A fresh `pip install -e .` has napari but no Qt binding: the demo names the install, no traceback."""
    import subprocess
    import sys

    hide = tmp_path / "sitecustomize.py"  # make every Qt binding unimportable in the child, as on a bare install
    hide.write_text(
        "import sys\n"
        "class _NoQt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PyQt5', 'PyQt6', 'PySide2', 'PySide6'):\n"
        "            raise ImportError(f'no {name} here')\n"
        "sys.meta_path.insert(0, _NoQt())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "napari_zarr_vectors.cli", "demo", "--screenshot", str(tmp_path / "d.png")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert 'pip install "napari-zarr-vectors[all]"' in out.stderr
    assert not (tmp_path / "d.png").exists()
