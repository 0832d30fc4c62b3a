"""Store reads -> napari layer-data tuples, and napari layer data -> store writes.

No Qt here and no viewer: only the ``(data, kwargs, layer_type)`` tuples
napari's reader protocol uses, so this is testable without a GUI.

Axis order: napari puts the slowest axis first (z, y, x) while Zarr Vectors
stores list axes as written (x, y, z).  Positions are reversed on the way
in and again on the way out, and axis labels follow, so a 2D store shows x
across and y down as an image would.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import density, lod, store
from .colouring import point_colours
from .store import LevelData, StoreError, StoreInfo

LayerDataTuple = tuple[Any, dict[str, Any], str]
METADATA_KEY = "zarr_vectors"
#: The density companion's metadata key: not METADATA_KEY, so no follower, builder or drill takes it for a vector layer.
DENSITY_KEY = "zarr_vectors_density"


def _flip(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a)[..., ::-1])


def _common_kwargs(info: StoreInfo, level: int, name: str, budget: int) -> dict[str, Any]:
    return {
        "name": name,
        "scale": tuple(reversed(info.scale)),
        "translate": tuple(reversed(info.translate)),
        "axis_labels": tuple(reversed(info.axis_names)),
        "metadata": {
            METADATA_KEY: {
                "path": info.path,
                "level": int(level),
                "kind": info.kind,
                "levels": [lv.index for lv in info.levels],
                "vertex_budget": int(budget),
            }
        },
    }


def _numeric(values: np.ndarray) -> bool:
    return np.asarray(values).dtype.kind in "fiu" and np.asarray(values).ndim == 1


def _color_attribute(columns: Mapping[str, np.ndarray]) -> str | None:
    """The attribute that colours the layer: the first float one, else the first numeric."""
    numeric = [k for k, v in columns.items() if _numeric(v) and len(np.unique(v[:10_000])) > 1]
    floats = [k for k in numeric if np.asarray(columns[k]).dtype.kind == "f"]
    return (floats or numeric or [None])[0]


def _features(columns: Mapping[str, np.ndarray], n: int) -> pd.DataFrame:
    out = {}
    for name, values in columns.items():
        values = np.asarray(values)
        if len(values) != n:
            continue
        out[name] = values if values.ndim == 1 else list(values)
    return pd.DataFrame(out, index=pd.RangeIndex(n))


#: Marker size and edge width as fractions of a level's bin, so a coarse level draws bigger marks.
MARKER_FRACTION = 0.35
EDGE_FRACTION = 0.15


def _bin_extent(bin_shape: Sequence[float], scale: Sequence[float]) -> float:
    """A bin's mean side in world units (both arguments in store axis order)."""
    return float(np.mean(np.asarray(bin_shape, dtype=float) * np.asarray(scale, dtype=float)))


def _marker_size(info: StoreInfo, level: int) -> float:
    return MARKER_FRACTION * _bin_extent(info.level(level).bin_shape, info.scale)


def points_layer(info: StoreInfo, data: LevelData, name: str, budget: int) -> LayerDataTuple:
    """A Points layer coloured by a label attribute if the store has one, else by a float attribute.

    Labels are the better default: a coarse vertex's label (kept with
    ``mode``) is the structure most of its points belong to, so a label
    has one colour at every level and zooming changes no colours. A mean
    is a narrower, different quantity at each level.
    """
    kwargs = _common_kwargs(info, data.level, name, budget)
    features = _features(data.vertex_attributes, data.vertex_count)
    kwargs.update(
        features=features,
        size=_marker_size(info, data.level),
        border_width=0,
    )
    labels = _label_attribute(data.vertex_attributes)
    colour_by = _color_attribute(data.vertex_attributes)
    if labels is not None:
        kwargs["face_color"] = label_colors(labels, _level0_values(info, data, labels))
    elif colour_by is not None:
        kwargs.update(face_color=colour_by, face_colormap="viridis")
        limits = _level0_range(info, data, colour_by)
        if limits is not None:
            kwargs["face_contrast_limits"] = limits
    else:
        kwargs.update(face_color="#4fc3f7")
    return (_flip(data.positions), kwargs, "points")


