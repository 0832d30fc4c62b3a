"""Every napari-private attribute or call the plugin uses, in one place, pinned to one napari series.

The level-of-detail swap replaces a Points layer's data tens of times a
minute.  Napari's public setters recompute what the plugin already knows
(colours mapped per point, index tuples for the data event, a symbol
string per point for vispy), so the swap writes the layer's state
directly here instead.  Everything below relies on napari internals of
the ``NAPARI_SERIES`` series; ``check()`` says which one is missing or
changed, and tests/test_napari_private.py runs it, so a napari upgrade
fails loudly in the test suite instead of drawing wrong colours.
"""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from typing import Any

import numpy as np
import pandas as pd

#: The napari series these internals were read from (napari 0.9.x).
NAPARI_SERIES = "0.9"

#: Instance attributes of ``napari.layers.Points`` written by ``replace_points`` (all set in ``Points.__init__``).
POINTS_ATTRIBUTES = (
    "_data",  # (N, D) positions behind ``Points.data``
    "_size",  # (N,) sizes behind ``Points.size``
    "_shown",  # (N,) bool, behind ``Points.shown``
    "_border_width",  # (N,) behind ``Points.border_width``
    "_symbol",  # (N,) object array of Symbol behind ``Points.symbol``
    "_feature_table",  # napari.layers.utils.layer_utils._FeatureTable behind ``Points.features``
    "_face",  # ColorManager behind ``face_color`` / ``face_color_mode`` / ``face_colormap``
    "_border",  # ColorManager behind ``border_color``
)
#: Methods of ``Points`` called by ``replace_points``.
POINTS_METHODS = (
    "_update_dims",  # recomputes ndim, transforms and the slicing state's dims after new data
    "_reset_editable",  # what ``Points._set_data`` calls last
    "_block_refresh",  # context manager: ``_update_dims`` refreshes (slices, thumbnail) and the caller refreshes after
    "_update_thumbnail",  # the layer list's thumbnail: ~15 ms at 150,000 points, so a swap defers it (``thumbnail``)
)
#: ColorManager (pydantic) fields written without validation (validation would map every point again).
COLOR_MANAGER_FIELDS = ("colors", "color_mode", "color_properties", "contrast_limits", "continuous_colormap",
                        "categorical_colormap", "current_color")  # fmt: skip
#: sha256 (first 16 hex) of ``VispyPointsLayer._on_data_change``'s source in the napari series pinned:
#: ``scalar_symbol_on_data_change`` is a copy of it with one symbol for all points.
VISPY_ON_DATA_CHANGE_SHA = "d45aa7765ecf04ce"


class NapariChanged(RuntimeError):
    """Napari no longer has an internal this plugin relies on (see ``check``)."""


def _source_sha(obj: Any) -> str:
    return hashlib.sha256(textwrap.dedent(inspect.getsource(obj)).encode()).hexdigest()[:16]


def check() -> None:
    """Raise ``NapariChanged`` naming every napari internal used here that is missing or changed."""
    import napari
    from napari._vispy.layers.points import VispyPointsLayer
    from napari.layers import Points
    from napari.layers.utils.color_manager import ColorManager

    problems = []
    if not napari.__version__.startswith(NAPARI_SERIES + "."):
        problems.append(f"napari {napari.__version__} is not the {NAPARI_SERIES} series these internals were read from")
    layer = Points(np.zeros((1, 2)))
    problems += [f"napari.layers.Points instance attribute {a}" for a in POINTS_ATTRIBUTES if not hasattr(layer, a)]
    problems += [f"napari.layers.Points.{m}()" for m in POINTS_METHODS if not callable(getattr(layer, m, None))]
    fields = getattr(ColorManager, "model_fields", {})
    problems += [f"ColorManager field {f}" for f in COLOR_MANAGER_FIELDS if f not in fields]
    if not callable(getattr(getattr(layer, "_feature_table", None), "set_values", None)):
        problems.append("napari.layers.Points._feature_table.set_values()")
    source = getattr(layer, "_source", None)
    if not callable(getattr(source, "model_copy", None)) or "path" not in getattr(type(source), "model_fields", {}):
        problems.append("napari.layers.Layer._source (a pydantic Source with a path field)")
    try:
        from napari.layers.points._points_utils import fix_data_points  # noqa: F401
        from napari.layers.utils.color_manager_utils import map_property  # noqa: F401
    except ImportError as exc:
        problems.append(f"import: {exc}")
    sha = _source_sha(VispyPointsLayer._on_data_change)
    if sha != VISPY_ON_DATA_CHANGE_SHA:
        problems.append(
            f"napari._vispy.layers.points.VispyPointsLayer._on_data_change changed (source sha {sha}, "
            f"copied from {VISPY_ON_DATA_CHANGE_SHA}): update scalar_symbol_on_data_change to match"
        )
    if problems:
        raise NapariChanged("napari internals the level-of-detail swap relies on changed: " + "; ".join(problems))


