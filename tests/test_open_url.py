"""File > IO Utilities > "Open Zarr Vectors store from URL...": the recent list, and the widget as a user reaches it.

The recent-list functions are tested on their own, without Qt; the widget
through the real File menu action, over a store written by upstream and
served on localhost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qtpy.QtCore import Qt

from conftest import write_upstream_store
from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors._qt import open_url
from napari_zarr_vectors._qt.open_url import (
    MAX_RECENT,
    OpenUrlWidget,
    add_recent,
    load_recent,
    recent_path,
    save_recent,
)
from napari_zarr_vectors._serve import StoreServer
from napari_zarr_vectors.layers import METADATA_KEY

PLUGIN = "napari-zarr-vectors"
TITLE = "Open Zarr Vectors store from URL..."


@pytest.fixture(autouse=True)
def _config(monkeypatch, tmp_path) -> Path:
    """The recent list lives in this test's folder, never in the real home directory."""
    folder = tmp_path / "config"
    monkeypatch.setenv(open_url.CONFIG_ENV, str(folder))
    return folder


# ---------------------------------------------------------------- the recent list, without Qt


def test_the_file_lives_where_the_variable_says(_config):
    assert recent_path() == _config / "recent_urls.json"
    assert load_recent() == []  # missing file: an empty list
    add_recent("https://example.org/a.zv")
    assert json.loads((_config / "recent_urls.json").read_text()) == ["https://example.org/a.zv"]


def test_without_the_variable_the_file_is_in_the_user_config_dir(monkeypatch):
    platformdirs = pytest.importorskip("platformdirs")
    monkeypatch.delenv(open_url.CONFIG_ENV)
    expected = Path(platformdirs.user_config_dir(PLUGIN, appauthor=False)) / "recent_urls.json"
    assert recent_path() == expected  # only the path: nothing is written there


def test_most_recent_first_and_each_store_once():
    for url in ("https://h/a.zv", "s3://bucket/b.zv", "gs://bucket/c.zv"):
        add_recent(url)
    assert load_recent() == ["gs://bucket/c.zv", "s3://bucket/b.zv", "https://h/a.zv"]
    add_recent("https://h/a.zv")  # reopened: moves to the front, not listed twice
    assert load_recent() == ["https://h/a.zv", "gs://bucket/c.zv", "s3://bucket/b.zv"]
    add_recent("HTTPS://h/a.zv/")  # the same store spelled another way
    add_recent("gcs://bucket/c.zv")  # gcs:// is gs://
    assert load_recent() == ["gs://bucket/c.zv", "https://h/a.zv", "s3://bucket/b.zv"]


def test_at_most_ten_the_oldest_dropped():
    for i in range(MAX_RECENT + 5):
        add_recent(f"https://h/store{i}.zv")
    urls = load_recent()
    assert MAX_RECENT == 10
    assert urls == [f"https://h/store{i}.zv" for i in range(14, 4, -1)]
    assert len(json.loads(recent_path().read_text())) == MAX_RECENT


def test_credentials_query_and_fragment_are_never_kept():
    signed = "https://alice:s3cret@data.example.org:8443/x/cells.zv?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA#top"
    assert add_recent(signed) == ["https://data.example.org:8443/x/cells.zv"]
    text = recent_path().read_text()
    for secret in ("alice", "s3cret", "Signature", "deadbeef", "AKIA", "top"):
        assert secret not in text
    # a hand-edited file with credentials in it is cleaned when read
    recent_path().write_text(json.dumps(["s3://key:secret@bucket/a.zv?token=1"]))
    assert load_recent() == ["s3://bucket/a.zv"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00garbage",
        b'{"a": 1}',
        b"42",
        b'"https://h/a.zv"',
        b"null",
    ],
    ids=["empty", "broken", "not-utf8", "object", "number", "string", "null"],
)
def test_a_corrupt_file_is_an_empty_list(content):
    recent_path().parent.mkdir(parents=True)
    recent_path().write_bytes(content)
    assert load_recent() == []
    assert add_recent("https://h/a.zv") == ["https://h/a.zv"]  # and the next open writes a good file
    assert load_recent() == ["https://h/a.zv"]


def test_entries_that_are_not_openable_urls_are_skipped():
    recent_path().parent.mkdir(parents=True)
    recent_path().write_text(json.dumps([1, None, "/local/path.zv", "ftp://h/a.zv", "https://h/ok.zv", ["x"]]))
    assert load_recent() == ["https://h/ok.zv"]


def test_a_folder_where_the_file_should_be_is_an_empty_list_and_saving_says_so():
    recent_path().mkdir(parents=True)  # the file's name taken by a folder
    assert load_recent() == []
    with pytest.raises(OSError):
        save_recent(["https://h/a.zv"])
    assert [p.name for p in recent_path().parent.iterdir()] == ["recent_urls.json"]  # no temporary file left


def test_saving_is_atomic_and_leaves_no_temporary_file(_config):
    save_recent(["https://h/a.zv"])
    save_recent(["https://h/b.zv", "https://h/a.zv"])
    assert sorted(p.name for p in _config.iterdir()) == ["recent_urls.json"]
    assert load_recent() == ["https://h/b.zv", "https://h/a.zv"]