#: An integer attribute with at most this many values is a label: one colour per value.
MAX_LABELS = 64
#: Label colours, bright on napari's black canvas (after Sasha Trubetskoy's 20 distinct colours).
LABEL_PALETTE = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#42d4f4", "#f032e6", "#bfef45",
    "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#aaffc3", "#ffd8b1", "#a9a9ff",
)  # fmt: skip
#: Label 0 is background, as in napari's Labels layers: drawn dim.
BACKGROUND_COLOR = "#505050"


def _label_attribute(columns: Mapping[str, np.ndarray]) -> str | None:
    """The first integer attribute with 2..MAX_LABELS values at the level shown.

    A coarse level that averaged it (``mean``) holds floats, so only a
    pyramid that kept labels as labels (``mode``, ``min``, ``max``)
    colours by them.
    """
    for k, v in columns.items():
        v = np.asarray(v)
        if v.ndim == 1 and v.dtype.kind in "iu" and 1 < len(np.unique(v[:100_000])) <= MAX_LABELS:
            return k
    return None


def label_colors(name: str, values: np.ndarray) -> dict[str, Any]:
    """Napari ``face_color`` for label attribute ``name``: a fixed colour per label value.

    Value ``v`` gets ``LABEL_PALETTE[v % len]`` (0 the background
    colour), whatever level is shown; a value not among ``values`` gets
    the next palette colour when a finer level brings it in.
    """
    seen = np.unique(np.asarray(values).astype(np.int64))
    mapping = {int(v): BACKGROUND_COLOR if v == 0 else LABEL_PALETTE[int(v) % len(LABEL_PALETTE)] for v in seen}
    return {
        "color_properties": name,
        "color_mode": "cycle",
        "categorical_colormap": {"colormap": mapping, "fallback_color": list(LABEL_PALETTE)},
    }


def _level0_values(info: StoreInfo, data: LevelData, name: str, sample: int = 8) -> np.ndarray:
    """Attribute ``name`` at the level shown and in a few level-0 chunks (point stores)."""
    values = [np.asarray(data.vertex_attributes[name])]
    if data.level != 0 and info.kind in store.POINT_KINDS:
        try:
            # the non-empty chunks from metadata alone: sizing each would read all of level 0 (remote: every file)
            keys = [tuple(int(c) for c in k) for k in store.chunks_present(info.path, 0)]
            if keys:
                picks = [keys[i] for i in np.linspace(0, len(keys) - 1, min(sample, len(keys))).astype(int)]
                got = store.read_level(info.path, 0, kind=info.kind, vertex_attributes=[name], chunks=picks)
                values.append(np.asarray(got.vertex_attributes.get(name, np.zeros(0))))
        except StoreError:
            pass  # the level shown alone is still a fine start
    return np.concatenate(values)


def _level0_range(info: StoreInfo, data: LevelData, name: str, sample: int = 8) -> tuple[float, float] | None:
    """Contrast limits that still hold at level 0, from a few of its chunks.

    A coarse level holds means, narrower than the raw values: limits from
    it alone would saturate the colours once the camera zooms to level 0.
    """
    v = _level0_values(info, data, name, sample).astype(float)
    v = v[np.isfinite(v)]
    if not len(v) or v.min() == v.max():
        return None
    return float(v.min()), float(v.max())