# ---------------------------------------------------------------- colouring


def map_property(values: np.ndarray, colormap: Any, contrast_limits: tuple[float, float]) -> np.ndarray:
    """RGBA for ``values`` exactly as a Points layer in colormap mode maps them (thread-safe: pure numpy)."""
    from napari.layers.utils.color_manager_utils import map_property as _map  # private module

    colours, _ = _map(prop=np.asarray(values), colormap=colormap, contrast_limits=contrast_limits)
    return colours.astype(np.float32)  # what ColorManager's colors field validates to


def face_colouring(layer: Any) -> dict[str, Any]:
    """A snapshot of how ``layer`` colours its faces, taken on the GUI thread for the worker to map with.

    ``mode`` is "direct", "colormap" or "cycle"; ``name`` the feature
    coloured by; ``colormap`` napari's Colormap; ``contrast_limits``;
    ``mapping`` a copy of the cycle's value -> RGBA table.
    """
    manager = layer._face  # private: the ColorManager (the property name has no public getter)
    props = manager.color_properties
    return {
        "mode": str(manager.color_mode),
        "name": None if props is None else props.name,
        "colormap": manager.continuous_colormap,
        "contrast_limits": None if manager.contrast_limits is None else tuple(manager.contrast_limits),
        "mapping": {k: np.asarray(v) for k, v in manager.categorical_colormap.colormap.items()},
    }


def cycle_colours(layer: Any, values: np.ndarray) -> np.ndarray:
    """RGBA for ``values`` from the layer's colour cycle, adding values it lacks as napari would (GUI thread).

    Napari maps point by point and gives each new value the next fallback
    colour in order of first appearance; mapping the unique values in that
    order gives the same table at one lookup per value.
    """
    cmap = layer._face.categorical_colormap
    uniques, first, inverse = np.unique(np.asarray(values), return_index=True, return_inverse=True)
    order = np.argsort(first)
    table = np.empty((len(uniques), 4), dtype=np.float32)
    table[order] = cmap.map(uniques[order])
    return table[inverse.reshape(-1)]


# ---------------------------------------------------------------- the swap


def _write_fields(model: Any, **values: Any) -> None:
    """Set pydantic fields of a napari EventedModel without validation or events.

    Validation is what makes the public setter slow: a ColorManager in
    colormap or cycle mode maps every point's colour again.
    """
    for name, value in values.items():
        model.__dict__[name] = value  # pydantic v2 keeps field values in the instance __dict__


def replace_points(
    layer: Any,
    data: np.ndarray,
    features: pd.DataFrame,
    face_colors: np.ndarray | None,
    *,
    size: float | np.ndarray,
) -> None:
    """Give Points ``layer`` new points in place, with colours already mapped; the caller refreshes once.

    Leaves the layer as ``Points(data, features=..., size=...)`` with the
    layer's colouring would: every point shown, the symbol, border width
    and border colour the layer's current ones, the face colour mode,
    feature coloured by, colormap, contrast limits and cycle unchanged.
    The caller blocks the layer's events, clears the selection first and
    calls ``layer.refresh()`` after.  No array is copied but the features
    table (napari re-indexes it).
    """
    from napari.layers.points._points_utils import fix_data_points

    data, _ = fix_data_points(data, layer.ndim)
    n = len(data)
    table = layer._feature_table
    table.set_values(features, num_data=n)
    layer._data = data
    layer._size = np.full(n, float(size)) if np.ndim(size) == 0 else np.asarray(size, dtype=float)
    layer._shown = np.ones(n, dtype=bool)
    layer._border_width = np.full(n, layer.current_border_width, dtype=float)
    layer._symbol = _filled_objects(n, str(layer.current_symbol))
    for manager, colors in ((layer._face, face_colors), (layer._border, None)):
        props = manager.color_properties
        if props is not None:  # colormap or cycle: the feature's new values, the default value unchanged
            name = props.name
            props = type(props)(name=name, values=table.values[name].to_numpy(), current_value=table.defaults[name][0])
        if colors is None:
            colors = np.tile(np.asarray(manager.current_color, dtype=np.float32), (n, 1))
        colors = np.asarray(colors, dtype=np.float32)  # no copy when mapped on the worker (float32 already)
        _write_fields(manager, colors=colors, color_properties=props)
    with layer._block_refresh():
        layer._update_dims()
    layer._reset_editable()
    if layer.text.string is not None:
        layer.text.refresh(layer.features)


