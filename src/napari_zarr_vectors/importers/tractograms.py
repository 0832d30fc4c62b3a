"""Tractograms (TRK, TCK with nibabel; TRX with trx-python) as streamline stores, in RAS+ millimetres.

Each streamline becomes one object. Positions are the RAS+ millimetre
world coordinates nibabel gives (``nibabel.streamlines.load``: TRK's
voxel-to-RAS affine applied, TCK already in RAS+ mm) and TRX stores
(positions in RAS+ mm by its specification). Per-streamline data become
object attributes, per-point (per-vertex) data vertex attributes; a
field with several values per item (RGB colours) becomes one column per
value, ``colors_0``, ``colors_1``, ``colors_2``.
TRX groups become 0/1 object attributes ``group_<name>``; TRX
per-group data cannot be stored (a warning says so).

nibabel and trx-python are optional (the ``import`` extra) and imported
only when a tractogram is read.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import store
from .geometry import DataNotKept, Loaded, attribute_name, check_file, first_line, needs, unreadable
from .tables import ImportFailed

#: Tractogram file endings and the format each is.
TRACTOGRAM_SUFFIXES: dict[str, str] = {".trk": "trk", ".tck": "tck", ".trx": "trx"}


def _columns(fields: dict[str, Any]) -> dict[str, np.ndarray]:
    """A file's fields as store columns: one per field with one value per item, ``NAME_0``, ``NAME_1``, ... per
    value of a field with several (RGB colours), as the pyramid builder aggregates one value per row."""
    out: dict[str, np.ndarray] = {}
    for key, values in fields.items():
        name = attribute_name(key)
        values = np.asarray(values)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim == 1:
            out[name] = np.array(values)
        else:
            flat = values.reshape(len(values), -1)
            for k in range(flat.shape[1]):
                out[f"{name}_{k}"] = np.array(flat[:, k])
    return out


def _no_reference(source: Any, why: str) -> ImportFailed:
    return ImportFailed(
        f"Cannot import '{source}': {why}, so its points cannot be placed in RAS+ millimetres without the reference "
        "image the tractogram was made on. Convert it to TRX or TCK with that reference (for example "
        "`tff_convert_tractogram in.trk out.trx --reference anat.nii.gz` from trx-python, or dipy's "
        "load_tractogram(..., reference=)), then import that. Nothing was written."
    )


def _nibabel_load(source: Path, fmt: str) -> Any:
    nib = needs("nibabel", "nibabel", "TRK and TCK tractograms")
    from nibabel.streamlines import tck

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loaded = nib.streamlines.load(str(source), lazy_load=False)
        except Exception as exc:
            text = first_line(exc)
            if "single-file" in text:
                raise ImportFailed(
                    f"Cannot import '{source}': its header says its streamlines are kept in another file ({text}); "
                    "this import reads single-file TCKs only. Save it as one file (MRtrix `tckedit in.tck out.tck`). "
                    "Nothing was written."
                ) from None
            raise unreadable(source, f"{fmt.upper()} tractogram", exc) from None
    for w in caught:
        message = str(w.message)
        if "'vox_to_ras'" in message and "not recorded" in message:
            raise _no_reference(source, "its TRK header records no voxel-to-RAS affine (vox_to_ras; a version 1 file)")
        if isinstance(w.message, Warning) and not issubclass(w.category, DeprecationWarning):
            warnings.warn(DataNotKept(f"'{source}': {message}"), stacklevel=4)
    if fmt == "tck" and not isinstance(loaded, tck.TckFile):
        raise unreadable(source, "TCK tractogram", ValueError("its content is not a TCK"))
    tractogram = loaded.tractogram
    dpp = {name: seq.get_data() for name, seq in tractogram.data_per_point.items()}
    return tractogram.streamlines, dpp, dict(tractogram.data_per_streamline), {}, ()


def _trx_load(source: Path) -> tuple[Any, Any]:
    needs("trx", "trx-python", "TRX tractograms")
    from trx import trx_file_memmap as tmm

    try:
        trx = tmm.load(str(source))
    except Exception as exc:
        raise unreadable(source, "TRX tractogram", exc) from None
    return trx, tmm


def load(source: str | os.PathLike[str], fmt: str) -> Loaded:
    """Read a TRK, TCK or TRX file into level 0 of a streamline store (written by ``Loaded.write``)."""
    path = check_file(source)
    trx = None
    try:
        if fmt == "trx":
            trx, _ = _trx_load(path)
            try:
                streamlines = trx.streamlines
                dpp = {name: seq.get_data() for name, seq in trx.data_per_vertex.items()}
                dps = dict(trx.data_per_streamline)
                groups = {name: np.asarray(ix) for name, ix in trx.groups.items()}
                per_group = tuple(trx.data_per_group)
            except Exception as exc:
                raise unreadable(source, "TRX tractogram", exc) from None
        else:
            streamlines, dpp, dps, groups, per_group = _nibabel_load(path, fmt)
        try:
            lengths = np.fromiter((len(s) for s in streamlines), np.int64, len(streamlines))
            data = np.asarray(streamlines.get_data()) if len(streamlines) else np.zeros((0, 3))
        except Exception as exc:
            raise unreadable(source, f"{fmt.upper()} tractogram", exc) from None
        if lengths.sum() != len(data):
            raise unreadable(source, f"{fmt.upper()} tractogram", ValueError("its point counts do not add up"))
        vertex_columns = _columns(dpp)
        object_columns = _columns(dps)
        for name, members in groups.items():
            flag = np.zeros(len(lengths), np.uint8)
            flag[members.astype(np.int64)] = 1
            object_columns[attribute_name(f"group_{name}")] = flag
        data = np.array(data)
    finally:
        if trx is not None:
            trx.close()  # a compressed TRX was unpacked into a temporary folder: remove it
    if per_group:
        warnings.warn(
            DataNotKept(
                f"'{source}': its per-group data ({', '.join(per_group)}) is not kept: a zarr-vectors store has no "
                "place for values per group of objects. Group membership is kept as group_<name> object attributes."
            ),
            stacklevel=3,
        )
    if not len(lengths) or not len(data):
        raise ImportFailed(f"Cannot import '{source}': the tractogram holds no streamlines. Nothing was written.")
    keep = lengths > 0
    if not keep.all():
        warnings.warn(
            DataNotKept(f"'{source}': {int((~keep).sum()):,} streamlines with no points were left out."),
            stacklevel=3,
        )
        object_columns = {k: v[keep] for k, v in object_columns.items()}
    for name, values in [*vertex_columns.items(), *object_columns.items()]:
        if values.dtype.kind not in "biuf":
            raise ImportFailed(
                f"Cannot import '{source}': its field '{name}' holds {values.dtype}, not numbers. Nothing was written."
            )
    cuts = np.cumsum(lengths[keep])[:-1]
    lines = np.split(data, cuts)
    if not np.isfinite(data).all():
        raise ImportFailed(
            f"Cannot import '{source}': {int((~np.isfinite(data).all(axis=1)).sum()):,} of its points have NaN or "
            "infinite coordinates. Nothing was written."
        )

    def write(folder: Path) -> None:
        store.write_polyline_store(
            folder,
            lines,
            geometry_type="streamline",
            vertex_attributes=vertex_columns,
            object_attributes=object_columns,
            publish=False,
        )

    return Loaded(
        format=fmt,
        kind="streamline",
        vertices=len(data),
        objects=len(lines),
        vertex_attributes=tuple(vertex_columns),
        object_attributes=tuple(object_columns),
        labels=(),
        write=write,
    )