def _segments(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Napari Vectors data (start, direction) for every consecutive vertex pair, and its part index."""
    ndim = parts[0].shape[1] if parts else 3
    starts, dirs, owner = [], [], []
    for i, part in enumerate(parts):
        if len(part) < 2:
            continue
        starts.append(part[:-1])
        dirs.append(np.diff(part, axis=0))
        owner.append(np.full(len(part) - 1, i, dtype=np.int64))
    if not starts:
        return np.zeros((0, 2, ndim)), np.zeros(0, np.int64)
    vec = np.stack([np.concatenate(starts), np.concatenate(dirs)], axis=1)
    return vec, np.concatenate(owner)


def _edge_width(info: StoreInfo, level: int) -> float:
    return EDGE_FRACTION * _bin_extent(info.level(level).bin_shape, info.scale)


def _segment_data(
    parts: Sequence[np.ndarray], part_columns: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Vectors data for store-order polylines, and each per-part column repeated for its segments."""
    vec, owner = _segments([_flip(p) for p in parts])
    return vec, {k: np.asarray(v)[owner] for k, v in part_columns.items() if len(v) == len(parts)}


def vectors_layer(
    info: StoreInfo,
    level: int,
    parts: Sequence[np.ndarray],
    part_columns: Mapping[str, np.ndarray],
    name: str,
    budget: int,
) -> LayerDataTuple:
    """Polylines as one Vectors layer of segments: ~100x faster to draw than Shapes paths."""
    vec, columns = _segment_data(parts, part_columns)
    kwargs = _common_kwargs(info, level, name, budget)
    kwargs.update(
        features=_features(columns, len(vec)),
        edge_width=_edge_width(info, level),
        vector_style="line",
    )
    colour_by = _color_attribute({k: v for k, v in columns.items() if k != "object_id"})
    if colour_by is not None:
        kwargs.update(edge_color=colour_by, edge_colormap="viridis")
    elif len(vec) and vec.shape[2] == 3:
        kwargs.update(edge_color=direction_colors(vec[:, 1]))
    else:
        kwargs.update(edge_color="#ffb74d")
    return (vec, kwargs, "vectors")


def direction_colors(directions: np.ndarray) -> np.ndarray:
    """RGBA per segment from its direction, as tractography viewers colour streamlines.

    ``directions`` are in napari order (z, y, x); red is x, green y, blue z.
    """
    d = np.abs(np.asarray(directions, dtype=np.float32))[:, ::-1]
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    rgb = np.divide(d, norm, out=np.full_like(d, 0.6), where=norm > 0)
    return np.concatenate([0.15 + 0.85 * rgb, np.ones((len(d), 1), np.float32)], axis=1)


def drawable_paths(
    parts: Sequence[np.ndarray], part_columns: Mapping[str, np.ndarray]
) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """The parts a Shapes path or line can draw (two distinct vertices or more), in napari order, with their columns.

    On a coarse level a short polyline can fall into a single bin and
    become one metanode; napari's Shapes refuses such a path ("needs at
    least two unique vertices"), so it is left out, as the Vectors layer
    leaves it out (it has no segment).  docs/viewing.md says so.
    """
    keep = np.array([len(p) >= 2 and bool(np.any(p != p[0])) for p in parts], dtype=bool)
    kept = [_flip(p) for p, k in zip(parts, keep, strict=True) if k]
    columns = {k: np.asarray(v)[keep] for k, v in part_columns.items() if len(v) == len(parts)}
    return kept, columns


def shapes_layer(
    info: StoreInfo,
    level: int,
    parts: Sequence[np.ndarray],
    part_columns: Mapping[str, np.ndarray],
    shape_type: str,
    name: str,
    budget: int,
) -> LayerDataTuple:
    paths, columns = drawable_paths(parts, part_columns)
    kwargs = _common_kwargs(info, level, name, budget)
    kwargs.update(
        shape_type=shape_type,
        features=_features(columns, len(paths)),
        edge_width=_edge_width(info, level),
        edge_color="#ffb74d",
        face_color="transparent",
    )
    return (paths, kwargs, "shapes")


def _part_columns(data: LevelData) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    if data.part_objects is not None:
        cols["object_id"] = np.asarray(data.part_objects)
    cols.update(data.object_attributes)
    return cols


def _coarsest_with_attributes(info: StoreInfo, h: store.Handle | None = None) -> int | None:
    """The coarsest level that carries every level-0 vertex attribute.

    Colouring is chosen from the attributes of the level opened and must
    hold once the follower swaps in finer levels, so a coarse level without
    them (upstream's builder writes none) would leave the layer uncoloured.
    None when no coarse level carries them: the budget then chooses.
    """
    indices = sorted(lv.index for lv in info.levels)
    if not info.vertex_attributes or info.kind not in store.POINT_KINDS:
        return indices[-1]
    names = store.level_attribute_names(h or info.path, indices)
    want = set(info.vertex_attributes)
    carrying = [i for i in indices[1:] if want <= set(names[i])]
    return max(carrying) if carrying else None


def layers_for_store(
    path: str | os.PathLike[str] | store.Handle,
    *,
    vertex_budget: int | None = None,
    budget_reason: str | None = None,
    shapes_path_limit: int = lod.DEFAULT_SHAPES_PATH_LIMIT,
    level: int | None = None,
    progressive: bool = False,
    density: bool = True,
) -> list[LayerDataTuple]:
    """All layers for one store, at ``level`` or the level the budget picks.

    ``density``: a point cloud also gets its density image (``density_layer``), first, under the points.

    ``progressive``: point and polyline layers open at the coarsest level,
    the quickest to read and draw, and the camera follower attached in a
    viewer then refines them to what fits the budget in view (Deep Zoom
    and map viewers draw a coarse tile first in the same way).

    ``vertex_budget`` defaults to ``lod.default_vertex_budget()`` (250,000,
    or ``$NAPARI_ZARR_VECTORS_VERTEX_BUDGET``); the reader passes the
    budget for the viewer's renderer (``_renderer.machine_budget``).
    ``budget_reason``, one line saying where the budget came from, goes
    into each layer's metadata as ``budget_reason`` for the Levels widget.

    Polylines with more parts than ``shapes_path_limit`` are drawn as a
    Vectors layer, because napari Shapes costs ~14 ms per path.  Raises StoreError with a message naming
    the store and the problem.
    """
    out = _layers_for_store(path, vertex_budget, shapes_path_limit, level, progressive, density)
    if budget_reason is None:
        budget_reason = lod.budget_for(None, None)[1] if vertex_budget is None else "given when opened"
    for _, kwargs, _ in out:
        meta = kwargs.get("metadata", {}).get(METADATA_KEY)
        if meta is not None:
            meta["budget_reason"] = budget_reason
    return out


def _layers_for_store(
    path: str | os.PathLike[str] | store.Handle,
    vertex_budget: int | None,
    shapes_path_limit: int,
    level: int | None,
    progressive: bool,
    density: bool,
) -> list[LayerDataTuple]:
    h = store.handle(path)
    info = store.open_info(h)
    if vertex_budget is None:
        vertex_budget = lod.default_vertex_budget()
    asked = level
    followable = info.kind in store.POINT_KINDS + store.POLYLINE_KINDS
    if level is None and progressive and followable:
        level = _coarsest_with_attributes(info, h)
    if level is None:
        drawn = None
        if info.kind in store.POLYLINE_KINDS:
            drawn = lambda index: store.estimate_drawn_vertices(h, index)  # noqa: E731
        level = lod.choose_level([(lv.index, lv.vertex_count) for lv in info.levels], vertex_budget, drawn)
    info.level(level)  # raises a clear error for an unknown level
    kind = info.kind
    base = f"{info.name} ({kind})"
    if kind in store.MESH_KINDS:
        return [_mesh_layer(info, level, base, vertex_budget)]
    flat = len(info.levels) == 1 and info.levels[0].vertex_count > vertex_budget
    if kind in store.POINT_KINDS and asked is None and flat:
        # level 0 only and over the budget: an even subsample, read chunk by chunk (docs/viewing.md)
        sample = lod.read_level_sample(h, level, vertex_budget)
        layer = points_layer(info, sample.data, base, vertex_budget)
        layer[1]["metadata"][METADATA_KEY]["sampled_from"] = sample.in_view
        return [*([density_layer(info)] if density else []), layer]
    data = store.read_level(h, level, kind=kind)
    if kind in store.POINT_KINDS:
        companion = [density_layer(info)] if density else []
        return [*companion, points_layer(info, data, base, vertex_budget)]
    if kind in store.POLYLINE_KINDS + store.LINE_KINDS:
        parts = data.parts()
        cols = _part_columns(data)
        # Shapes only for small stores: the layer type stays when the follower goes finer
        most_paths = max([lv.object_count for lv in info.levels] + [len(parts)])
        if most_paths <= shapes_path_limit:
            shape_type = "line" if kind in store.LINE_KINDS else "path"
            return [shapes_layer(info, level, parts, cols, shape_type, base, vertex_budget)]
        return [vectors_layer(info, level, parts, cols, base, vertex_budget)]
    if kind in store.GRAPH_KINDS:
        nodes = points_layer(info, data, f"{info.name} ({kind} nodes)", vertex_budget)
        nodes[1]["size"] = nodes[1]["size"] * 0.5
        edges = data.edges if data.edges is not None else np.zeros((0, 2), np.int64)
        edge_parts = [data.positions[e] for e in edges]
        edge_layer = vectors_layer(info, level, edge_parts, {}, f"{info.name} ({kind} edges)", vertex_budget)
        return [edge_layer, nodes]
    raise StoreError(f"Store '{info.path}': geometry '{kind}' has no layer type.")  # pragma: no cover


#: Most level-0 pixels the companion density image gets; its pixel grows from a quarter bin to fit.
DENSITY_MAX_PIXELS = 2**24
#: The density colours follow log(1 + span * value / top): a pixel 1/span of the top is just visible.
DENSITY_LOG_SPAN = 100.0


def density_layer(info: StoreInfo, *, max_pixels: int = DENSITY_MAX_PIXELS) -> LayerDataTuple:
    """A hidden multiscale Image of the store's level-0 density, laid exactly over its Points layer.

    The pixel is a quarter of the base bin, or coarser (a power of two
    times that) to stay within ``max_pixels``.  The data is a
    ``density.LazyDensity``: nothing is counted until the layer is shown
    (the camera follower computes it on a worker then).  Counts are
    shown per level-0 pixel on a log colour scale.
    """
    grid = None
    pixel = np.asarray(info.levels[0].bin_shape, dtype=float) * density.PIXEL_FRACTION
    while grid is None:
        # doubling a positive finite pixel ends: the raster shrinks to one pixel, or the pixel overflows to
        # infinity and stops here; a negative, zero or NaN pixel would double for ever
        if not (np.all(np.isfinite(pixel)) and np.all(pixel > 0)):
            raise density.DensityError(
                f"Store '{info.path}': the density image's pixel came to {tuple(pixel.tolist())} from level 0's "
                f"bin size {tuple(info.levels[0].bin_shape)}; a pixel and a bin must be positive and finite, so no "
                "density image is made. Fix attributes.zarr_vectors.base_bin_shape in the store's zarr.json, or "
                "restore it from a copy."
            )
        try:
            grid = density.density_grid(info, pixel_size=pixel, max_pixels=max_pixels)
        except density.DensityError:
            pixel = pixel * 2
    lazy = density.LazyDensity(info.path, grid)
    scale, translate = grid.layer_transform(info)
    kwargs = {
        "name": f"{info.name} ({info.kind} density)",
        "multiscale": True,
        "visible": False,
        "scale": scale,
        "translate": translate,
        "axis_labels": tuple(reversed(info.axis_names)),
        "colormap": density.log_colormap("magma", span=DENSITY_LOG_SPAN),
        "rendering": "average",  # in 3D: the density seen through the volume, not its brightest voxel
        "contrast_limits": lazy.contrast_limits(),
        "blending": "additive",
        "interpolation2d": "nearest",
        "metadata": {
            DENSITY_KEY: {
                "path": info.path,
                "kind": info.kind,
                "pixel_size": list(grid.pixel),
                "shapes": [list(sh) for sh in grid.shapes],
                "lazy": lazy,
            }
        },
    }
    return (lazy.levels, kwargs, "image")


@dataclass
class Payload:
    """Layer data ready to swap into an existing layer, built off the GUI thread."""

    layer_type: str
    level: int
    data: Any
    features: pd.DataFrame
    style: dict[str, Any]
    vertex_count: int
    #: Points: RGBA per point mapped on the worker with ``colouring`` (None: the GUI thread maps them).
    face_colors: np.ndarray | None = None
    #: Points: the layer's face colouring the colours were mapped with (``_napari_private.face_colouring``).
    colouring: dict[str, Any] | None = None
    #: Worker seconds spent on this payload: "read" (the store) and "payload" (arrays and colours).
    seconds: dict[str, float] = field(default_factory=dict)


def region_payload(
    layer_type: str,
    region: LevelData,
    *,
    bin_shape: Sequence[float],
    scale: Sequence[float],
    shape_type: str = "path",
    colouring: Mapping[str, Any] | None = None,
    level_bins: Mapping[int, Sequence[float]] | None = None,
    min_size: float = 0.0,
) -> Payload:
    """A controller ``Region`` as data for a layer of ``layer_type`` (points, vectors or shapes).

    ``bin_shape`` and ``scale`` are in store axis order.  ``style`` holds
    the level-dependent sizes (marker size, edge width) and, for Vectors
    coloured by direction, the colours of the new segments.  Points with
    ``colouring`` (the layer's, snapshot on the GUI thread) get their face
    colours mapped here, on the worker, so the swap only hands them over.
    A region of several levels (its ``point_levels``) gets, with
    ``level_bins`` (bin shape per level), each point sized by its level's
    bin in ``style["sizes"]``, at least ``min_size`` world units (a marker
    below a pixel or two shows its border colour, not its face colour);
    ``style["size"]`` stays the finest level's.
    """
    extent = _bin_extent(bin_shape, scale)
    n = region.vertex_count
    if layer_type == "points":
        features = _features(region.vertex_attributes, n)
        colours = getattr(region, "face_colors", None)  # mapped per chunk by the controller, cached there
        if colours is None or len(colours) != n:
            colours = point_colours(region.vertex_attributes, colouring)
        style = {"size": MARKER_FRACTION * extent}
        point_levels = getattr(region, "point_levels", None)
        if level_bins and point_levels is not None and len(point_levels) and np.ptp(point_levels) > 0:
            sizes = {lv: max(MARKER_FRACTION * _bin_extent(b, scale), min_size) for lv, b in level_bins.items()}
            lookup = np.zeros(int(point_levels.max()) + 1)
            for lv in np.unique(point_levels):
                lookup[int(lv)] = sizes[int(lv)]
            style["sizes"] = lookup[point_levels]
        payload = Payload("points", region.level, _flip(region.positions), features, style, n)
        payload.face_colors, payload.colouring = colours, (dict(colouring) if colouring else None)
        return payload
    parts, cols = region.parts(), _part_columns(region)
    style: dict[str, Any] = {"edge_width": EDGE_FRACTION * extent}
    if layer_type == "vectors":
        vec, columns = _segment_data(parts, cols)
        if len(vec) and vec.shape[2] == 3:
            style["direction_colors"] = direction_colors(vec[:, 1])
        return Payload("vectors", region.level, vec, _features(columns, len(vec)), style, n)
    if layer_type == "shapes":
        style["shape_type"] = shape_type
        paths, columns = drawable_paths(parts, cols)
        return Payload("shapes", region.level, paths, _features(columns, len(paths)), style, n)
    raise ValueError(f"no level-of-detail swap for {layer_type} layers")


def _mesh_layer(info: StoreInfo, level: int, name: str, budget: int) -> LayerDataTuple:
    """Surface at ``level``, or the nearest finer level that keeps faces.

    Upstream 0.9.2 coarse mesh levels keep vertices but no faces; a
    Surface needs faces, so the level steps finer until it has some.
    """
    finer = sorted((lv.index for lv in info.levels if lv.index <= level), reverse=True)
    for index in finer:
        data = store.read_level(info.path, index, kind=info.kind)
        if data.faces is not None and len(data.faces):
            break
    if data.faces is None or not len(data.faces):
        raise StoreError(f"Store '{info.path}': the mesh has no faces at any level up to {level}.")
    kwargs = _common_kwargs(info, data.level, name, budget)
    colour_by = _color_attribute(data.vertex_attributes)
    layer_data: tuple = (_flip(data.positions), data.faces)
    if colour_by is not None:
        layer_data = (*layer_data, np.asarray(data.vertex_attributes[colour_by], float))
        kwargs["colormap"] = "viridis"
    return (layer_data, kwargs, "surface")


# ---------------------------------------------------------------- writing


def _attribute_arrays(features: Any, n: int, what: str) -> dict[str, np.ndarray]:
    """Layer features -> store attributes: numbers stay numbers, everything else becomes text."""
    if features is None:
        return {}
    df = pd.DataFrame(features)
    if len(df.columns) and len(df) != n:
        raise StoreError(f"The layer has {n} {what} but {len(df)} feature rows; they must match.")
    out: dict[str, np.ndarray] = {}
    for name in df.columns:
        col = df[name]
        if pd.api.types.is_bool_dtype(col):
            out[str(name)] = col.to_numpy().astype(np.uint8)
        elif pd.api.types.is_numeric_dtype(col):
            out[str(name)] = col.to_numpy()
        else:
            out[str(name)] = col.astype(str).to_numpy().astype(str)
    return out


def write_points_layer(path: str, data: Any, meta: Mapping[str, Any]) -> str:
    positions = _flip(np.asarray(data, dtype=float))
    attrs = _attribute_arrays(meta.get("features"), len(positions), "points")
    return store.write_point_cloud(path, positions, attributes=attrs)


WRITABLE_SHAPES = ("path", "line")


def write_shapes_layer(path: str, data: Any, meta: Mapping[str, Any]) -> str:
    shapes = [np.asarray(s, dtype=float) for s in data]
    types = list(meta.get("shape_type") or ["path"] * len(shapes))
    bad = sorted({t for t in types if t not in WRITABLE_SHAPES})
    if bad:
        raise StoreError(
            f"Cannot write '{path}': the layer has {', '.join(bad)} shapes; a Zarr Vectors "
            "polyline store holds only paths and lines. Move those shapes to another layer first."
        )
    attrs = _attribute_arrays(meta.get("features"), len(shapes), "shapes")
    return store.write_polyline_store(path, [_flip(s) for s in shapes], object_attributes=attrs)


def write_surface_layer(path: str, data: Any, meta: Mapping[str, Any]) -> str:
    vertices, faces = np.asarray(data[0], dtype=float), np.asarray(data[1])
    attrs = {}
    if len(data) > 2 and data[2] is not None:
        values = np.asarray(data[2])
        if values.ndim == 1 and len(values) == len(vertices):
            attrs["values"] = values
    return store.write_mesh_store(path, _flip(vertices), faces, vertex_attributes=attrs)


WRITERS = {
    "points": write_points_layer,
    "shapes": write_shapes_layer,
    "surface": write_surface_layer,
}


def write_layer(path: str, data: Any, meta: Mapping[str, Any], layer_type: str) -> str:
    """Write one napari layer's data as a new store; refuses types with no store kind."""
    writer = WRITERS.get(layer_type)
    if writer is None:
        raise StoreError(
            f"Cannot write a {layer_type} layer as a Zarr Vectors store: only "
            f"{', '.join(WRITERS)} layers can be saved (as point_cloud, polyline and mesh stores)."
        )
    return writer(path, data, meta)