# ---------------------------------------------------------------- the widget, from the File menu


def _menu_action(viewer, *path: str):
    """The QAction at ``path`` in the viewer's menu bar (menu titles without their & shortcuts)."""
    menu = viewer.window._qt_window.menuBar()
    *menus, item = path
    for title in menus:
        menu = next(a.menu() for a in menu.actions() if a.menu() is not None and a.text().replace("&", "") == title)
    return next(a for a in menu.actions() if a.text().replace("&&", "&") == item)


def _open_from_menu(viewer, qtbot) -> OpenUrlWidget:
    """Click File > IO Utilities > the entry, as a user does; the dock it opens."""
    action = _menu_action(viewer, "File", "IO Utilities", f"{TITLE} (Zarr Vectors)")
    action.trigger()
    find = viewer.window._qt_window.findChild
    qtbot.waitUntil(lambda: find(OpenUrlWidget) is not None and find(OpenUrlWidget).isVisible(), timeout=5000)
    return find(OpenUrlWidget)


def _type_and_open(qtbot, widget: OpenUrlWidget, url: str) -> None:
    widget.url_box.clearEditText()
    qtbot.keyClicks(widget.url_box.lineEdit(), url)
    assert widget.url_box.currentText() == url
    qtbot.mouseClick(widget.open_button, Qt.MouseButton.LeftButton)


@pytest.fixture
def served(tmp_path):
    """A point-cloud store written by upstream, served over HTTP on localhost."""
    folder = tmp_path / "served"
    folder.mkdir()
    write_upstream_store("point_cloud", folder / "points.zv")
    with StoreServer(folder) as server:
        yield server


SPELLINGS = {
    "plain": lambda url: url,
    "signed": lambda url: url.replace("http://", "http://reader:pw@") + "?session=abc",  # opened in full, kept without
    "trailing slash": lambda url: url + "/",
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_the_menu_entry_opens_a_served_store_and_remembers_it(
    make_napari_viewer, qtbot, served, error_notifications, spelling
):
    save_recent(["https://earlier.example.org/old.zv"])
    viewer = make_napari_viewer(show=True)
    widget = _open_from_menu(viewer, qtbot)
    assert widget.recent() == ["https://earlier.example.org/old.zv"]
    assert "s3://" in widget.hint.text() and "gs://" in widget.hint.text() and "http(s)://" in widget.hint.text()

    url = served.url("points.zv")
    _type_and_open(qtbot, widget, SPELLINGS[spelling](url))
    ours = [layer for layer in viewer.layers if METADATA_KEY in layer.metadata]
    assert ours, "no Zarr Vectors layer was added"
    assert any(r.path.startswith("points.zv/") for r in served.requests)  # read from the server
    assert widget.recent() == [url, "https://earlier.example.org/old.zv"]
    assert load_recent() == [url, "https://earlier.example.org/old.zv"]
    assert widget.url_box.currentText() == url  # the field shows no credentials either
    assert "pw" not in recent_path().read_text() and "session" not in recent_path().read_text()
    assert error_notifications == []
    assert _follow.wait_settled(viewer, timeout=60)  # done reading before the server stops


def test_a_bad_scheme_is_an_error_notification_and_adds_nothing(make_napari_viewer, qtbot, error_notifications):
    viewer = make_napari_viewer(show=True)
    widget = _open_from_menu(viewer, qtbot)
    _type_and_open(qtbot, widget, "ftp://example.org/data/cells.zv")
    assert len(viewer.layers) == 0
    assert len(error_notifications) == 1
    message = error_notifications[0]
    assert "ftp://" in message and "https://" in message and "s3://" in message  # what is wrong, what to use
    assert "Traceback" not in message
    assert load_recent() == [] and widget.recent() == []


def test_not_a_url_an_empty_field_and_no_store_name_say_what_to_do(
    make_napari_viewer, qtbot, error_notifications, tmp_path
):
    viewer = make_napari_viewer(show=True)
    widget = _open_from_menu(viewer, qtbot)
    _type_and_open(qtbot, widget, str(tmp_path / "local.zv"))
    widget.url_box.clearEditText()
    qtbot.mouseClick(widget.open_button, Qt.MouseButton.LeftButton)
    _type_and_open(qtbot, widget, "https://user:pw@example.org/data/cells")  # no store folder named: no reader
    assert len(viewer.layers) == 0
    assert len(error_notifications) == 3
    assert "is not a URL" in error_notifications[0] and "Open Folder" in error_notifications[0]
    assert "Type the URL" in error_notifications[1]
    assert "did not open" in error_notifications[2] and ".zv" in error_notifications[2]
    assert "pw" not in error_notifications[2]
    assert load_recent() == []


def test_a_missing_store_is_the_readers_error_and_not_remembered(
    make_napari_viewer, qtbot, served, error_notifications
):
    viewer = make_napari_viewer(show=True)
    widget = _open_from_menu(viewer, qtbot)
    _type_and_open(qtbot, widget, served.url("nothing-here.zv"))
    assert len(viewer.layers) == 0
    assert len(error_notifications) == 1 and "nothing-here.zv" in error_notifications[0]
    assert load_recent() == [] and widget.recent() == []
