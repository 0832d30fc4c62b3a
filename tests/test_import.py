"""Point tables (CSV, TSV, Parquet) imported as stores: vendor layouts, text kept, bad input refused, nothing left.

Every table is a real file written with pandas / pyarrow under the vendors' exact column names
(10x Xenium ``transcripts.parquet``, Vizgen MERSCOPE ``detected_transcripts.csv``, NanoString
CosMx ``*_tx_file.csv``), small enough to import in a second, read in several batches.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr_vectors as zv

import napari_zarr_vectors as nzv
from napari_zarr_vectors import cli, importers, store
from napari_zarr_vectors.importers import tables

GENES = np.array(["Actb", "Gapdh", "Sst", "Vip", "Pvalb", "Gene139", "BLANK_0001", "NegControlProbe_00042"])
N = 6_000


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """Several record batches per file, so text codes and dropped rows cross batch boundaries."""
    monkeypatch.setattr(tables, "BATCH_ROWS", 1_000)
    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 64 << 10)


def _section(rng: np.random.Generator, n: int = N, z_planes: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A thin, wide tissue section (um), with genes that cluster by region so coarse modes are not all one gene."""
    xy = rng.uniform(0, [3000, 2000], (n, 2))
    z = rng.integers(0, z_planes, n) * 1.5
    region = (xy[:, 0] // 750).astype(int) % len(GENES)
    genes = np.where(rng.random(n) < 0.7, GENES[region], GENES[rng.integers(0, len(GENES), n)])
    return np.column_stack([xy, z]), genes


def xenium_table(path: Path, rng: np.random.Generator) -> pd.DataFrame:
    pos, genes = _section(rng)
    n = len(pos)
    df = pd.DataFrame(
        {
            "transcript_id": np.arange(281474976710656, 281474976710656 + n, dtype=np.uint64),
            "cell_id": rng.integers(-1, 400, n).astype(np.int64),
            "overlaps_nucleus": rng.integers(0, 2, n).astype(np.uint8),
            "feature_name": genes,
            "x_location": pos[:, 0].astype(np.float32),
            "y_location": pos[:, 1].astype(np.float32),
            "z_location": pos[:, 2].astype(np.float32),
            "qv": rng.uniform(20, 40, n).astype(np.float32),
            "fov_name": np.array([f"A{i}" for i in range(12)])[rng.integers(0, 12, n)],
            "nucleus_distance": rng.uniform(0, 30, n).astype(np.float32),
        }
    )
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    return df


def merscope_table(path: Path, rng: np.random.Generator) -> pd.DataFrame:
    pos, genes = _section(rng)
    n = len(pos)
    df = pd.DataFrame(
        {
            "barcode_id": rng.integers(0, 500, n),
            "global_x": np.round(pos[:, 0], 3),
            "global_y": np.round(pos[:, 1], 3),
            "global_z": pos[:, 2] / 1.5,  # z-plane index
            "x": rng.uniform(0, 2048, n).round(2),
            "y": rng.uniform(0, 2048, n).round(2),
            "fov": rng.integers(0, 60, n),
            "gene": genes,
            "transcript_id": np.array(["ENSMUST00000100497", "ENSMUST00000029866"])[rng.integers(0, 2, n)],
            "cell_id": rng.integers(10**17, 10**17 + 300, n),
        }
    )
    df.to_csv(path)  # with the unnamed index column the instrument's files have
    return df


def cosmx_table(path: Path, rng: np.random.Generator) -> pd.DataFrame:
    pos, genes = _section(rng)
    n = len(pos)
    df = pd.DataFrame(
        {
            "fov": rng.integers(1, 30, n),
            "cell_ID": rng.integers(0, 900, n),
            "x_local_px": rng.uniform(0, 4256, n).round(1),
            "y_local_px": rng.uniform(0, 4256, n).round(1),
            "x_global_px": np.round(pos[:, 0] * 5, 1),
            "y_global_px": np.round(pos[:, 1] * 5, 1),
            "z": (pos[:, 2] / 1.5).astype(int),
            "target": genes,
            "CellComp": np.array(["Nuclear", "Membrane", "Cytoplasm", "0"])[rng.integers(0, 4, n)],
        }
    )
    df.to_csv(path, index=False)
    return df


VENDORS = {
    "xenium": (
        "transcripts.parquet",
        xenium_table,
        "10x Xenium transcripts",
        ("x_location", "y_location", "z_location"),
        "feature_name",
        "cell_id",
    ),
    "merscope": (
        "detected_transcripts.csv",
        merscope_table,
        "Vizgen MERSCOPE detected transcripts",
        ("global_x", "global_y", "global_z"),
        "gene",
        "cell_id",
    ),
    "cosmx": (
        "Run5612_S1_tx_file.csv",
        cosmx_table,
        "NanoString CosMx transcripts",
        ("x_global_px", "y_global_px", "z"),
        "target",
        "cell_ID",
    ),
}


def _sorted_rows(positions: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    order = np.lexsort(positions.T[::-1])
    return (positions[order], *(np.asarray(c)[order] for c in columns))


def _expected_modes(fine_text: np.ndarray, parent: np.ndarray, n_coarse: int) -> list[str | None]:
    """Each coarse row's most frequent text among its children (a tie: the first in sorted order)."""
    out = []
    children = pd.Series(fine_text).groupby(parent)
    counts = {int(k): g.value_counts() for k, g in children if k >= 0}
    for row in range(n_coarse):
        c = counts.get(row)
        if c is None or not len(c):
            out.append(None)
            continue
        best = c.max()
        out.append(sorted(c.index[c == best])[0])
    return out


def no_store_left(folder: Path, name: str) -> bool:
    """Neither the store nor a temporary sibling of it is there."""
    return not [p for p in os.listdir(folder) if p == name or p.startswith(f".{name}.partial")]


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_vendor_table_imports_with_text_kept_and_mode_above(vendor, tmp_path):
    filename, make, preset, position, text, label = VENDORS[vendor]
    source = tmp_path / filename
    df = make(source, np.random.default_rng(len(vendor)))
    out = tmp_path / "section.zv"

    summary = nzv.import_file(source, out, factors=[(2, 1), (2, 1)], sparsity_seed=0)

    assert summary.preset == preset and summary.position == position
    assert summary.rows_read == summary.rows_written == len(df) and summary.levels == (0, 1, 2)
    assert text in summary.text_attributes and label in summary.attributes
    assert "transcript_id" not in summary.attributes if vendor == "xenium" else True
    assert "" not in summary.attributes and "Unnamed: 0" not in summary.attributes
    assert zv.open(str(out)).validate().errors == []

    # level 0 holds exactly the table's rows: positions (as written), the gene as text, the label as an integer
    positions, attrs = store.read_rows(out, 0, [text, label])
    table_pos = df[list(position)].to_numpy(np.float64)
    got = _sorted_rows(positions, attrs[text], attrs[label])
    want = _sorted_rows(table_pos, df[text].to_numpy(), df[label].to_numpy())
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1].tolist() == want[1].tolist()
    np.testing.assert_array_equal(got[2], want[2])
    assert attrs[label].dtype.kind in "iu"
    assert store.text_attributes(out, 0)[text] == tuple(sorted(set(df[text])))

    # every coarse vertex holds the most frequent gene of the level-0 points it stands for, as text, with level 0's
    # categories table; the label stays an integer (mode, never an average)
    _, fine = store.read_rows(out, 0, [text])
    ancestor = np.arange(len(fine[text]))
    for level in (1, 2):
        ancestor = store.parent_map(out, level - 1)[ancestor]
        assert (ancestor >= 0).all()
        coarse_pos, coarse = store.read_rows(out, level, [text, label])
        assert coarse[text].tolist() == _expected_modes(fine[text], ancestor, len(coarse_pos))
        assert len(set(coarse[text])) > 1 or level == 2  # level 2 of this small section is one or two vertices
        assert coarse[label].dtype.kind in "iu"
        assert store.text_attributes(out, level)[text] == store.text_attributes(out, 0)[text]


def test_the_command_imports_and_builds_a_default_pyramid(tmp_path, capsys):
    source = tmp_path / "transcripts.parquet"
    xenium_table(source, np.random.default_rng(1))
    out = tmp_path / "t.zv"

    assert cli.main(["import", str(source), str(out), "--quiet"]) == 0

    printed = capsys.readouterr().out
    assert "imported 6,000 points" in printed and "10x Xenium transcripts" in printed
    assert "feature_name (text)" in printed and "level" in printed
    levels = nzv.list_resolution_levels(out)
    assert levels[0] == 0 and len(levels) >= 2  # suggest_factors(store, 2) decided how many
    assert zv.open(str(out)).validate().errors == []


def test_no_pyramid_writes_level_0_only(tmp_path, capsys):
    source = tmp_path / "transcripts.parquet"
    xenium_table(source, np.random.default_rng(1))
    out = tmp_path / "t.zv"
    assert cli.main(["import", str(source), str(out), "--no-pyramid", "--quiet"]) == 0
    assert nzv.list_resolution_levels(out) == [0]


def test_columns_named_on_the_command_line_and_generic_xyz(tmp_path, capsys):
    rng = np.random.default_rng(4)
    pd.DataFrame(
        {"px": rng.uniform(0, 100, 2_000), "py": rng.uniform(0, 50, 2_000), "kind": rng.choice(["a", "b"], 2_000)}
    ).to_csv(tmp_path / "spots.tsv", sep="\t", index=False)
    args = ["import", str(tmp_path / "spots.tsv"), str(tmp_path / "spots.zv"), "--x", "px", "--y", "py", "--quiet"]
    assert cli.main([*args, "--attributes", "kind", "--no-pyramid"]) == 0
    info = store.open_info(tmp_path / "spots.zv")
    assert info.ndim == 2 and info.vertex_attributes == ("kind",)

    xyz = pd.DataFrame({"X": rng.uniform(0, 9, 1_500), "Y": rng.uniform(0, 9, 1_500), "Z": rng.uniform(0, 2, 1_500)})
    xyz["intensity"] = rng.uniform(0, 1, 1_500)
    xyz.to_csv(tmp_path / "det.csv", index=False)
    summary = nzv.import_file(tmp_path / "det.csv", tmp_path / "det.zv", build=False)
    assert summary.preset == importers.GENERIC and summary.position == ("X", "Y", "Z")
    assert summary.attributes == ("intensity",)


def test_nan_and_infinite_coordinates_are_dropped_and_counted(tmp_path, capsys):
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"x": rng.uniform(0, 100, 3_000), "y": rng.uniform(0, 100, 3_000), "z": rng.uniform(0, 5, 3_000)})
    df["gene"] = rng.choice(GENES, 3_000)
    df.loc[[3, 1_500], "x"] = np.nan  # in different batches
    df.loc[2_999, "z"] = np.inf
    df.loc[10, "y"] = -np.inf
    df.to_csv(tmp_path / "spots.csv", index=False)
    with open(tmp_path / "spots.csv") as f:  # and one row with its y left empty
        lines = f.read().splitlines()
    parts = lines[2001].split(",")
    parts[1] = ""
    lines[2001] = ",".join(parts)
    (tmp_path / "spots.csv").write_text("\n".join(lines) + "\n")

    with pytest.warns(importers.RowsDropped, match=r"5 of 3,000 rows .* left out and 2,995 imported"):
        summary = nzv.import_file(tmp_path / "spots.csv", tmp_path / "a.zv", build=False)
    assert summary.rows_dropped == 5 and store.open_info(tmp_path / "a.zv").levels[0].vertex_count == 2_995
    positions, attrs = store.read_rows(tmp_path / "a.zv", 0, ["gene"])
    keep = np.isfinite(df[["x", "y", "z"]].to_numpy()).all(axis=1)
    keep[2000] = False
    got, got_genes = _sorted_rows(positions, attrs["gene"])
    want, want_genes = _sorted_rows(df[["x", "y", "z"]].to_numpy()[keep], df["gene"].to_numpy()[keep])
    np.testing.assert_array_equal(got, want)
    assert got_genes.tolist() == want_genes.tolist()

    assert cli.main(["import", str(tmp_path / "spots.csv"), str(tmp_path / "b.zv"), "--quiet", "--no-pyramid"]) == 0
    assert "warning: 5 of 3,000 rows" in capsys.readouterr().err


