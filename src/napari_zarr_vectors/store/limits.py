"""Bounded reads: how many bytes a metadata document or a chunk may have, checked before reading or decoding.

A store or a server says how big things are, and nothing it says is
trusted.  Every file is checked against a cap before its bytes are read
(a local file's size from ``fstat``, a server's from its Content-Length,
and counted again while reading), and every chunk's encoded header is
checked against what it may decode to before anything is allocated:

- a metadata document (``zarr.json``, a folder index page): at most
  ``max_metadata_bytes()`` (64 MiB; ``$NAPARI_ZARR_VECTORS_MAX_METADATA_BYTES``);
- a chunk file: at most ``max_chunk_bytes()`` (512 MiB; ``$NAPARI_ZARR_VECTORS_MAX_CHUNK_BYTES``);
- a variable-length chunk (every zarr-vectors array): its header's item
  count must fit in its bytes (4 bytes a length each) and in the chunk's
  declared shape, so a 3 kB garbage chunk cannot ask for a 14.6 GiB array;
- a zstd, blosc or gzip chunk: the size its frame declares (gzip: the
  bytes it inflates to, counted while inflating) must not exceed the
  chunk's declared size (shape times item size, for a fixed-size data
  type) or the chunk cap.

``install()`` puts the decode checks into zarr's codecs and zarr-vectors'
direct local reader, the two places chunk bytes are decoded for every
store this plugin opens (local, remote, copies): it runs once, when the
``store`` package is imported.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StoreError

#: Most bytes a metadata document may have (a store's are kB; a level listing 1M chunks ~15 MB).
DEFAULT_MAX_METADATA_BYTES = 64 * 2**20
#: Most bytes a chunk file may have, encoded or decoded.
DEFAULT_MAX_CHUNK_BYTES = 512 * 2**20
METADATA_ENV = "NAPARI_ZARR_VECTORS_MAX_METADATA_BYTES"
CHUNK_ENV = "NAPARI_ZARR_VECTORS_MAX_CHUNK_BYTES"


class TooLargeError(StoreError):
    """A file, or what a chunk would decode to, is larger than its cap; nothing of it was kept."""


class CorruptChunkError(StoreError):
    """A chunk's encoded header contradicts its own size or its array's metadata: refused before decoding."""


def _env_bytes(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    try:
        value = int(float(raw)) if raw else default
    except ValueError:
        return default
    return max(1024, value)


def max_metadata_bytes() -> int:
    """The most bytes a metadata document (zarr.json, an index page) may have (``$NAPARI_ZARR_VECTORS_MAX_...``)."""
    return _env_bytes(METADATA_ENV, DEFAULT_MAX_METADATA_BYTES)


def max_chunk_bytes() -> int:
    """The most bytes a chunk may have, stored or decoded (``$NAPARI_ZARR_VECTORS_MAX_CHUNK_BYTES``)."""
    return _env_bytes(CHUNK_ENV, DEFAULT_MAX_CHUNK_BYTES)


def is_metadata_document(key: str) -> bool:
    """Metadata (zarr v3 and v2 names) and folder index pages (a key ending in ``/``)."""
    return key.endswith("/") or key.rsplit("/", 1)[-1] in ("zarr.json", ".zgroup", ".zattrs", ".zarray", ".zmetadata")


def limit_for(key: str) -> int:
    """The cap of the file ``key``: the metadata cap for a metadata document, else the chunk cap."""
    return max_metadata_bytes() if is_metadata_document(key) else max_chunk_bytes()


def _size(n: int) -> str:
    return f"{n:,} bytes ({n / 2**20:,.1f} MiB)" if n >= 2**20 else f"{n:,} bytes"


def too_large(where: str, size: int | None, limit: int, key: str = "", *, declared: bool = True) -> TooLargeError:
    """The error for the file ``where`` of ``size`` bytes (None: more than read) over ``limit``."""
    metadata = is_metadata_document(key or where)
    kind, env = ("metadata document", METADATA_ENV) if metadata else ("chunk", CHUNK_ENV)
    amount = f"is {_size(size)}" if size is not None else f"is more than {_size(limit)}"
    said = " (as its size says)" if declared and size is not None else ""
    return TooLargeError(
        f"'{where}' {amount}{said}, more than a {kind} may have here ({_size(limit)}): it was refused before "
        f"being read, and nothing of it was kept. A Zarr Vectors store's {kind}s are far smaller, so the file is "
        f"damaged or the server is not serving the store. If the store really holds files this large, raise the "
        f"cap with ${env}=BYTES."
    )


def read_file(path: str | os.PathLike[str], where: str | None = None, limit: int | None = None) -> bytes:
    """A local file's bytes, refused (``TooLargeError``) when it has more than ``limit`` (default: its key's cap).

    The size is taken from the open file (``fstat``) before reading, and
    at most ``limit + 1`` bytes are read, so a file that grows meanwhile
    is refused too.  OSErrors (no such file) pass through.
    """
    where = where or str(path)
    limit = limit_for(Path(path).as_posix()) if limit is None else limit
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise too_large(where, size, limit, Path(path).as_posix())
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise too_large(where, None, limit, Path(path).as_posix(), declared=False)
    return data


# ---------------------------------------------------------------- decoding, checked before it allocates


def _flat_bytes(buf: Any) -> memoryview:
    """Any buffer-like chunk (bytes, a numpy array, a zarr Buffer) as one flat memoryview of bytes."""
    if hasattr(buf, "as_numpy_array"):
        buf = buf.as_numpy_array()
    arr = np.ascontiguousarray(np.asarray(memoryview(buf) if not isinstance(buf, np.ndarray) else buf))
    return memoryview(arr.reshape(-1).view(np.uint8))


def _fixed_size(chunk_spec: Any) -> int | None:
    """Bytes a chunk of ``chunk_spec`` decodes to for a fixed-size data type; None for variable-length ones."""
    try:
        dtype = np.dtype(chunk_spec.dtype.to_native_dtype())
    except Exception:  # noqa: BLE001 - a data type zarr knows and numpy does not: no declared size
        return None
    if dtype.hasobject or dtype.itemsize == 0:
        return None
    return int(np.prod(chunk_spec.shape, dtype=np.int64)) * dtype.itemsize


def _declared_limit(chunk_spec: Any) -> tuple[int, str]:
    """The most bytes a chunk of ``chunk_spec`` may decode to, and how that was decided (for messages)."""
    fixed = _fixed_size(chunk_spec) if chunk_spec is not None else None
    cap = max_chunk_bytes()
    if fixed is not None and fixed <= cap:
        return fixed, f"its array declares {_size(fixed)} a chunk (shape {tuple(chunk_spec.shape)}, {chunk_spec.dtype})"
    return cap, f"the chunk cap is {_size(cap)} (${CHUNK_ENV})"


def check_vlen_header(buf: Any, items: int | None = None) -> None:
    """A variable-length chunk's item count fits its bytes (and equals ``items``, the chunk's cells, when known).

    numcodecs allocates an array of the header's item count before it
    reads an item; each item costs at least its 4-byte length.
    """
    view = _flat_bytes(buf)
    if len(view) < 4:
        raise CorruptChunkError(
            f"A chunk is damaged: {len(view)} bytes, too short for its header. Nothing was decoded."
        )
    (count,) = struct.unpack_from("<I", view, 0)
    if 4 + 4 * count > len(view) or (items is not None and count != items):
        expected = f" (its array's chunks hold {items:,})" if items is not None else ""
        raise CorruptChunkError(
            f"A chunk is damaged: its header declares {count:,} values in {len(view):,} bytes{expected}. "
            "It was refused before decoding; restore the store's files from a copy."
        )


def _zstd_frame_size(view: memoryview) -> int | None:
    """The content size the first zstd frame declares (None: it declares none); ValueError if it is no frame."""
    if len(view) < 5 or struct.unpack_from("<I", view, 0)[0] != 0xFD2FB528:
        raise ValueError("not a zstd frame")
    desc = view[4]
    fcs_flag, single, dict_flag = desc >> 6, (desc >> 5) & 1, desc & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    width = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if width == 0:
        return None
    if len(view) < pos + width:
        raise ValueError("truncated zstd frame header")
    value = int.from_bytes(bytes(view[pos : pos + width]), "little")
    return value + 256 if width == 2 else value


def _check_declared(declared: int | None, chunk_spec: Any, codec: str) -> None:
    limit, why = _declared_limit(chunk_spec)
    if declared is None:
        raise CorruptChunkError(
            f"A {codec} chunk does not declare the size it decompresses to, so it cannot be checked before "
            "decompressing; it was refused. Chunks zarr writes always declare it: the chunk is damaged or was "
            "not written by zarr."
        )
    if declared > limit:
        raise CorruptChunkError(
            f"A {codec} chunk declares {_size(declared)} once decompressed, but {why}. It was refused before "
            "decompressing: the chunk is damaged, or (if the store really has chunks this large) raise "
            f"${CHUNK_ENV}."
        )


def check_zstd(buf: Any, chunk_spec: Any = None) -> None:
    """A zstd chunk's declared content size is within what its chunk may hold."""
    try:
        declared = _zstd_frame_size(_flat_bytes(buf))
    except ValueError as exc:
        raise CorruptChunkError(f"A zstd chunk is damaged ({exc}); it was refused before decompressing.") from None
    _check_declared(declared, chunk_spec, "zstd")