def thumbnail(layer: Any) -> None:
    """Redraw ``layer``'s layer-list thumbnail alone (``refresh(thumbnail=True)`` would slice all points again)."""
    layer._update_thumbnail()


def _filled_objects(n: int, value: Any) -> np.ndarray:
    """An (n,) object array holding one ``value`` object: ~0.5 ms for 200,000 where ``np.full`` takes ~13.

    The symbol is stored as its string, as ``np.full(n, symbol, dtype=object)`` stored it before: one
    string object compares with itself at C speed (``uniform``), a ``Symbol`` runs Python ``__eq__``.
    """
    out = np.empty(n, dtype=object)
    out[:] = [value]
    return out


def uniform(layer: Any) -> bool:
    """Whether every point of ``layer`` has one symbol, border width and border colour (what the fast swap keeps)."""
    sym, width = layer._symbol, layer._border_width
    border = layer._border
    return bool(
        (not len(sym) or (sym == sym[0]).all())
        and (not len(width) or (width == width[0]).all())
        and str(border.color_mode) == "direct"
        and (not len(border.colors) or (border.colors == border.colors[0]).all())
    )


# ---------------------------------------------------------------- one symbol for vispy


def scalar_symbol_on_data_change(self: Any) -> None:
    """``VispyPointsLayer._on_data_change`` of the napari series pinned, with one symbol for all points.

    Napari turns every point's symbol into a string and vispy looks each
    up (~160 ms for 200,000 points); when all points share a symbol, one
    string goes to vispy, which broadcasts it.  Otherwise napari's own
    per-point list is built.
    """
    if len(self.layer._view_indices) == 0:
        data = np.zeros((1, self.layer._slice_input.ndisplay))
        size = np.zeros(1)
        border_color = np.array([[0.0, 0.0, 0.0, 1.0]], dtype=np.float32)
        face_color = np.array([[1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
        border_width = np.zeros(1)
        symbol = ["o"]
    else:
        data = self.layer._view_data
        size = self.layer._view_size
        border_color = self.layer._view_border_color
        face_color = self.layer._view_face_color
        border_width = self.layer._view_border_width
        every = self.layer._symbol
        if len(every) and (every == every[0]).all():
            symbol = [str(every[0])]  # the one change from napari's method
        else:
            symbol = [str(x) for x in self.layer._view_symbol]

    set_data = self.node.points_markers.set_data
    scale = abs(self.layer.scale[-1])
    scaled_size = size * scale
    if self.layer.border_width_is_relative:
        border_kw = {"edge_width": None, "edge_width_rel": border_width}
    else:
        border_kw = {"edge_width": np.minimum(border_width * scale, scaled_size), "edge_width_rel": None}
    set_data(
        data[:, ::-1],
        size=scaled_size,
        symbol=symbol,
        edge_color=border_color,
        face_color=face_color,
        **border_kw,
    )
    self.reset()


# ---------------------------------------------------------------- provenance


def set_source_path(layer: Any, path: str) -> None:
    """Make ``layer.source.path`` read ``path``, keeping the rest of its source.

    Napari records the address given to ``viewer.open`` there when it makes
    the layer (``Layer.__init__`` reads it from a context napari sets around
    the reader's data), and shows its basename in the layer list's tooltip;
    ``Source`` is frozen and ``Layer._set_source`` refuses a second source,
    so the private attribute is replaced.
    """
    layer._source = layer._source.model_copy(update={"path": path})


def vispy_layer(viewer: Any, layer: Any) -> Any | None:
    """The vispy layer drawing ``layer`` in ``viewer`` (private: ``QtViewer.canvas.layer_to_visual``)."""
    window = getattr(viewer, "window", None)
    qt_viewer = getattr(window, "_qt_viewer", None)
    canvas = getattr(qt_viewer, "canvas", None)
    return getattr(canvas, "layer_to_visual", {}).get(layer)


def use_scalar_symbol(viewer: Any, layer: Any) -> bool:
    """Make ``layer``'s vispy layer hand vispy one symbol when all points share it; True if installed.

    Napari's event emitters call a connected method by name on its
    object at each emit, so an instance attribute replaces the method for
    every event already connected to it.
    """
    node = vispy_layer(viewer, layer)
    if node is None:
        return False
    if getattr(node, "_on_data_change", None).__func__ is not scalar_symbol_on_data_change:
        node._on_data_change = scalar_symbol_on_data_change.__get__(node)
    return True
