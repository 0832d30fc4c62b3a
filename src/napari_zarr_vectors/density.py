"""Density rasters of a store level, their image pyramids, and Deep Zoom export.

No Qt and no viewer here.  A density raster counts a level's vertices per
pixel (optionally summing or averaging a vertex attribute); it is built
chunk batch by chunk batch, so memory stays near the raster's own size.

Two pyramid conventions, one per source system:

* **GeoRaster** (the napari image pyramid): level n has
  ``floor(size_0 / 2**n)`` pixels along each axis and covers the *same*
  extent as level 0, down to level ``floor(log2(min side))`` where the
  smaller side is 1 pixel.  Every level is counted from the vertices
  themselves, so each sums to the vertices counted, and a vertex always
  falls in a non-zero pixel of every level.
* **Deep Zoom** (the web export): level ``ceil(log2(max side))`` is full
  size, each level below is ceil-halved down to 1 x 1, and each level is
  cut in ``tile_size`` tiles that carry ``overlap`` pixels on each inner edge.

Raster axes are in napari order (the store's axes reversed: ``(z, y, x)``
or ``(y, x)``), so a 2D raster is an image whose width is the store's x.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from . import store
from .store import StoreError, StoreInfo

#: Default pixel: a quarter of the base level's bin along each axis.
PIXEL_FRACTION = 0.25
#: Largest level-0 raster density_pyramid makes without being told a pixel size (1 GiB of uint32).
MAX_PIXELS = 2**28
REDUCES = ("sum", "mean")
COUNT_ATTRIBUTE = "count"
DZI_NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"
DZI_FORMATS = ("png", "jpg", "jpeg")
#: How far (in pixels) past a closed grid's right edge a vertex still falls in the last pixel (float rounding).
EDGE_TOLERANCE = 1e-9


class DensityError(StoreError):
    """A density or Deep Zoom request is invalid; the message says what to change."""


# ---------------------------------------------------------------- level maths


def georaster_shapes(shape0: Sequence[int]) -> list[tuple[int, ...]]:
    """GeoRaster pyramid level shapes: floor(size_0 / 2**n) down to floor(log2(min side))."""
    shape0 = tuple(int(s) for s in shape0)
    if not shape0 or min(shape0) < 1:
        raise DensityError(f"A raster needs at least one pixel along every axis, got shape {shape0}.")
    top = int(math.floor(math.log2(min(shape0))))
    return [tuple(s >> n for s in shape0) for n in range(top + 1)]


def pyramid_overhead(shapes: Sequence[Sequence[int]]) -> float:
    """Pixels of the whole pyramid over those of its level 0 (tends to 4/3 in 2D, 8/7 in 3D)."""
    sizes = [math.prod(int(s) for s in sh) for sh in shapes]
    return sum(sizes) / sizes[0]


@dataclass(frozen=True)
class DeepZoomLevel:
    """One Deep Zoom level: its index, size in pixels, and tile columns x rows."""

    level: int
    width: int
    height: int
    columns: int
    rows: int


def deep_zoom_levels(width: int, height: int, tile_size: int = 256) -> list[DeepZoomLevel]:
    """Levels 0..ceil(log2(max side)), finest last; each level ceil-halves the one above."""
    if width < 1 or height < 1:
        raise DensityError(f"A Deep Zoom image needs a size of at least 1 x 1, got {width} x {height}.")
    if tile_size < 1:
        raise DensityError(f"tile_size must be a positive number of pixels, got {tile_size}.")
    top = int(math.ceil(math.log2(max(width, height))))
    out = []
    for level in range(top + 1):
        k = top - level
        w, h = -(-width // 2**k), -(-height // 2**k)
        out.append(DeepZoomLevel(level, w, h, -(-w // tile_size), -(-h // tile_size)))
    return out


def tile_span(size: int, index: int, tile_size: int, overlap: int) -> tuple[int, int]:
    """Pixel range [start, stop) of tile ``index`` along an axis of ``size`` pixels, overlap included."""
    start = index * tile_size - (overlap if index > 0 else 0)
    stop = min((index + 1) * tile_size + overlap, size)
    return max(start, 0), stop


# ---------------------------------------------------------------- the raster grid


@dataclass(frozen=True)
class DensityGrid:
    """Where a density raster lies: origin and pixel size (store axis order), kept axes, level shapes.

    ``axes`` are the store axes kept (all but the projected one), in store
    order; ``shapes`` are the pyramid level shapes in napari order.
    ``closed``: the last pixel along each axis also holds its right edge,
    as ``numpy.histogram``'s last bin does (a grid over a store's own bounds).
    """

    origin: tuple[float, ...]
    pixel: tuple[float, ...]
    axes: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]
    projected: int | None = None
    closed: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return self.shapes[0]

    def level_indices(self, positions: np.ndarray) -> tuple[np.ndarray, Iterator[np.ndarray]]:
        """For store-order positions: which fall inside, and (lazily, level by level) their flat pixel index.

        Level n's pixel along an axis is floor(e * size_n / size_0), e the
        position in level-0 pixels: level n spans the same extent.
        """
        axes = list(self.axes)
        size0 = np.asarray(self.shape[::-1], dtype=np.float64)  # store order
        e = np.asarray(positions, dtype=np.float64)[:, axes]
        e -= np.asarray(self.origin)[axes]
        e /= np.asarray(self.pixel)[axes]
        below = (e <= size0 + EDGE_TOLERANCE) if self.closed else (e < size0)
        inside = np.all((e >= 0) & below, axis=1)
        if not inside.all():
            e = e[inside]

        def flat() -> Iterator[np.ndarray]:
            for shape in self.shapes:
                n_store = np.asarray(shape[::-1], dtype=np.int64)
                idx = (e * (n_store / size0)).astype(np.int64)  # truncation is floor: e >= 0
                np.minimum(idx, n_store - 1, out=idx)
                out = idx[:, -1].copy()  # napari order: the last store axis varies slowest
                for a in range(idx.shape[1] - 2, -1, -1):
                    out *= n_store[a]
                    out += idx[:, a]
                yield out

        return inside, flat()

    def layer_transform(self, info: StoreInfo) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """napari (scale, translate) that lay level 0 over the store's Points layer.

        Pixel i's centre is at origin + (i + 1/2) * pixel in store
        coordinates, then the store's own world transform applies.
        """
        scale = np.asarray(info.scale, dtype=float)
        shift = np.asarray(info.translate, dtype=float)
        axes = list(self.axes)
        px = np.asarray(self.pixel)[axes] * scale[axes]
        tr = (np.asarray(self.origin)[axes] + np.asarray(self.pixel)[axes] / 2) * scale[axes] + shift[axes]
        return tuple(float(v) for v in px[::-1]), tuple(float(v) for v in tr[::-1])


def _axis_index(info: StoreInfo, axis: int | str | None) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, str):
        names = [a.lower() for a in info.axis_names]
        if axis.lower() not in names:
            raise DensityError(f"Store '{info.path}' has no axis '{axis}'; its axes are {', '.join(info.axis_names)}.")
        return names.index(axis.lower())
    if not 0 <= int(axis) < info.ndim:
        raise DensityError(f"axis {axis} is out of range for a {info.ndim}D store (0..{info.ndim - 1}).")
    return int(axis)


def density_grid(
    info: StoreInfo,
    *,
    level: int = 0,
    axis: int | str | None = None,
    pixel_size: float | Sequence[float] | None = None,
    bounds: tuple[Sequence[float], Sequence[float]] | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> DensityGrid:
    """The raster grid for a store: default pixel a quarter of the base bin, origin on the pixel lattice at 0.

    Pixels are aligned on multiples of the pixel size from 0, as the
    store's bins are, so a pixel never straddles a bin edge when the
    pixel divides the bin.  ``bounds`` (store order, half-open) defaults
    to the store's bounds, closed as ``numpy.histogram``'s range is: a
    span of W pixels gives W pixels, and a vertex on the upper bound falls
    in the last one (bounds [0, 4224] at pixel 1: 4224 pixels, not 4225).
    """
    info.level(level)
    proj = _axis_index(info, axis)
    if proj is not None and info.ndim < 3:
        raise DensityError(f"Store '{info.path}' is {info.ndim}D: it is already an image plane; leave the axis out.")
    if pixel_size is None:
        pixel = np.asarray(info.levels[0].bin_shape, dtype=float) * PIXEL_FRACTION
    else:
        try:
            pixel = np.broadcast_to(np.asarray(pixel_size, dtype=float), (info.ndim,)).copy()
        except (TypeError, ValueError):
            raise DensityError(
                f"pixel_size must be a positive number, or one per axis ({info.ndim}), got {pixel_size!r}."
            ) from None
    if not np.all(np.isfinite(pixel)) or np.any(pixel <= 0):
        raise DensityError(f"pixel_size must be positive, got {pixel_size!r}.")
    if bounds is None:
        lo, hi = (np.asarray(b, dtype=float) for b in info.bounds)
        closed = True
    else:
        try:
            lo, hi = (np.asarray(b, dtype=float).reshape(info.ndim) for b in bounds)
        except (TypeError, ValueError):
            raise DensityError(
                f"bounds must be (lower corner, upper corner) with {info.ndim} numbers each, got {bounds!r}."
            ) from None
        closed = False
        if np.any(hi <= lo):
            raise DensityError(f"bounds must have every upper edge above the lower one, got {bounds!r}.")
    origin = np.floor(lo / pixel) * pixel
    span = (hi - origin) / pixel
    # W pixels for a span of W (numpy.histogram); closed grids keep the upper edge in the last pixel
    size = np.maximum(np.ceil(span - EDGE_TOLERANCE).astype(np.int64), 1)
    axes = tuple(a for a in range(info.ndim) if a != proj)
    shape0 = tuple(int(size[a]) for a in reversed(axes))
    pixels = math.prod(shape0)
    if max_pixels is not None and pixels > max_pixels:
        raise DensityError(
            f"A density raster of store '{info.path}' at pixel size {tuple(float(p) for p in pixel)} "
            f"would have {pixels:,} pixels ({' x '.join(map(str, shape0))}); pass a larger pixel_size"
            + (" or project along an axis." if proj is None and info.ndim == 3 else ".")
        )
    return DensityGrid(
        origin=tuple(float(v) for v in origin),
        pixel=tuple(float(v) for v in pixel),
        axes=axes,
        shapes=tuple(georaster_shapes(shape0)),
        projected=proj,
        closed=closed,
    )


# ---------------------------------------------------------------- computing


@dataclass
class Density:
    """A computed density pyramid and where it lies.

    ``arrays`` are finest first: counts (uint32) unweighted, or float64
    sums / means of ``weight``.  ``counted`` is how many level-0 vertices
    the rasters hold; ``source`` says what was counted.
    """

    grid: DensityGrid
    arrays: list[np.ndarray]
    level: int
    weight: str | None
    reduce: str
    counted: float
    source: str


def _accumulate(target: np.ndarray, idx: np.ndarray, weights: np.ndarray | None) -> None:
    """target.flat[idx] += weights (or 1), without a full-size temporary for a large target."""
    flat = target.reshape(-1)
    if not len(idx):
        return
    if flat.size <= 4 * len(idx) + 1_000_000:
        add = np.bincount(idx, weights=weights, minlength=flat.size)
        flat += add.astype(flat.dtype, copy=False)
        return
    u, inv = np.unique(idx, return_inverse=True)
    add = np.bincount(inv, weights=weights, minlength=len(u))
    flat[u] += add.astype(flat.dtype, copy=False)


def compute_density(
    path: str | os.PathLike[str] | store.Handle,
    *,
    level: int = 0,
    axis: int | str | None = None,
    pixel_size: float | Sequence[float] | None = None,
    weight: str | None = None,
    reduce: str = "sum",
    bounds: tuple[Sequence[float], Sequence[float]] | None = None,
    max_pixels: int | None = MAX_PIXELS,
    batch_vertices: int = 1_000_000,
    progress: Callable[[int, int], None] | None = None,
) -> Density:
    """The density pyramid of one store level, with its grid (see ``density_pyramid``).

    ``progress(done, total)`` is called with vertices read so far.
    """
    if reduce not in REDUCES:
        raise DensityError(f"reduce must be one of {', '.join(REDUCES)}, got {reduce!r}.")
    h = store.handle(path)
    info = store.open_info(h)
    if info.kind in store.MESH_KINDS and level != 0:
        raise DensityError(f"Store '{info.path}': coarse mesh levels keep no faces; use level 0.")
    grid = density_grid(info, level=level, axis=axis, pixel_size=pixel_size, bounds=bounds, max_pixels=max_pixels)
    names = store.vertex_attribute_names(h, level)
    if weight is not None and weight not in names:
        raise DensityError(
            f"Store '{info.path}' level {level} has no vertex attribute '{weight}'; "
            f"it has {', '.join(names) or 'none'}."
        )
    per_vertex = COUNT_ATTRIBUTE if level > 0 and COUNT_ATTRIBUTE in names else None
    source = (
        "level-0 vertices"
        if level == 0
        else (f"'{COUNT_ATTRIBUTE}' of level {level}" if per_vertex else f"level-{level} metavertices (no count)")
    )
    wanted = [n for n in (weight, per_vertex) if n]
    counts = [np.zeros(s, np.float64 if per_vertex else np.uint32) for s in grid.shapes]
    sums = [np.zeros(s, np.float64) for s in grid.shapes] if weight else None
    total = info.level(level).vertex_count
    done = 0
    counted = 0.0
    for positions, attrs in store.iter_rows(h, level, wanted, batch_vertices=batch_vertices):
        inside, flat = grid.level_indices(positions)
        n = np.asarray(attrs[per_vertex], dtype=np.float64)[inside] if per_vertex else None
        w = None
        if weight:
            w = np.asarray(attrs[weight], dtype=np.float64)[inside]
            if n is not None:  # a coarse value stands for the mean of its `count` level-0 vertices
                w = w * n
        for k, idx in enumerate(flat):
            _accumulate(counts[k], idx, n)
            if sums is not None:
                _accumulate(sums[k], idx, w)
        counted += float(n.sum()) if n is not None else float(inside.sum())
        done += len(positions)
        if progress is not None:
            progress(done, total)
    if sums is None:
        arrays = counts
    elif reduce == "sum":
        arrays = sums
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            arrays = [np.where(c > 0, s / np.maximum(c, 1e-300), np.nan) for s, c in zip(sums, counts, strict=True)]
    if per_vertex and sums is None:
        arrays = [np.rint(a).astype(np.uint32) for a in arrays]
    return Density(grid, arrays, level, weight, reduce, counted, source)


def density_pyramid(
    path: str | os.PathLike[str],
    *,
    level: int = 0,
    axis: int | str | None = None,
    pixel_size: float | Sequence[float] | None = None,
    weight: str | None = None,
    reduce: str = "sum",
) -> list[np.ndarray]:
    """A store level's density raster and its GeoRaster image pyramid, finest first.

    Parameters
    ----------
    path : str or os.PathLike
        The store.
    level : int, optional
        The store level to count (default 0). A coarse level's metavertex
        counts as its ``count`` attribute when it has one, else as 1.
    axis : int or str, optional
        Project a 3D store along this axis (index or name, e.g. ``"z"``)
        for a 2D raster; None (default) keeps every axis.
    pixel_size : float or sequence of float, optional
        Pixel edge in store units, one for all axes or one per axis
        (default: a quarter of the base level's bin). Pixels lie on
        multiples of it from 0; a span of W pixels gives W pixels.
    weight : str, optional
        A vertex attribute to sum or average per pixel instead of counting.
    reduce : str, optional
        With ``weight``: ``"sum"`` (default) or ``"mean"`` (NaN where empty).

    Returns
    -------
    list of numpy.ndarray
        Level 0 first, then floor-halved levels over the same extent down
        to a 1-pixel side, in napari axis order (the store's reversed):
        uint32 counts, or float64 sums / means with ``weight``.

    Raises
    ------
    DensityError
        A bad argument (unknown axis, attribute, reduce, a pixel size
        giving over 2**28 pixels, ...); a ``StoreError``, so a ``ValueError``.
    StoreError
        ``path`` is not a readable Zarr Vectors store.
    """
    return compute_density(path, level=level, axis=axis, pixel_size=pixel_size, weight=weight, reduce=reduce).arrays


def density_summary(info: StoreInfo) -> dict[str, Any]:
    """The default density pyramid's level shapes and its storage overhead over level 0, without computing it."""
    try:
        grid = density_grid(info, max_pixels=None)
    except StoreError as exc:
        return {"error": str(exc)}
    shapes = [list(s) for s in grid.shapes]
    whole = pyramid_overhead(grid.shapes)
    return {
        "pixel_size": list(grid.pixel),
        "shapes": shapes,
        "levels": len(shapes),
        # the whole image pyramid over its level 0 (GeoRaster's 4/3 in 2D, 8/7 in 3D) ...
        "pyramid_over_level0": whole,
        # ... and what the coarse levels add, as pyramid_summary's own storage_overhead counts it
        "storage_overhead": whole - 1.0,
    }


class LazyDensity:
    """A store's density pyramid, computed once on first ``compute()``; its levels read as zeros until then.

    napari slices, thumbnails and picks levels from ``levels`` at once (the
    shapes are known from the grid alone); the counting itself, a read of
    all of level 0, waits until someone wants to see it.  Levels hold
    vertices per level-0 pixel (a level-n count over the level-0 pixels
    it spans), so every level looks alike under one contrast setting.
    """

    def __init__(self, path: str | os.PathLike[str], grid: DensityGrid, **kwargs: Any) -> None:
        import threading

        self.path, self.grid, self.kwargs = str(path), grid, kwargs
        self.density: Density | None = None
        self.normalized: list[np.ndarray] | None = None  # vertices per level-0 pixel, per level
        self._limits = self._range = (0.0, 1.0)
        self._lock = threading.Lock()
        self.levels = [_LazyLevel(self, k) for k in range(len(grid.shapes))]

    @property
    def ready(self) -> bool:
        return self.density is not None

    def compute(self) -> Density:
        """Count now (thread-safe; a second caller waits for the first and gets the same result)."""
        with self._lock:
            if self.density is None:
                d = compute_density(self.path, pixel_size=self.grid.pixel, axis=self.grid.projected, **self.kwargs)
                n0 = math.prod(self.grid.shape)
                levels = [(a / (n0 / math.prod(a.shape))).astype(np.float32) for a in d.arrays]
                # contrast: up to the 99.9th percentile of the non-zero pixels a few halvings up
                a = levels[min(2, len(levels) - 1)]
                nonzero = a[a > 0]
                top = float(np.percentile(nonzero, 99.9)) if len(nonzero) else 0.0
                top = top if top > 0 else 1.0
                peak = max(float(v.max()) if v.size else 0.0 for v in levels)
                self._limits, self._range = (0.0, top), (0.0, max(peak, top))
                self.normalized, self.density = levels, d
        return self.density

    def contrast_limits(self) -> tuple[float, float]:
        """Contrast limits for the levels: (0, 1) until computed."""
        return self._limits

    def value_range(self) -> tuple[float, float]:
        """(0, the largest value at any level): (0, 1) until computed."""
        return self._range


class _LazyLevel:
    """One level of a ``LazyDensity`` as the array-like napari's multiscale Image takes."""

    dtype = np.dtype(np.float32)

    def __init__(self, owner: LazyDensity, index: int) -> None:
        self.owner, self.index = owner, index
        self.shape = tuple(owner.grid.shapes[index])
        self.ndim = len(self.shape)
        self.size = math.prod(self.shape)

    def _array(self) -> np.ndarray:
        levels = self.owner.normalized
        if levels is None:
            return np.broadcast_to(np.zeros((), self.dtype), self.shape)
        return levels[self.index]

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._array()[key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = np.asarray(self._array())
        return a.astype(dtype) if dtype is not None else a

    def __len__(self) -> int:
        return self.shape[0]


# ---------------------------------------------------------------- colour


def log_controls(n: int = 256, span: float = 1000.0) -> np.ndarray:
    """Linear positions in [0, 1] of ``n`` colours evenly spaced in log(1 + span * x).

    A colormap with these controls shows raw counts log-scaled: the first
    colour steps are narrow (sparse pixels stay visible), the last wide.
    """
    t = np.linspace(0.0, 1.0, n)
    c = np.expm1(t * np.log1p(span)) / span
    c[0], c[-1] = 0.0, 1.0  # exact ends, as colormaps require
    return c


def log_colormap(name: str = "magma", span: float = 1000.0) -> Any:
    """A napari Colormap that displays linear data on a log scale (``log_controls``)."""
    from napari.utils.colormaps import Colormap, ensure_colormap

    base = ensure_colormap(name)
    t = np.linspace(0.0, 1.0, 256)
    return Colormap(colors=base.map(t), controls=log_controls(256, span), name=f"{base.name} (log)")


def check_colormap(name: str) -> None:
    """A DensityError naming close matches when ``name`` is not a colormap napari knows."""
    import difflib

    from napari.utils.colormaps import AVAILABLE_COLORMAPS, ensure_colormap

    try:
        ensure_colormap(name)
        return
    except (KeyError, ValueError, TypeError):
        pass
    names = sorted(str(n) for n in AVAILABLE_COLORMAPS)
    close = difflib.get_close_matches(str(name), names, n=3)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise DensityError(
        f"colormap {name!r} is unknown{hint}; use a napari colormap name such as "
        "'magma' (the default), 'viridis', 'inferno', 'gray' or 'turbo'."
    )


def colorize(values: np.ndarray, vmax: float, colormap: str = "magma") -> np.ndarray:
    """uint8 RGB of ``values`` on a log scale from 0 to ``vmax`` (NaN and 0 get the first colour)."""
    from napari.utils.colormaps import ensure_colormap

    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    scaled = np.log1p(np.clip(v, 0, None)) / math.log1p(max(float(vmax), 1e-12))
    lut = (ensure_colormap(colormap).map(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return lut[np.clip((scaled * 255).round(), 0, 255).astype(np.intp)]


# ---------------------------------------------------------------- Deep Zoom


def _halve(image: np.ndarray, average: bool) -> np.ndarray:
    """Ceil-halve a 2D raster: sums of 2 x 2 blocks (zero-padded), or their means over real pixels."""
    h, w = image.shape
    padded = np.zeros((h + h % 2, w + w % 2), np.float64)
    padded[:h, :w] = image
    out = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).sum(axis=(1, 3))
    if average:
        real = np.zeros_like(padded)
        real[:h, :w] = 1
        out /= real.reshape(out.shape[0], 2, out.shape[1], 2).sum(axis=(1, 3))
    return out


def _descriptor(width: int, height: int, tile_size: int, overlap: int, fmt: str) -> bytes:
    ElementTree.register_namespace("", DZI_NAMESPACE)
    root = ElementTree.Element(f"{{{DZI_NAMESPACE}}}Image", TileSize=str(tile_size), Overlap=str(overlap), Format=fmt)
    ElementTree.SubElement(root, f"{{{DZI_NAMESPACE}}}Size", Width=str(width), Height=str(height))
    return ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True)


def _check_out_dir(out: Path) -> None:
    """A DensityError when ``out`` cannot be the output folder: a file, or inside a folder that is missing."""
    if out.exists():
        if not out.is_dir():
            raise DensityError(
                f"out_dir '{out}' is a file, not a folder: a Deep Zoom image is written into a folder "
                "(as NAME.dzi and NAME_files/). Choose a folder, or a new name for one to be made."
            )
        if not os.access(out, os.W_OK):
            raise DensityError(f"out_dir '{out}' is not writable; choose a folder you can write to.")
        return
    parent = out.absolute().parent
    if not parent.is_dir():
        what = "is a file, not a folder" if parent.exists() else "does not exist"
        raise DensityError(
            f"out_dir '{out}' cannot be made: the folder it would go in, '{parent}', {what}. "
            "Create that folder first, or choose an output folder inside an existing one."
        )
    if not os.access(parent, os.W_OK):
        raise DensityError(f"out_dir '{out}' cannot be made: folder '{parent}' is not writable.")


def _refuse_existing(out: Path, name: str) -> tuple[Path, Path]:
    """The descriptor and tile folder paths of ``name`` in ``out``; an error if either exists already."""
    _check_out_dir(out)
    if not name or name in (".", "..") or Path(name).name != name or "/" in name or "\\" in name:
        raise DensityError(
            f"name {name!r} is not a plain file name; the export is written inside out_dir as NAME.dzi and "
            "NAME_files/, so the name may not contain a folder or '..'. Choose a name such as 'cells'."
        )
    dzi, files = out / f"{name}.dzi", out / f"{name}_files"
    half = _half_output(dzi, files)
    for target in (dzi, files):
        if (target.exists() or target.is_symlink()) and not half:
            raise DensityError(f"'{target}' already exists; choose another output folder or name, or remove it first.")
    return dzi, files


#: A file inside ``NAME_files/`` from before its rename into place until the descriptor is in place too: an
#: export killed in between leaves a tile folder that says it is incomplete, and the next export replaces it.
INCOMPLETE = ".nzv-incomplete"


def _half_output(dzi: Path, files: Path) -> bool:
    """Whether ``files`` (with ``dzi``, if present) is an export of ours that was interrupted while publishing."""
    marked = files.is_dir() and not files.is_symlink() and (files / INCOMPLETE).is_file()
    return marked and not dzi.is_symlink() and (dzi.is_file() or not dzi.exists())


def _publish_deep_zoom(tmp: Path, tmp_dzi: Path, files: Path, dzi: Path) -> None:
    """Move the tile folder, then the descriptor into place; the folder holds ``INCOMPLETE`` until both are there.

    Two renames cannot be one step, so every state between them is
    recognisable: nothing, a marked tile folder (with or without its
    descriptor), or the whole export.  A marked folder left by an
    interrupted export is replaced here: its descriptor goes first, then
    the folder is renamed to a temporary name and deleted.
    """
    if files.exists() or dzi.exists() or files.is_symlink() or dzi.is_symlink():
        if not _half_output(dzi, files):  # made meanwhile by someone else: never replaced
            raise DensityError(f"'{files}' or '{dzi}' appeared while the tiles were written; nothing was replaced.")
        dzi.unlink(missing_ok=True)
        old = store.temp_sibling(files)
        os.rename(files, old)
        store.discard(old, settle=False)
    os.rename(tmp, files)
    os.replace(tmp_dzi, dzi)
    (files / INCOMPLETE).unlink()


def write_deep_zoom(
    raster: np.ndarray,
    out_dir: str | os.PathLike[str],
    name: str,
    *,
    tile_size: int = 256,
    overlap: int = 1,
    format: str = "png",
    colormap: str = "magma",
    density: bool = True,
    vmax: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a 2D raster (rows = y) as ``out_dir/name.dzi`` and ``out_dir/name_files/<level>/<col>_<row>.<fmt>``.

    ``density``: the raster holds counts (or sums), so a coarser level
    sums 2 x 2 blocks and is coloured as density per finest pixel (its
    value over the block's area) to look the same at every zoom; otherwise
    blocks are averaged.  Colours are log-scaled from 0 to ``vmax``
    (default: the 99.9th percentile of the non-zero finest pixels).
    Written beside the target and renamed into place when complete;
    an existing descriptor or tile folder is refused, not overwritten.
    Returns the descriptor's path.
    """
    from PIL import Image

    raster = np.asarray(raster)
    if raster.ndim != 2:
        raise DensityError(f"A Deep Zoom image is 2D; got a {raster.ndim}D raster (project along an axis).")
    fmt = format.lower()
    if fmt not in DZI_FORMATS:
        raise DensityError(f"format must be one of {', '.join(DZI_FORMATS)}, got {format!r}.")
    if overlap < 0 or overlap >= tile_size:
        raise DensityError(f"overlap must be between 0 and tile_size - 1, got {overlap}.")
    check_colormap(colormap)
    out = Path(out_dir)
    dzi, files = _refuse_existing(out, name)
    height, width = raster.shape
    levels = deep_zoom_levels(width, height, tile_size)
    finest = np.nan_to_num(raster.astype(np.float64), nan=0.0)
    if vmax is None:
        nonzero = finest[finest > 0]
        vmax = float(np.percentile(nonzero, 99.9)) if len(nonzero) else 1.0
    out.mkdir(parents=True, exist_ok=True)
    for target in (files, dzi):  # temporaries of exports that were killed (their process is gone)
        store.remove_stale_temps(target)
    tmp, tmp_dzi = store.temp_sibling(files), store.temp_sibling(dzi)
    tiles_total = sum(lv.columns * lv.rows for lv in levels)
    written = 0
    try:
        image = finest
        for lv in reversed(levels):
            if image.shape != (lv.height, lv.width):  # pragma: no cover - the maths above guarantee it
                raise DensityError(f"Deep Zoom level {lv.level}: {image.shape} != {(lv.height, lv.width)}")
            area = 4.0 ** (levels[-1].level - lv.level) if density else 1.0
            rgb = colorize(image / area, vmax, colormap)
            folder = tmp / str(lv.level)
            folder.mkdir(parents=True)
            for col in range(lv.columns):
                x0, x1 = tile_span(lv.width, col, tile_size, overlap)
                for row in range(lv.rows):
                    y0, y1 = tile_span(lv.height, row, tile_size, overlap)
                    tile = Image.fromarray(np.ascontiguousarray(rgb[y0:y1, x0:x1]), mode="RGB")
                    kwargs = {"quality": 90} if fmt != "png" else {"compress_level": 1}
                    tile.save(folder / f"{col}_{row}.{fmt}", **kwargs)
                    written += 1
                    if progress is not None:
                        progress(written, tiles_total)
            if lv.level > 0:
                image = _halve(image, average=not density)
        (tmp / INCOMPLETE).write_bytes(b"")
        tmp_dzi.write_bytes(_descriptor(width, height, tile_size, overlap, "jpg" if fmt == "jpeg" else fmt))
        with store.ctrl_c_held():  # Ctrl+C waits for the renames: it never leaves a half output
            _publish_deep_zoom(tmp, tmp_dzi, files, dzi)
    except BaseException:
        for leftover in (tmp, tmp_dzi):  # ours only: another export's temporaries are its own
            store.discard(leftover, settle=False)
        raise
    return dzi


def read_descriptor(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``.dzi`` descriptor's TileSize, Overlap, Format, Width and Height."""
    root = ElementTree.parse(path).getroot()
    size = root.find(f"{{{DZI_NAMESPACE}}}Size")
    if size is None:
        raise DensityError(f"'{path}' is not a Deep Zoom descriptor: it has no Size element.")
    return {
        "TileSize": int(root.get("TileSize")),
        "Overlap": int(root.get("Overlap")),
        "Format": root.get("Format"),
        "Width": int(size.get("Width")),
        "Height": int(size.get("Height")),
    }


def export_deep_zoom(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    axis: int | str | None = None,
    pixel_size: float | Sequence[float] | None = None,
    tile_size: int = 256,
    overlap: int = 1,
    format: str = "png",
    colormap: str = "magma",
    level: int = 0,
    weight: str | None = None,
    reduce: str = "sum",
    name: str | None = None,
    bounds: tuple[Sequence[float], Sequence[float]] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Write a store's 2D density (a 3D store projected along ``axis``) as a Deep Zoom image.

    Any Deep Zoom viewer (OpenSeadragon, for one) shows the ``.dzi`` it
    returns. Arguments and the output folder are checked before any
    vertex is counted; tiles are written beside the target and renamed
    into place when complete.

    Parameters
    ----------
    path : str or os.PathLike
        The store.
    out_dir : str or os.PathLike
        The folder that receives ``NAME.dzi`` and ``NAME_files/``; made if
        missing, but the folder it goes in must exist.
    axis : int or str, optional
        The axis a 3D store is projected along (required for 3D; e.g. ``"z"``).
    pixel_size : float or sequence of float, optional
        Pixel edge in store units (default: a quarter of the base bin).
    tile_size : int, optional
        Tile edge in pixels (default 256).
    overlap : int, optional
        Extra pixels on each inner tile edge (default 1).
    format : str, optional
        ``"png"`` (default) or ``"jpg"``.
    colormap : str, optional
        A napari colormap name (default ``"magma"``), log-scaled.
    level, weight, reduce
        What to count, as for ``density_pyramid``.
    name : str, optional
        The output's name (default: the store's name without its suffix).
    bounds : (sequence of float, sequence of float), optional
        Half-open (lower, upper) corners to export, store axis order
        (default: the store's own bounds, closed).
    progress : callable, optional
        ``progress(phase, done, total)``: "vertices" read, then "tiles" written.

    Returns
    -------
    pathlib.Path
        The ``.dzi`` descriptor written.

    Raises
    ------
    DensityError
        A bad argument, an unknown colormap, an output that exists already
        or a folder that cannot hold it; nothing is written.
    StoreError
        ``path`` is not a readable Zarr Vectors store.
    """
    h = store.handle(path)
    info = store.open_info(h)
    if info.ndim == 3 and axis is None:
        raise DensityError(
            f"Store '{info.path}' is 3D: name the axis to project along (for example axis='z'); "
            "a Deep Zoom image is 2D."
        )
    name = name or info.name
    # say so before the counting, not after
    check_colormap(colormap)
    if str(format).lower() not in DZI_FORMATS:
        raise DensityError(f"format must be one of {', '.join(DZI_FORMATS)}, got {format!r}.")
    _refuse_existing(Path(out_dir), name)
    dens = compute_density(
        h,
        level=level,
        axis=axis,
        pixel_size=pixel_size,
        weight=weight,
        reduce=reduce,
        bounds=bounds,
        progress=(lambda done, total: progress("vertices", done, total)) if progress else None,
    )
    return write_deep_zoom(
        dens.arrays[0],
        out_dir,
        name,
        tile_size=tile_size,
        overlap=overlap,
        format=format,
        colormap=colormap,
        density=not (weight and reduce == "mean"),
        progress=(lambda done, total: progress("tiles", done, total)) if progress else None,
    )