def check_blosc(buf: Any, chunk_spec: Any = None) -> None:
    """A blosc chunk's header (its uncompressed size, bytes 4-8) is within what its chunk may hold."""
    view = _flat_bytes(buf)
    if len(view) < 16:
        raise CorruptChunkError("A blosc chunk is damaged (shorter than its header); it was refused before decoding.")
    _check_declared(struct.unpack_from("<I", view, 4)[0], chunk_spec, "blosc")


def gunzip_bounded(buf: Any, chunk_spec: Any = None) -> bytes:
    """A gzip chunk inflated, stopping (refused) once it passes what its chunk may hold (gzip declares no size)."""
    limit, why = _declared_limit(chunk_spec)
    data = bytes(_flat_bytes(buf))
    out: list[bytes] = []
    total = 0
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            piece = inflater.decompress(data, limit + 1 - total)
        except zlib.error as exc:
            raise CorruptChunkError(f"A gzip chunk is damaged ({exc}).") from None
        total += len(piece)
        out.append(piece)
        if total > limit or inflater.unconsumed_tail:
            raise CorruptChunkError(
                f"A gzip chunk inflates to more than {_size(limit)}, but {why}. It was refused while inflating: "
                f"the chunk is damaged, or (if the store really has chunks this large) raise ${CHUNK_ENV}."
            )
        if not inflater.eof:
            raise CorruptChunkError("A gzip chunk is damaged (it ends before its data does).")
        data = inflater.unused_data  # a further gzip member, as gzip.decompress reads them too
    return b"".join(out)


