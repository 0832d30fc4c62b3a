"""Stores served over HTTP by a real local web server: opening, following the camera, failures, refusals."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_zarr_vectors import lod, pyramid, store
from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors._serve import StoreServer, free_port
from napari_zarr_vectors.layers import METADATA_KEY
from napari_zarr_vectors.store import remote

PLUGIN = "napari-zarr-vectors"
BUDGET = 20_000
#: a chunk file of a level: its vertices, fragment index or a vertex attribute
CHUNK = re.compile(r"^[^/]+/(\d+)/(?:vertices|vertex_fragments|vertex_attributes/\w+)/c/(\d+)/(\d+)$")


@pytest.fixture
def served(small_points_2d, monkeypatch):
    """The 200k-point pyramid store on a local web server; short timeouts and no retries, so faults show fast."""
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_TIMEOUT", "1")
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_RETRIES", "0")
    store.forget_remote()
    with StoreServer(small_points_2d.parent) as server:
        yield server, server.url(small_points_2d.name)
    store.forget_remote()


@pytest.fixture
def viewer_on(make_napari_viewer, qtbot, served, monkeypatch):
    monkeypatch.setenv(lod.BUDGET_ENV, str(BUDGET))
    server, url = served
    viewer = make_napari_viewer()
    viewer.window._qt_viewer.canvas.size = (600, 800)
    # no plugin= : the URL goes to the one reader that claims it (napari's default "napari" reads no URL)
    layers = viewer.open(url, plugin=None)
    points = next(layer for layer in layers if type(layer).__name__ == "Points")
    follower = _follow.follower_of(points)
    assert follower is not None
    qtbot.waitUntil(lambda: follower.idle, timeout=20_000)
    return viewer, points, follower, server, url


def chunk_requests(server: StoreServer) -> list[tuple[int, tuple[int, int], str]]:
    """(level, chunk) of every chunk file the server was asked for (one entry per file)."""
    out = []
    for r in server.requests:
        m = CHUNK.match(r.path)
        if m:
            out.append((int(m.group(1)), (int(m.group(2)), int(m.group(3))), r.path))
    return out


def zoom_to(viewer, center_yx, width):
    viewer.scene.camera.center = center_yx
    viewer.scene.camera.zoom = viewer.canvas.size[1] / width


def test_the_url_opens_with_the_local_store_s_levels(viewer_on, small_points_2d):
    viewer, points, follower, server, url = viewer_on
    meta = points.metadata[METADATA_KEY]
    assert meta["path"] == url
    local, remote_info = store.open_info(small_points_2d), store.open_info(url)
    assert [lv.vertex_count for lv in remote_info.levels] == [lv.vertex_count for lv in local.levels]
    assert remote_info.name == local.name == "small_2d"
    assert 0 < len(points.data) <= BUDGET


def test_zooming_in_goes_finer_and_fetches_only_chunks_in_view(viewer_on, qtbot, small_points_2d):
    viewer, points, follower, server, url = viewer_on
    coarse = follower.level
    server.clear()
    zoom_to(viewer, (300.0, 700.0), 100.0)  # 10% of the store's width
    qtbot.waitUntil(lambda: follower.idle and follower.level < coarse, timeout=20_000)
    assert follower.level == 0
    level, box = follower.lod.shown
    fetched = chunk_requests(server)
    assert fetched, "zooming in fetched no chunks"
    chunk = np.asarray(store.open_info(small_points_2d).level(level).chunk_shape)
    for lv, key, _ in fetched:
        assert lv == level  # nothing read of levels not shown
        lo, hi = np.asarray(key) * chunk, (np.asarray(key) + 1) * chunk
        assert np.all(hi >= box.lo) and np.all(lo <= box.hi), f"chunk {key} lies outside the view's box"
    # 100 chunks at level 0; a 10% window with its margin meets a handful
    assert len({key for _, key, _ in fetched}) <= 9
    files = [f for *_, f in fetched]
    assert len(files) == len(set(files))  # no file fetched twice
    shown = np.asarray(points.data)[:, ::-1]
    expect = store.read_level(small_points_2d, 0, bbox=(box.lo, box.hi)).positions
    assert len(shown) == len(expect)
    np.testing.assert_allclose(np.sort(shown, axis=0), np.sort(expect, axis=0), rtol=1e-6)


def test_going_back_reads_nothing_again(viewer_on, qtbot):
    viewer, points, follower, server, url = viewer_on
    width = viewer.canvas.size[1] / viewer.scene.camera.zoom
    zoom_to(viewer, (300.0, 700.0), 100.0)
    qtbot.waitUntil(lambda: follower.idle and follower.level == 0, timeout=20_000)
    zoom_to(viewer, (500.0, 500.0), width)
    qtbot.waitUntil(lambda: follower.idle and follower.level > 0, timeout=20_000)
    server.clear()
    zoom_to(viewer, (300.0, 700.0), 100.0)
    qtbot.waitUntil(lambda: follower.idle and follower.level == 0, timeout=20_000)
    assert chunk_requests(server) == []  # every chunk came from the session's cache


def _swaps_settle(qtbot, follower, failures_before):
    qtbot.waitUntil(lambda: follower.idle and follower.failures > failures_before, timeout=20_000)


@pytest.mark.parametrize("fault", ["404", "stall", "offline"])
def test_a_failing_network_keeps_the_last_view_with_one_notification(viewer_on, qtbot, warning_notifications, fault):
    viewer, points, follower, server, url = viewer_on
    before = np.asarray(points.data).copy()
    level = follower.level
    if fault == "404":
        server.rules.fail[r"^[^/]+/0/.*/c/"] = 404  # every chunk file of level 0
    elif fault == "stall":
        server.rules.stall[r"^[^/]+/0/.*/c/"] = 3.0  # past the 1 s timeout
    else:
        server.stop()
    failures = follower.failures
    zoom_to(viewer, (300.0, 700.0), 100.0)
    _swaps_settle(qtbot, follower, failures)
    zoom_to(viewer, (320.0, 690.0), 90.0)  # a second move in the outage
    _swaps_settle(qtbot, follower, failures + 1)
    np.testing.assert_array_equal(np.asarray(points.data), before)  # the last good view stays
    assert follower.level == level
    mine = [m for m in warning_notifications if remote.shown(url) in m]
    assert len(mine) == 1, warning_notifications  # one notification for the outage, not one per move or chunk
    expected = {"404": "404 Not Found", "stall": "did not answer within", "offline": "cannot connect"}[fault]
    assert expected in mine[0]
    if fault != "offline":  # the network is back: the view loads, and a later outage is reported again
        server.rules.fail.clear()
        server.rules.stall.clear()
        zoom_to(viewer, (310.0, 700.0), 100.0)
        qtbot.waitUntil(lambda: follower.idle and follower.level == 0, timeout=20_000)


def test_opening_a_missing_store_names_the_url(make_napari_viewer, served, error_notifications):
    server, url = served
    viewer = make_napari_viewer()
    missing = url.replace("small_2d", "nothing_here")
    viewer.open(missing, plugin=None)
    assert len(viewer.layers) == 0
    assert any(missing in m and "404" in m for m in error_notifications), error_notifications


def test_opening_with_the_connection_refused_says_so(make_napari_viewer, error_notifications, monkeypatch):
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_RETRIES", "0")
    store.forget_remote()
    url = f"http://127.0.0.1:{free_port()}/points.zv"
    viewer = make_napari_viewer()
    viewer.open(url, plugin=None)
    assert len(viewer.layers) == 0
    assert any(url in m and "cannot connect" in m for m in error_notifications), error_notifications


def test_a_stalled_server_times_out_with_a_clear_error(served):
    server, url = served
    server.rules.stall[r"zarr\.json$"] = 3.0
    with pytest.raises(store.StoreError, match="did not answer within 1 s"):
        store.open_info(url)


def test_credentials_and_queries_never_reach_messages_or_metadata(served):
    server, url = served
    secret = url.replace("http://", "http://alice:hunter2@") + "?X-Amz-Signature=deadbeef"
    assert "hunter2" not in remote.shown(secret) and "deadbeef" not in remote.shown(secret)
    signed = url + "?X-Amz-Signature=deadbeef"
    info = store.open_info(signed)
    assert info.path == url  # what layers, the CLI and messages carry
    assert store.read_level(info.path, 3).vertex_count > 0  # and it reaches the handle opened with the signature
    server.rules.fail[r"zarr\.json$"] = 403
    with pytest.raises(store.StoreError) as caught:
        store.open_info(url.replace("small_2d", "private") + "?X-Amz-Signature=deadbeef")
    assert "deadbeef" not in str(caught.value)


@pytest.mark.parametrize(
    "change",
    [
        lambda url: pyramid.build_pyramid(url, [(2.0, 1.0)]),
        lambda url: pyramid.remove_resolution_level(url, 3),
        lambda url: store.repair(url),
        lambda url: store.write_point_cloud(url + "/new.zv", np.zeros((4, 2), np.float32)),
    ],
    ids=["build", "remove", "repair", "write"],
)
def test_changes_to_a_remote_store_are_refused_with_the_way_to_a_local_copy(served, change):
    server, url = served
    server.clear()
    with pytest.raises(store.StoreError, match="remote store") as caught:
        change(url)
    assert "napari-zarr-vectors download" in str(caught.value)
    assert not [r for r in server.requests if r.method not in ("GET", "HEAD")]


def test_the_writer_refuses_a_url(served):
    from napari_zarr_vectors import _writer

    server, url = served
    with pytest.raises(_writer.LayerNotSaved, match="download"):
        _writer.write_points(url.replace("small_2d", "saved"), np.zeros((3, 2)), {"name": "p"})


def test_reads_of_a_remote_store_equal_the_local_ones(served, small_points_2d):
    server, url = served
    for level in (0, 2, 3):
        box = (np.array([100.0, 200.0]), np.array([350.0, 420.0]))
        a = store.read_level(small_points_2d, level, bbox=box)
        b = store.read_level(url, level, bbox=box)
        order_a, order_b = np.lexsort(a.positions.T), np.lexsort(b.positions.T)
        np.testing.assert_array_equal(a.positions[order_a], b.positions[order_b])
        for name in a.vertex_attributes:
            np.testing.assert_array_equal(a.vertex_attributes[name][order_a], b.vertex_attributes[name][order_b])


def test_drilling_over_a_web_server_matches_the_local_store(served, small_points_2d):
    """A web server lists no folders: the link families come from its index pages."""
    import napari_zarr_vectors as nzv
    from napari_zarr_vectors import drill

    server, url = served
    coords, counts = store.chunk_vertex_counts(small_points_2d, 3)
    metanodes = np.array([(*coords[i], 0) for i in range(0, len(coords), max(1, len(coords) // 5))], np.int64)
    try:
        down, want = nzv.children(url, 3, metanodes, 3), nzv.children(small_points_2d, 3, metanodes, 3)
        assert down.level == 0 and len(down) > len(metanodes)
        np.testing.assert_array_equal(down.keys, want.keys)
        np.testing.assert_array_equal(down.positions, want.positions)
        up = nzv.parents(url, 0, down.keys, 3)
        np.testing.assert_array_equal(up.keys, metanodes)
    finally:
        drill._drills.clear()  # the drill cache holds the server's handle
    assert any(r.path.endswith("/links/") for r in server.requests)  # the index page was what listed them


def test_the_density_of_a_remote_store_equals_the_local_one(served, small_points_2d):
    import napari_zarr_vectors as nzv

    server, url = served
    remote_levels, local_levels = nzv.density_pyramid(url), nzv.density_pyramid(small_points_2d)
    assert len(remote_levels) == len(local_levels) > 1
    for a, b in zip(remote_levels, local_levels, strict=True):
        np.testing.assert_array_equal(a, b)
    assert remote_levels[0].sum() == store.open_info(small_points_2d).levels[0].vertex_count


def test_the_build_dock_on_a_remote_layer_says_how_to_build_instead(
    make_napari_viewer, qtbot, served, tree_digest, small_points_2d, error_notifications
):
    from qtpy.QtCore import Qt

    server, url = served
    before = tree_digest(small_points_2d)
    viewer = make_napari_viewer()
    viewer.open(url, plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Build pyramid")
    assert widget.store_path == url  # the selected layer's store, its URL intact
    assert widget.summary_table.shape[0] == 4  # its levels are shown
    assert not widget.build_button.native.isEnabled()
    assert "napari-zarr-vectors download" in widget.build_reason.value
    assert not widget.coarsen_one_button.enabled and not widget.remove_level_button.enabled
    qtbot.mouseClick(widget.build_button.native, Qt.LeftButton)
    assert widget._worker is None
    assert tree_digest(small_points_2d) == before
    assert not [r for r in server.requests if r.method not in ("GET", "HEAD")]


@pytest.mark.parametrize("kind", ["point_cloud", "polyline", "streamline", "line", "graph", "skeleton", "mesh"])
def test_every_kind_written_by_upstream_reads_the_same_over_http(upstream_stores, kind, monkeypatch):
    """Stores written by zarr-vectors itself, served as they are: every level equals the local read."""
    local = upstream_stores[kind]
    store.forget_remote()
    with StoreServer(local.parent) as server:
        url = server.url(local.name)
        info, want = store.open_info(url), store.open_info(local)
        assert (info.kind, info.vertex_attributes, info.object_attributes) == (
            want.kind,
            want.vertex_attributes,
            want.object_attributes,
        )
        assert [lv.vertex_count for lv in info.levels] == [lv.vertex_count for lv in want.levels]
        for lv in info.levels:
            a, b = store.read_level(url, lv.index), store.read_level(local, lv.index)
            np.testing.assert_array_equal(a.positions, b.positions)
            for name, values in b.vertex_attributes.items():
                np.testing.assert_array_equal(a.vertex_attributes[name], values)
            for field in ("offsets", "edges", "faces"):
                if getattr(b, field) is not None:
                    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    store.forget_remote()


@pytest.mark.parametrize("connections", [4, 32])
def test_requests_in_flight_are_bounded(small_points_2d, monkeypatch, connections):
    """Concurrent, but never more connections at once than $NAPARI_ZARR_VECTORS_CONNECTIONS (a small server drops
    the rest: python's http.server has a backlog of 5)."""
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_CONNECTIONS", str(connections))
    store.forget_remote()
    with StoreServer(small_points_2d.parent, latency=0.05) as server:
        url = server.url(small_points_2d.name)
        store.open_info(url)
        coords, _ = store.chunk_vertex_counts(url, 0)  # 100 HEADs at once
        store.read_point_chunks(url, 0, [tuple(c) for c in coords[:40]], ["intensity"])
        assert len(server.requests) > 100
        # the server counts a connection until its thread is done, a moment after the client has its answer
        if connections == 4:
            assert 2 <= server.max_inflight <= connections + 2
        else:
            assert server.max_inflight > 4 + 2  # the bound, not the server or zarr, is what held it to 4 above
    store.forget_remote()
