"""The GL renderer napari draws with, and the default vertex budget it gets (``lod.budget_for``).

A software OpenGL renderer (Mesa llvmpipe in CI and on remote desktops)
draws several times slower than a GPU, so the budget that keeps a camera
move quick depends on which one this process has.
"""

from __future__ import annotations

from typing import Any

from . import lod

_renderer: str | None = None  # GL_RENDERER of this process, once read (one GL driver per process)


def gl_renderer(viewer: Any = None) -> str | None:
    """The GL_RENDERER string of vispy's current GL context, e.g. 'llvmpipe (LLVM 15.0.6, 256 bits)'.

    The canvas asked is vispy's current one, else ``viewer``'s; none is
    created (creating a canvas runs Qt events mid-read).  None when there
    is no canvas or GL cannot be asked; never raises.  The first answer is
    kept for the process.
    """
    global _renderer
    if _renderer is not None:
        return _renderer
    try:
        from vispy.gloo import gl
        from vispy.gloo.context import get_current_canvas

        canvas = get_current_canvas()
        if canvas is None and viewer is not None:
            canvas = viewer.window._qt_viewer.canvas._scene_canvas
        if canvas is None:
            return None
        canvas.set_current()
        value = gl.glGetParameter(gl.GL_RENDERER)
    except Exception:  # noqa: BLE001 - no GL (headless, closed canvas): the budget falls back, the open goes on
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value.strip():
        return None
    _renderer = value.strip()
    return _renderer


def canvas_size(viewer: Any) -> tuple[int, int] | None:
    """``viewer``'s canvas (height, width) in pixels; None when it has none."""
    try:
        height, width = (int(v) for v in viewer.canvas.size)
    except Exception:  # noqa: BLE001 - a viewer without a canvas: the reference canvas is assumed
        return None
    return (height, width) if height > 0 and width > 0 else None


def machine_budget(viewer: Any) -> tuple[int, str]:
    """The default vertex budget for ``viewer``'s renderer and canvas, with its reason; never raises."""
    return lod.budget_for(gl_renderer(viewer), canvas_size(viewer))