# ---------------------------------------------------------------- installed into zarr and zarr-vectors once

_INSTALLED = False


def install() -> None:
    """Put the checks where zarr and zarr-vectors decode chunks (idempotent).

    zarr's vlen codecs and zarr-vectors' direct local reader share
    numcodecs codec objects held in module globals: those become checked
    subclasses.  zarr's zstd, blosc and gzip codecs get their synchronous
    decode (which the asynchronous one calls) wrapped.  zarr-vectors'
    direct reader of local chunk files reads through ``read_file``.
    """
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    from numcodecs.vlen import VLenBytes, VLenUTF8
    from zarr.codecs import blosc, gzip, vlen_utf8, zstd
    from zarr.core.buffer.cpu import as_numpy_array_wrapper

    class CheckedVLenBytes(VLenBytes):
        """numcodecs' VLenBytes, refusing a header whose item count its bytes cannot hold."""

        def decode(self, buf: Any, out: Any = None) -> Any:
            check_vlen_header(buf)
            return super().decode(buf, out)

    class CheckedVLenUTF8(VLenUTF8):
        """numcodecs' VLenUTF8, refusing a header whose item count its bytes cannot hold."""

        def decode(self, buf: Any, out: Any = None) -> Any:
            check_vlen_header(buf)
            return super().decode(buf, out)

    vlen_utf8._vlen_bytes_codec = CheckedVLenBytes()
    vlen_utf8._vlen_utf8_codec = CheckedVLenUTF8()

    for cls in (vlen_utf8.VLenBytesCodec, vlen_utf8.VLenUTF8Codec):
        original = cls._decode_sync

        def checked(self: Any, chunk_bytes: Any, chunk_spec: Any, _original: Any = original) -> Any:
            check_vlen_header(chunk_bytes, int(np.prod(chunk_spec.shape, dtype=np.int64)))
            return _original(self, chunk_bytes, chunk_spec)

        cls._decode_sync = checked

    def wrap(cls: Any, check: Any) -> None:
        original = cls._decode_sync

        def checked(self: Any, chunk_bytes: Any, chunk_spec: Any) -> Any:
            check(chunk_bytes, chunk_spec)
            return original(self, chunk_bytes, chunk_spec)

        cls._decode_sync = checked

    wrap(zstd.ZstdCodec, check_zstd)
    wrap(blosc.BloscCodec, check_blosc)

    def gzip_decode(self: Any, chunk_bytes: Any, chunk_spec: Any) -> Any:
        return as_numpy_array_wrapper(lambda b: gunzip_bounded(b, chunk_spec), chunk_bytes, chunk_spec.prototype)

    gzip.GzipCodec._decode_sync = gzip_decode

    try:
        from zarr_vectors.core import _batch_reader
    except ImportError:  # pragma: no cover - a zarr-vectors without the direct reader reads through zarr
        return
    if hasattr(_batch_reader, "_VLEN_BYTES"):
        _batch_reader._VLEN_BYTES = CheckedVLenBytes()
    if hasattr(_batch_reader, "_read_file"):

        def read_cell(path: str) -> bytes | None:
            try:
                return read_file(path, limit=max_chunk_bytes())
            except OSError:
                return None  # as upstream: no stored object, the fill value

        _batch_reader._read_file = read_cell
