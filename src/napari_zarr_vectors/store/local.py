"""The zarr store a local store's handle reads through: metadata kept, chunk bytes from disk, every file capped."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from zarr.core.buffer import default_buffer_prototype
from zarr.storage import LocalStore as _ZarrLocalStore

from .errors import StoreError
from .limits import read_file
from .metadata import check_metadata_document, is_metadata_key


class LocalStore(_ZarrLocalStore):
    """A handle's view of a local store: metadata read once, chunk bytes always from disk.

    Named ``LocalStore`` on purpose (as journal.py's staging store is):
    zarr-vectors reads chunk cells straight from disk only for a store
    of that class name (through ``limits.read_file`` too, see
    ``limits.install``).  Chunk bytes are not kept: the OS caches files.
    A whole-file read is refused before reading when the file is larger
    than its cap (``limits``): a metadata document, or a chunk.
    """

    def __init__(self, root: Path | str) -> None:
        super().__init__(root, read_only=True)
        self._meta: dict[str, Any] = {}
        self._meta_lock = threading.Lock()

    def with_read_only(self, read_only: bool = False) -> Any:
        # upstream opens mode "r" through this; a copy would start with an empty cache
        return self if read_only else _ZarrLocalStore(self.root, read_only=False)

    async def _read(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        if byte_range is not None:
            return await super().get(key, prototype, byte_range)
        if not self._is_open:
            await self._open()
        prototype = prototype or default_buffer_prototype()
        try:
            raw = await asyncio.to_thread(read_file, self.root / key, f"{self.root}/{key}")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return prototype.buffer.from_bytes(raw)

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        if byte_range is not None or not is_metadata_key(key):
            return await self._read(key, prototype, byte_range)
        with self._meta_lock:
            if key in self._meta:
                return self._meta[key]
        value = await self._read(key, prototype)
        if value is not None and key != "zarr.json":  # the root's own parse (metadata.py) names its faults
            check_metadata_document(self.root, key, value.to_bytes())
        with self._meta_lock:
            return self._meta.setdefault(key, value)

    async def exists(self, key: str) -> bool:
        if is_metadata_key(key):
            try:
                return await self.get(key) is not None
            except StoreError:  # there, but damaged: reading it says so
                return True
        return await super().exists(key)

    async def reread(self, key: str) -> Any:
        """``key`` read from disk again (and kept in place of what was kept)."""
        value = await self._read(key)
        with self._meta_lock:
            self._meta[key] = value
        return value
