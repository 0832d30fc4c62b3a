"""The napari internals the level-of-detail swap writes are still there: fails naming the one napari changed."""

from __future__ import annotations

import napari
import numpy as np
import pytest

from napari_zarr_vectors import _napari_private


def test_napari_is_the_series_pinned() -> None:
    assert napari.__version__.startswith(_napari_private.NAPARI_SERIES + "."), (
        f"napari {napari.__version__}: the swap's internals were read from napari {_napari_private.NAPARI_SERIES}; "
        "check every name in napari_zarr_vectors/_napari_private.py and update NAPARI_SERIES"
    )


def test_every_internal_used_is_there() -> None:
    _napari_private.check()  # raises NapariChanged naming each missing attribute or changed method


@pytest.mark.parametrize("name", _napari_private.POINTS_ATTRIBUTES + _napari_private.POINTS_METHODS)
def test_points_internal(name: str) -> None:
    layer = napari.layers.Points(np.zeros((3, 2)))
    assert hasattr(layer, name), f"napari.layers.Points has no {name}: update _napari_private.replace_points"


def test_check_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_napari_private, "POINTS_ATTRIBUTES", (*_napari_private.POINTS_ATTRIBUTES, "_no_such_thing"))
    monkeypatch.setattr(_napari_private, "VISPY_ON_DATA_CHANGE_SHA", "0" * 16)
    with pytest.raises(_napari_private.NapariChanged, match="_no_such_thing") as info:
        _napari_private.check()
    assert "VispyPointsLayer._on_data_change changed" in str(info.value)


def test_replace_points_equals_a_fresh_layer() -> None:
    """Written state, without a viewer: what ``Points(data, features=..., face_color=feature)`` holds."""
    rng = np.random.default_rng(0)
    old = {"v": rng.random(50), "k": rng.integers(0, 4, 50)}
    layer = napari.layers.Points(rng.random((50, 2)), features=old, face_color="v", face_contrast_limits=(0.0, 1.0))
    new = {"v": rng.random(80), "k": rng.integers(0, 4, 80)}
    data = rng.random((80, 2)) * 10
    import pandas as pd

    features = pd.DataFrame(new)
    colours = _napari_private.map_property(new["v"], layer.face_colormap, (0.0, 1.0))
    with layer.events.blocker_all():
        _napari_private.replace_points(layer, data, features, colours, size=3.0)
    layer.refresh()
    fresh = napari.layers.Points(data, features=new, face_color="v", face_contrast_limits=(0.0, 1.0), size=3.0)
    np.testing.assert_array_equal(layer.data, fresh.data)
    np.testing.assert_array_equal(layer.face_color, fresh.face_color)
    np.testing.assert_array_equal(layer.border_color, fresh.border_color)
    np.testing.assert_array_equal(layer.size, fresh.size)
    assert list(layer.symbol) == list(fresh.symbol)
    pd.testing.assert_frame_equal(layer.features, fresh.features)
    assert layer.face_color_mode == fresh.face_color_mode == "colormap"
    assert layer.face_contrast_limits == fresh.face_contrast_limits
    np.testing.assert_array_equal(layer._face.color_properties.values, new["v"])
    layer.selected_data = {79}  # selection and a per-point change still work on the written state
    layer.current_size = 5.0
    assert layer.size[79] == 5.0 and layer.size[0] == 3.0
    layer.remove_selected()
    assert len(layer.data) == len(layer.face_color) == len(layer.features) == 79
