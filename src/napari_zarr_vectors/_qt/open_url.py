"""File > IO Utilities > "Open Zarr Vectors store from URL...": a URL field that remembers recent stores.

The widget only checks the address (``store.address``) and hands the URL
to ``viewer.open``; the reader does the reading and reports unreadable
stores itself.  The recent list is plain functions over a small JSON file
(``load_recent`` / ``save_recent`` / ``add_recent``), free of Qt, so the
command line or a test can use it without a viewer.

The list stores what ``remote.shown`` shows of a URL: no user, password,
query or fragment, since signed URLs carry their credentials there.  The
URL opened is the one typed, in full, in ``store.address``'s spelling
(lower-case scheme, no trailing slash: napari matches the reader's
``*.zv`` patterns against the URL as given).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_warning
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from .. import store
from ._layout import WrappingLabel

if TYPE_CHECKING:
    import napari

PLUGIN = "napari-zarr-vectors"
#: Where the recent list lives instead of the user config dir, when set (tests, portable installs).
CONFIG_ENV = "NAPARI_ZARR_VECTORS_CONFIG"
RECENT_FILE = "recent_urls.json"
#: Most URLs the recent list keeps.
MAX_RECENT = 10
EXAMPLE = "https://example.org/data/cells.zv"
HINT = "A store folder's URL: http(s)://HOST/…/name.zv, s3://BUCKET/…/name.zv or gs://BUCKET/…/name.zv."


# ---------------------------------------------------------------- the recent list (no Qt)


def config_dir() -> Path:
    """``$NAPARI_ZARR_VECTORS_CONFIG``, else this plugin's folder in the platform's user config dir."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs  # a napari dependency
    except ImportError:  # pragma: no cover - napari depends on platformdirs
        return Path.home() / ".config" / PLUGIN
    return Path(platformdirs.user_config_dir(PLUGIN, appauthor=False))


def recent_path() -> Path:
    """The JSON file that holds the recent URLs."""
    return config_dir() / RECENT_FILE


def recent_entry(url: str) -> str:
    """What the list keeps of ``url``: one spelling per store, without credentials or query.

    The canonical form (lower-case scheme, ``gcs://`` as ``gs://``, no
    trailing slash) makes one store one entry however it was typed.
    """
    return store.remote.shown(store.remote.canonical_url(url))


def _openable(url: Any) -> bool:
    """A string URL with a scheme this plugin opens (anything else in the file is skipped)."""
    if not isinstance(url, str):
        return False
    try:
        if store.resolve(url.strip()).local is not None:
            return False  # a path: the list holds URLs only
    except store.StoreError:
        return False
    return True


def _cleaned(urls: Iterable[Any]) -> list[str]:
    """Openable URLs only, as entries, each once (first wins), at most ``MAX_RECENT``."""
    out: list[str] = []
    for url in urls:
        if not _openable(url):
            continue
        entry = recent_entry(url)
        if entry not in out:
            out.append(entry)
    return out[:MAX_RECENT]


def load_recent(path: Path | None = None) -> list[str]:
    """The recent URLs, most recent first; a missing, unreadable or corrupt file is an empty list.

    The list is a convenience: nothing about it may stop a store from opening.
    """
    path = recent_path() if path is None else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8 or not JSON
        return []
    if isinstance(data, dict):  # tolerate {"urls": [...]}
        data = data.get("urls")
    return _cleaned(data) if isinstance(data, list) else []


def save_recent(urls: Iterable[str], path: Path | None = None) -> list[str]:
    """Write ``urls`` (cleaned, capped) as the recent list, atomically; returns what was written.

    A temporary file in the same folder replaced over the old one: a
    crash or a second napari writing at the same time never leaves half
    a file.  Raises OSError when the folder cannot be written.
    """
    path = recent_path() if path is None else path
    cleaned = _cleaned(urls)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(cleaned, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return cleaned


def add_recent(url: str, path: Path | None = None) -> list[str]:
    """Put ``url`` first in the recent list (once, without credentials or query) and save; returns the list.

    Reads the file again first, so URLs another napari added meanwhile are kept.
    """
    return save_recent([url, *load_recent(path)], path)


# ---------------------------------------------------------------- the widget


class OpenUrlWidget(QWidget):
    """A URL field listing recent stores, an Open button, and a line on what a URL may look like."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.url_box = QComboBox()
        self.url_box.setEditable(True)
        self.url_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)  # the list is the recent file's, not typing's
        self.url_box.setMaxCount(MAX_RECENT)
        self.url_box.setMinimumContentsLength(24)
        self.url_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.url_box.setToolTip(
            "The URL of a Zarr Vectors store folder; the list holds the last stores opened here, newest first. "
            "Credentials come from your environment (AWS or Google settings), or from the URL itself; "
            "the list never keeps a URL's user, password or query."
        )
        self.url_box.lineEdit().setPlaceholderText(EXAMPLE)
        self.url_box.lineEdit().returnPressed.connect(self.open_url)
        row.addWidget(self.url_box, 1)
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Open the store at this URL in the viewer (read-only).")
        self.open_button.clicked.connect(self.open_url)
        row.addWidget(self.open_button)
        layout.addLayout(row)
        self.hint = WrappingLabel(HINT)
        layout.addWidget(self.hint)
        layout.addStretch(1)
        self.refresh_recent()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """Each time the dock is shown, list the file's URLs: another viewer may have opened a store since."""
        self.refresh_recent()
        super().showEvent(event)

    def recent(self) -> list[str]:
        """The URLs the field lists, most recent first."""
        return [self.url_box.itemText(i) for i in range(self.url_box.count())]

    def refresh_recent(self) -> None:
        """List the recent file's URLs, keeping whatever is typed in the field."""
        text = self.url_box.currentText()
        self.url_box.clear()
        self.url_box.addItems(load_recent())
        self.url_box.setEditText(text)

    def open_url(self) -> list[Any]:
        """Open the typed URL with this plugin; bad input is an error notification, not a traceback.

        Returns the layers added (none when the address was refused or the
        store could not be read: the reader says why).  Only a URL that
        opened something joins the recent list, so a typo does not.
        """
        text = self.url_box.currentText().strip()
        if not text:
            show_error(f"Type the URL of a Zarr Vectors store first, for example {EXAMPLE}.")
            return []
        try:
            a = store.resolve(text)
        except store.StoreError as exc:
            show_error(str(exc))
            return []
        if a.local is not None:
            show_error(
                f"'{text}' is not a URL. {HINT} "
                "For a store on this computer use File > Open Folder... or drop the folder on the viewer."
            )
            return []
        url = a.address  # the full URL (user, password and query kept), one spelling
        try:
            added = list(self.viewer.open(url, plugin=PLUGIN) or [])
        except (ValueError, RuntimeError):  # napari's and npe2's "no reader" errors, whose text repeats the full URL
            show_error(
                f"'{store.shown(text)}' did not open as a Zarr Vectors store. "
                "Check that the URL names the store folder itself (it ends in .zv or .zarrvectors)."
            )
            return []
        if added:
            try:
                add_recent(text)
            except OSError as exc:
                show_warning(f"The store opened, but the recent list could not be saved to {recent_path()}: {exc}")
            self.refresh_recent()
            self.url_box.setEditText(recent_entry(text))  # the field shows no credentials either
        return added
