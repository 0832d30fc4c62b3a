"""A URL's user, password and signed query never leave: not in messages, notifications, logs or layer sources.

Issue 26: a server answering 500 made obstore's own text (which quotes the full request URL) reach the
error message, napari's notification, download and chunk read errors; zarr's DEBUG log named
``HTTPStore("http://alice:PW@...")``; napari kept the URL given to ``viewer.open`` in ``layer.source``.
Each test here opens a real local web server with a URL carrying distinctive secrets and looks for them
in every text the plugin writes.
"""

from __future__ import annotations

import logging
import traceback

import numpy as np
import pytest

from napari_zarr_vectors import cli, download, store
from napari_zarr_vectors._serve import StoreServer
from napari_zarr_vectors.layers import METADATA_KEY
from napari_zarr_vectors.store import remote

PASSWORD, SIGNATURE, TOKEN = "s3cr3tPW", "SIGabc123", "TOKxyz789"
SECRETS = (PASSWORD, SIGNATURE, TOKEN)
#: every chunk file of level 0 (its vertices, fragment index, attributes)
LEVEL_0_CHUNKS = r"^[^/]+/0/.*/c/"


def with_secrets(url: str) -> str:
    """``url`` with a basic-auth user and a signed query (S3 presigned style)."""
    url = url.replace("http://", f"http://alice:{PASSWORD}@")
    return f"{url}?X-Amz-Signature={SIGNATURE}&X-Amz-Security-Token={TOKEN}&X-Amz-Expires=3600"


def assert_clean(*texts: str) -> None:
    for text in texts:
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, f"{leaked} in: {text}"


def full_text(exc: BaseException) -> str:
    """The exception as a traceback prints it (its message, and any chain it shows)."""
    return "".join(traceback.format_exception(exc))


@pytest.fixture
def served(small_points_2d, monkeypatch):
    """The 200k-point store on a local web server, its URL with secrets; no retries, so failures show fast."""
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_TIMEOUT", "2")
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_RETRIES", "0")
    store.forget_remote()
    with StoreServer(small_points_2d.parent) as server:
        yield server, with_secrets(server.url(small_points_2d.name))
    store.forget_remote()


@pytest.fixture
def debug_log(caplog):
    """Every record at DEBUG, from every logger (zarr's, obstore's, npe2's, the plugin's)."""
    caplog.set_level(logging.DEBUG)
    return caplog


