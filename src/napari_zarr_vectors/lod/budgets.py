"""How much a view may draw: the vertex budget, the Shapes path limit and the pixels per vertex.

The defaults, the environment variables that override them, and
``budget_for``, the default budget for a renderer and canvas (a software
renderer gets one sized by the canvas).  Pure: no store, no Qt, no napari.
"""

from __future__ import annotations

#: The vertex budget when nothing says otherwise (a GPU or an unknown renderer, a script without a viewer).
DEFAULT_VERTEX_BUDGET = 250_000
#: napari Shapes costs ~14 ms per path here (2,000 paths take ~29 s), so
#: above this many paths polylines are drawn as a Vectors layer instead.
DEFAULT_SHAPES_PATH_LIMIT = 100
BUDGET_ENV = "NAPARI_ZARR_VECTORS_VERTEX_BUDGET"


def default_vertex_budget() -> int:
    """The vertex budget from ``$NAPARI_ZARR_VECTORS_VERTEX_BUDGET``, else 250,000.

    The budget when nothing is known of the renderer (a script without a
    viewer); ``budget_for`` is the rule for a viewer's machine.  A value
    that is not a positive whole number is ignored with a warning rather
    than breaking every open.
    """
    value = _env_budget()
    return DEFAULT_VERTEX_BUDGET if value is None else value


def _env_budget() -> int | None:
    """``$NAPARI_ZARR_VECTORS_VERTEX_BUDGET`` as a positive whole number; None when unset or unusable."""
    import os
    import warnings

    raw = os.environ.get(BUDGET_ENV)
    if not raw:
        return None
    try:
        value = int(raw.replace("_", "").replace(",", ""))
        if value < 1:
            raise ValueError
    except ValueError:
        warnings.warn(
            f"{BUDGET_ENV}={raw!r} is not a positive whole number; ignoring it.",
            stacklevel=3,
        )
        return None
    return value


#: Substrings (lower case) of GL_RENDERER strings that name a renderer drawing on the CPU:
#: Mesa's llvmpipe/softpipe/swrast (CI, remote desktops, VMs), Google's SwiftShader,
#: Windows' fallback drivers and Apple's software renderer.
SOFTWARE_RENDERERS = (
    "llvmpipe",
    "softpipe",
    "swrast",
    "software rasterizer",
    "swiftshader",
    "microsoft basic render",
    "gdi generic",
    "apple software renderer",
)
#: Canvas pixels per vertex on a software renderer.  Measured on llvmpipe (2 cores): a
#: camera move costs ~920 ms at 250,000 vertices (swap 350 ms + draw 420 ms) and ~250 ms
#: at 50,000, about 80 ms plus 3.4 ms per 1,000 vertices.  A vertex per 20 pixels gives a
#: 1280x1024 canvas 60,000 vertices (~300 ms a move), and points of a few pixels already
#: fill the screen at that density, so more would cost time without showing more.
SOFTWARE_PIXELS_PER_VERTEX = 20
#: Bounds of the software budget: below 30,000 a small canvas shows too little of a cloud
#: (~180 ms a move anyway); above 100,000 (~420 ms a move) zooming feels stuck.
SOFTWARE_MIN_BUDGET = 30_000
SOFTWARE_MAX_BUDGET = 100_000
#: Software budgets are rounded down to this step, so the number shown reads as a setting.
BUDGET_STEP = 10_000
#: The canvas assumed when its size is unknown (napari's canvas on a 1280x1024 screen, maximized).
REFERENCE_CANVAS_PIXELS = 1280 * 1024
#: How ``budget_for`` starts the reason of a budget it sized by the canvas (``budget_follows_canvas``).
SOFTWARE_REASON = "software renderer"


def is_software_renderer(renderer: str | None) -> bool:
    """Whether a GL_RENDERER string names a renderer that draws on the CPU."""
    text = (renderer or "").lower()
    return any(name in text for name in SOFTWARE_RENDERERS)


def _renderer_name(renderer: str) -> str:
    """A GL_RENDERER string without its parenthesised details: 'llvmpipe (LLVM 15.0.6, 256 bits)' -> 'llvmpipe'."""
    name = renderer.split(" (", 1)[0].strip() or renderer.strip()
    return name if len(name) <= 48 else name[:47] + "\u2026"