def _write(path: Path, text: str | bytes) -> Path:
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def _parquet_bytes(tmp_path: Path, table: pa.Table) -> bytes:
    pq.write_table(table, tmp_path / "whole.parquet")
    data = (tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "whole.parquet").unlink()
    return data


BAD = {
    "no coordinate columns": (
        "cells.csv",
        "area,gene,score\n1,Actb,2\n3,Sst,4\n",
        ["found no coordinate columns", "'area', 'gene', 'score'", "--x COLUMN --y COLUMN"],
    ),
    "empty csv": ("t.csv", "", ["the file is empty"]),
    "empty parquet": ("t.parquet", b"", ["the file is empty"]),
    "header only": ("t.csv", "x,y,z,gene\n", ["has no rows"]),
    "truncated csv": ("t.csv", "x,y,z,gene\n1,2,3,Actb\n4,5,6,Sst\n7,8", ["truncated"]),
    "text coordinates": (
        "t.csv",
        "x,y,gene\n1,2,Actb\nabc,5,Sst\n",
        ["position column 'x' must hold numbers", "'abc'"],
    ),
    "a column changing type": (
        "t.csv",
        "x,y,fov\n" + "1,2,3\n" * 20_000 + "4,5,six\n",  # past the first 64 KiB block, whose types hold
        ["column 'fov' changes type", "holds 'six'", "--attributes"],
    ),
    "unknown extension": ("t.xlsx", "x,y\n1,2\n", ["is not one this plugin imports", ".csv", ".parquet", ".tsv"]),
    "missing column": ("t.csv", "x,y\n1,2\n", ["has no column 'depth'", "--z"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_one_message_and_leaves_no_store(case, tmp_path, capsys):
    name, content, expected = BAD[case]
    source = _write(tmp_path / name, content)
    extra = ["--z", "depth"] if case == "missing column" else []
    assert cli.main(["import", str(source), str(tmp_path / "out.zv"), "--quiet", *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    for text in expected:
        assert text in err, (text, err)
    assert "Nothing was written" in err
    assert no_store_left(tmp_path, "out.zv")


def test_bad_parquet_files_give_one_message_and_leave_no_store(tmp_path, capsys):
    good = pa.table({"x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.0], "gene": ["a", "b", "c"]})
    data = _parquet_bytes(tmp_path, good)
    truncated = _write(tmp_path / "cut.parquet", data[: len(data) // 2])
    assert cli.main(["import", str(truncated), str(tmp_path / "out.zv"), "--quiet"]) == 1
    assert "not a complete Parquet file (truncated or damaged" in capsys.readouterr().err

    words = _write(tmp_path / "words.parquet", _parquet_bytes(tmp_path, pa.table({"x": ["1", "2"], "y": [1.0, 2.0]})))
    assert cli.main(["import", str(words), str(tmp_path / "out.zv"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "column 'x' holds string, not numbers" in err and "Traceback" not in err
    assert no_store_left(tmp_path, "out.zv")


def test_an_existing_store_is_refused_before_the_file_is_read(tmp_path, capsys):
    source = tmp_path / "transcripts.parquet"
    xenium_table(source, np.random.default_rng(1))
    (tmp_path / "out.zv").mkdir()
    (tmp_path / "out.zv" / "mine.txt").write_text("keep me")
    assert cli.main(["import", str(source), str(tmp_path / "out.zv"), "--quiet"]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert os.listdir(tmp_path / "out.zv") == ["mine.txt"]


def test_a_failed_build_leaves_no_store(tmp_path, capsys):
    """Level 0 is written, then the build refuses `mean` for text: the whole import is undone."""
    source = tmp_path / "transcripts.parquet"
    xenium_table(source, np.random.default_rng(1))
    code = cli.main(["import", str(source), str(tmp_path / "out.zv"), "--quiet", "--agg-override", "feature_name=mean"])
    assert code == 1
    err = capsys.readouterr().err
    assert "feature_name" in err and ".partial" not in err
    assert no_store_left(tmp_path, "out.zv")


def test_a_text_column_with_an_id_per_row_is_left_out_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "MAX_TEXT_CATEGORIES", 500)
    rng = np.random.default_rng(6)
    df = pd.DataFrame({"x": rng.uniform(0, 9, 2_000), "y": rng.uniform(0, 9, 2_000)})
    df["molecule"] = [f"m{i}" for i in range(2_000)]
    df["gene"] = rng.choice(GENES, 2_000)
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.warns(importers.ColumnsSkipped, match="'molecule' \\(more than 500 distinct values"):
        summary = nzv.import_file(tmp_path / "t.csv", tmp_path / "a.zv", build=False)
    assert summary.attributes == ("gene",)
    with pytest.raises(importers.ImportFailed, match="attribute column 'molecule' cannot be kept"):
        nzv.import_file(tmp_path / "t.csv", tmp_path / "b.zv", attributes=["molecule"], build=False)
    assert no_store_left(tmp_path, "b.zv")


def test_without_pyarrow_the_message_names_the_extra(tmp_path):
    source = _write(tmp_path / "t.csv", "x,y\n1,2\n")
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"  # as if pyarrow were not installed
        "from napari_zarr_vectors import cli\n"
        f"sys.exit(cli.main(['import', {str(source)!r}, {str(tmp_path / 'out.zv')!r}, '--quiet']))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert 'pip install "napari-zarr-vectors[import]"' in run.stderr and "Traceback" not in run.stderr
    assert no_store_left(tmp_path, "out.zv")


def test_importing_without_a_pyramid_warns_nothing_else(tmp_path):
    source = tmp_path / "transcripts.parquet"
    xenium_table(source, np.random.default_rng(2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = nzv.import_file(source, tmp_path / "a.zv", build=False)
    assert summary.levels == (0,) and summary.rows_dropped == 0
    assert not [w for w in caught if issubclass(w.category, importers.RowsDropped | importers.ColumnsSkipped)]