def log_text(caplog) -> str:
    """Each record as a handler formats it (message, arguments, traceback)."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records)


# ---------------------------------------------------------------- the redaction


@pytest.mark.parametrize(
    "text",
    [
        # obstore's text for a failed request, as it quotes the URL
        f"Generic HTTP error: Error performing GET http://alice:{PASSWORD}@host:8000/a.zv/zarr.json?"
        f"X-Amz-Signature={SIGNATURE}&X-Amz-Security-Token={TOKEN} in 2ms - Server returned non-2xx status code",
        # zarr's DEBUG record of a group's store path
        f'key=0, store_path=wrapping-object_store://HTTPStore("https://alice:{PASSWORD}@host/a.zv?sig={SIGNATURE}")/0',
        # percent-encoded, as a URL inside another URL or a log of one
        f"http%3A%2F%2Falice%3A{PASSWORD}%40host%2Fa.zv%3FX-Amz-Signature%3D{SIGNATURE}%26token%3D{TOKEN} end",
        # parameters without their URL, in any case
        f"X-AMZ-SIGNATURE={SIGNATURE}; x-amz-security-token={TOKEN}, Signature={SIGNATURE}",
        # a password holding a raw @, a gs:// URL, a fragment
        f"'gs://alice:p@{PASSWORD}@bucket/a.zv#access_token={TOKEN}'",
    ],
)
def test_redact_removes_user_info_queries_and_signatures(text):
    assert_clean(remote.redact(text))


def test_redact_keeps_the_address_and_other_text():
    text = "'https://host:8443/data/a.zv/0/vertices/c/1/2': 500 Internal Server Error, key=0, zarr.json"
    assert remote.redact("'https://bob:pw@host:8443/data/a.zv/0/vertices/c/1/2?X-Amz-Signature=s': 500") == (
        "'https://host:8443/data/a.zv/0/vertices/c/1/2': 500"
    )
    assert remote.redact(text) == text
    assert remote.redact(f"X-Amz-Signature={SIGNATURE}") == "X-Amz-Signature=[redacted]"


def test_redact_with_the_url_finds_its_secrets_however_spelled():
    url = with_secrets("http://host/a.zv")
    spelled = f"request to host/a.zv failed; auth alice/{PASSWORD}; signed {SIGNATURE} {TOKEN}"
    assert_clean(remote.redact(spelled, url))


# ---------------------------------------------------------------- a server answering 500


def test_a_server_error_quotes_no_secret(served, debug_log, capsys):
    server, url = served
    server.rules.fail["."] = 500  # every request
    with pytest.raises(store.StoreError) as caught:
        store.open_info(url)
    message = str(caught.value)
    assert_clean(message, full_text(caught.value))
    assert "500 Internal Server Error" in message  # the server's own text is still quoted, redacted
    assert remote.shown(url) in message

    store.forget_remote()
    assert cli.main(["info", url]) == 1
    out, err = capsys.readouterr()
    assert_clean(out, err, log_text(debug_log))
    assert "500" in err


def test_a_chunk_read_error_quotes_no_secret(served, debug_log):
    server, url = served
    info = store.open_info(url)
    server.rules.fail[LEVEL_0_CHUNKS] = 500
    with pytest.raises(store.StoreError) as caught:
        store.read_level(info.path, 0)
    assert_clean(str(caught.value), full_text(caught.value), log_text(debug_log))
    assert "500" in str(caught.value)


def test_a_download_error_quotes_no_secret(served, tmp_path, debug_log, capsys):
    server, url = served
    server.rules.fail[LEVEL_0_CHUNKS] = 500  # the metadata plans the copy; the first chunk fails
    with pytest.raises(download.DownloadError) as caught:
        download.download(url, tmp_path / "copy.zv")
    assert_clean(str(caught.value), full_text(caught.value))
    assert "500" in str(caught.value)

    assert cli.main(["download", url, str(tmp_path / "again.zv")]) == 1
    out, err = capsys.readouterr()
    assert_clean(out, err, log_text(debug_log))
    assert "500" in err


# ---------------------------------------------------------------- logs


def test_a_debug_log_of_opening_and_reading_shows_no_secret(served, debug_log):
    server, url = served
    info = store.open_info(url)
    store.read_level(info.path, 0, bbox=(np.array([0.0, 0.0]), np.array([200.0, 200.0])))
    zarr_records = [r for r in debug_log.records if r.name.startswith("zarr")]
    assert any("store_path=" in r.getMessage() for r in zarr_records)  # zarr names each group's store
    assert_clean(log_text(debug_log))


@pytest.mark.parametrize("name", ["zarr", "zarr.group", "zarr.imported_late", "obstore", "npe2.io_utils", "follow"])
def test_the_guarded_loggers_redact_every_record(served, debug_log, name):
    from napari_zarr_vectors._qt import follow

    server, url = served
    log = follow.log if name == "follow" else logging.getLogger(name)
    store.open_info(url)  # guards the loggers of every module imported so far
    log.debug("opening %s", url)
    try:
        raise OSError(f"Error performing GET {url}")
    except OSError:
        log.exception("failed")
    text = log_text(debug_log)
    assert remote.shown(url) in text and "Error performing GET" in text
    assert_clean(text)


# ---------------------------------------------------------------- napari


def test_a_failed_open_notifies_no_secret(make_napari_viewer, served, error_notifications, debug_log):
    server, url = served
    server.rules.fail["."] = 500
    viewer = make_napari_viewer()
    viewer.open(url, plugin=None)
    assert len(viewer.layers) == 0
    assert_clean(*error_notifications, log_text(debug_log))
    assert any("500" in m for m in error_notifications), error_notifications


def test_an_opened_layer_keeps_no_secret(make_napari_viewer, qtbot, served, warning_notifications, debug_log):
    from napari_zarr_vectors._qt import follow

    server, url = served
    viewer = make_napari_viewer()
    viewer.window._qt_viewer.canvas.size = (600, 800)
    layer = next(lr for lr in viewer.open(url, plugin=None) if type(lr).__name__ == "Points")
    follower = follow.follower_of(layer)
    qtbot.waitUntil(lambda: follower.idle, timeout=20_000)
    assert_clean(str(layer.source), str(layer.metadata), str(layer._get_source_info()))
    assert layer.source.path == remote.shown(url)
    assert layer.source.reader_plugin == "napari-zarr-vectors"
    assert layer.metadata[METADATA_KEY]["path"] == remote.shown(url)

    server.rules.fail[LEVEL_0_CHUNKS] = 500  # the next view's chunks fail: one warning
    failures = follower.failures
    viewer.scene.camera.center = (300.0, 700.0)
    viewer.scene.camera.zoom = viewer.canvas.size[1] / 100.0
    qtbot.waitUntil(lambda: follower.idle and follower.failures > failures, timeout=20_000)
    assert_clean(*warning_notifications, follower.last_error, log_text(debug_log))
    mine = [m for m in warning_notifications if remote.shown(url) in m]
    assert mine and "500" in mine[0], warning_notifications