def budget_for(renderer: str | None, canvas_pixels: int | tuple[int, int] | None) -> tuple[int, str]:
    """The default vertex budget for a renderer and canvas, with a one-line reason.

    ``renderer`` is the GL_RENDERER string (None: unknown); ``canvas_pixels``
    the canvas's pixel count, or its ``(height, width)`` (named in the
    reason), or None.  ``$NAPARI_ZARR_VECTORS_VERTEX_BUDGET`` wins over
    everything.  A software renderer gets a vertex per
    ``SOFTWARE_PIXELS_PER_VERTEX`` canvas pixels, rounded down to
    ``BUDGET_STEP`` and kept within ``SOFTWARE_MIN_BUDGET`` ..
    ``SOFTWARE_MAX_BUDGET``; a GPU, or an unknown renderer, gets
    ``DEFAULT_VERTEX_BUDGET`` (napari's own work per vertex, not the GPU,
    is what limits it there).

    Examples
    --------
    >>> budget_for("llvmpipe (LLVM 15.0.6, 256 bits)", (1024, 1280))
    (60000, 'software renderer (llvmpipe), 1280x1024 canvas')
    """
    env = _env_budget()
    if env is not None:
        return env, f"set by ${BUDGET_ENV}"
    if renderer is None:
        return DEFAULT_VERTEX_BUDGET, "renderer not known"
    name = _renderer_name(renderer)
    if not is_software_renderer(renderer):
        return DEFAULT_VERTEX_BUDGET, f"GPU renderer ({name})"
    if isinstance(canvas_pixels, tuple):
        height, width = (int(v) for v in canvas_pixels)
        pixels: int | None = height * width
        canvas = f"{width}x{height} canvas"
    else:
        pixels = None if canvas_pixels is None else int(canvas_pixels)
        canvas = "canvas size unknown" if pixels is None else f"{pixels:,}-pixel canvas"
    if not pixels or pixels < 1:
        pixels, canvas = REFERENCE_CANVAS_PIXELS, "canvas size unknown"
    raw = pixels // SOFTWARE_PIXELS_PER_VERTEX
    budget = min(max(raw // BUDGET_STEP * BUDGET_STEP, SOFTWARE_MIN_BUDGET), SOFTWARE_MAX_BUDGET)
    return budget, f"{SOFTWARE_REASON} ({name}), {canvas}"


def budget_follows_canvas(reason: str | None) -> bool:
    """Whether a budget given for ``reason`` is ``budget_for``'s canvas-sized one, to be redone when the canvas resizes.

    A budget set by hand, by a script, by the environment or when opened
    has another reason and is kept whatever the canvas.

    Examples
    --------
    >>> budget_follows_canvas(budget_for("llvmpipe (LLVM 15.0.6, 256 bits)", (1024, 1280))[1])
    True
    >>> budget_follows_canvas("set here"), budget_follows_canvas(None)
    (False, False)
    """
    return bool(reason) and reason.startswith(f"{SOFTWARE_REASON} (")


#: The screen-space criterion of the per-region choice (``plan_regions``): a region shows the finest level
#: that leaves at least this many screen pixels per drawn vertex (tunable in pixels, like Cesium's maximum
#: screen-space error).  More vertices than pixels cannot be told apart.  The vertex budget still caps the
#: total: when the view's regions at this criterion hold more, the criterion is raised until they fit, so
#: the densest regions turn coarse first.
DEFAULT_PIXELS_PER_VERTEX = 1.0
PIXELS_ENV = "NAPARI_ZARR_VECTORS_PIXELS_PER_VERTEX"


def default_pixels_per_vertex() -> float:
    """``$NAPARI_ZARR_VECTORS_PIXELS_PER_VERTEX`` (a positive number), else ``DEFAULT_PIXELS_PER_VERTEX``."""
    import os
    import warnings

    raw = os.environ.get(PIXELS_ENV)
    if not raw:
        return DEFAULT_PIXELS_PER_VERTEX
    try:
        value = float(raw)
        if not value > 0 or value == float("inf"):
            raise ValueError
    except ValueError:
        warnings.warn(
            f"{PIXELS_ENV}={raw!r} is not a positive number; using {DEFAULT_PIXELS_PER_VERTEX}.", stacklevel=2
        )
        return DEFAULT_PIXELS_PER_VERTEX
    return value
