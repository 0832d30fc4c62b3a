"""The one package over ``zarr_vectors``, ``zarr`` and ``obstore``: stores opened, read, written and copied.

Every other module talks to stores through the names below, so a change in
the upstream library (whose layout broke three times before 0.9) is mended
here, and no other module imports ``zarr_vectors``, ``zarr`` or ``obstore``
(``tests/test_structure.py`` checks).  One module per seam:

- ``errors``, ``info``: ``StoreError`` and its kinds; ``StoreInfo``, ``LevelInfo``, ``LevelData``, geometry kinds.
- ``metadata``: pure parsing of a root ``zarr.json`` (sizes capped, every field checked).
- ``access``: the one place a path or URL becomes an opened store, with capability flags (``Access``);
  ``remote`` (URLs, options, failures as sentences) and ``caching`` (the session cache) serve it.
- ``local``: the zarr store a local handle reads through; ``handle``: a store opened once per process.
- ``read``, ``chunks``, ``polyline_box``, ``rows``, ``links``: levels, boxes, chunk counts, row-order
  reads and the drill reader.
- ``categorical``: text vertex attributes, dictionary-encoded as zarr-vectors stores them.
- ``write``: new stores (all or nothing) and attribute writes; ``session`` and ``journal``: the
  crash-safe write session, lock and recovery; ``levels``, ``repair``: level removal and repair.
- ``building``: the upstream builder and the vectorized engine's level I/O.
- ``copying``: planning a copy of a store from its metadata (``download``).
"""

from __future__ import annotations

from . import journal, remote
from .access import (
    Access,
    address,
    is_remote,
    name_of,
    plain,
    refuse_remote,
    remote_stats,
    resolve,
    shown,
    writable,
)
from .building import (
    LevelLayout,
    NewLevel,
    coarsen_methods,
    coarsen_one_level,
    finalize_links,
    level_layout,
    level_object_rows,
    object_slots,
    read_object_attribute_table,
    register_selection_strategy,
    registered_selection_strategies,
    selection_strategy,
    stamp_link_settings,
    upstream_build_pyramid,
    write_new_level,
    write_parent_links,
)
from .categorical import MISSING_CODE, is_text, raw_text_attributes, text_attributes, text_codes
from .chunks import check_level_chunks, chunk_vertex_counts, level_rows, missing_chunks
from .copying import COPY_CONCURRENCY, CopyPlan, StoreFiles, copy_plan, finish_copy
from .errors import (
    RemoteStoreError,
    StoreBusy,
    StoreError,
    data_nbytes,
    disk_full,
    full_disk_cause,
    reports_full_disk,
    reports_full_disk_session,
)
from .handle import (
    RACY_S,
    Handle,
    forget,
    forget_remote,
    handle,
    is_store,
    open_info,
    read_root_json,
    signature,
    validate,
)
from .info import (
    ALL_KINDS,
    GRAPH_KINDS,
    LINE_KINDS,
    MESH_KINDS,
    POINT_KINDS,
    POLYLINE_KINDS,
    LevelData,
    LevelInfo,
    StoreInfo,
    split_parts,
)
from .levels import level_nbytes, link_deltas, list_levels, remove_level, remove_link_family
from .links import LevelReader, chunks_present, fragment_owners, reader_of, vertex_owners
from .metadata import MAX_METADATA_BYTES, STORE_SUFFIXES, declared_levels, has_store_suffix
from .polyline_box import PolylineIndex, clip_parts, polyline_index, read_polyline_box
from .read import estimate_drawn_vertices, read_level, read_point_chunks
from .remote import redact
from .repair import repair
from .rows import (
    group_batches,
    iter_rows,
    level_attribute_names,
    pack_rows,
    parent_map,
    read_row_batch,
    read_rows,
    row_batches,
    vertex_attribute_names,
)
from .session import (
    WRITABLE_ZV_SERIES,
    check_writable_format,
    interrupted_write,
    recover,
    recover_if_interrupted,
    unwritable,
    write_session,
)
from .write import (
    atomic_store,
    auto_chunk_shape,
    check_new_target,
    ctrl_c_held,
    discard,
    register_level_arrays,
    remove_stale_temps,
    temp_sibling,
    write_graph_store,
    write_mesh_store,
    write_point_cloud,
    write_polyline_store,
    write_vertex_attributes,
)

# A full disk, wherever the store is written through these names, is one StoreError naming the path and the free
# space (errors.disk_full), never a bare "[Errno 28]". Modules inside this package that write call them too.
_UNDONE = "The change was undone; the store is as it was."
_NOT_WRITTEN = "Nothing was written (the partial copy was removed)."
write_session = reports_full_disk_session(write_session, outcome=_UNDONE)
atomic_store = reports_full_disk_session(atomic_store, outcome=_NOT_WRITTEN)
write_point_cloud = reports_full_disk("path", outcome=_NOT_WRITTEN, needed=data_nbytes)(write_point_cloud)
write_polyline_store = reports_full_disk("path", outcome=_NOT_WRITTEN, needed=data_nbytes)(write_polyline_store)
write_graph_store = reports_full_disk("path", outcome=_NOT_WRITTEN, needed=data_nbytes)(write_graph_store)
write_mesh_store = reports_full_disk("path", outcome=_NOT_WRITTEN, needed=data_nbytes)(write_mesh_store)
repair = reports_full_disk("path", outcome=_UNDONE)(repair)
recover = reports_full_disk("path", outcome="The interrupted change is still recorded; recovery runs again next time.")(
    recover
)

# zarr's, obstore's and this plugin's loggers redact URL credentials from every record (zarr's DEBUG log
# names each group's store, and obstore's spelling of it holds the user, password and signed query)
remote.guard_logs()

__all__ = [
    "ALL_KINDS",
    "COPY_CONCURRENCY",
    "GRAPH_KINDS",
    "LINE_KINDS",
    "MAX_METADATA_BYTES",
    "MESH_KINDS",
    "MISSING_CODE",
    "POINT_KINDS",
    "POLYLINE_KINDS",
    "RACY_S",
    "STORE_SUFFIXES",
    "WRITABLE_ZV_SERIES",
    "Access",
    "CopyPlan",
    "Handle",
    "LevelData",
    "LevelInfo",
    "LevelLayout",
    "LevelReader",
    "NewLevel",
    "PolylineIndex",
    "RemoteStoreError",
    "StoreBusy",
    "StoreError",
    "StoreFiles",
    "StoreInfo",
    "address",
    "atomic_store",
    "auto_chunk_shape",
    "check_level_chunks",
    "check_new_target",
    "check_writable_format",
    "chunk_vertex_counts",
    "chunks_present",
    "clip_parts",
    "coarsen_methods",
    "coarsen_one_level",
    "copy_plan",
    "ctrl_c_held",
    "data_nbytes",
    "discard",
    "declared_levels",
    "disk_full",
    "full_disk_cause",
    "estimate_drawn_vertices",
    "finalize_links",
    "finish_copy",
    "forget",
    "forget_remote",
    "fragment_owners",
    "group_batches",
    "handle",
    "has_store_suffix",
    "interrupted_write",
    "is_remote",
    "is_store",
    "is_text",
    "iter_rows",
    "journal",
    "level_attribute_names",
    "level_layout",
    "level_nbytes",
    "level_object_rows",
    "level_rows",
    "link_deltas",
    "list_levels",
    "missing_chunks",
    "name_of",
    "object_slots",
    "open_info",
    "pack_rows",
    "parent_map",
    "plain",
    "polyline_index",
    "raw_text_attributes",
    "read_level",
    "read_object_attribute_table",
    "read_point_chunks",
    "read_polyline_box",
    "read_root_json",
    "read_row_batch",
    "read_rows",
    "reader_of",
    "recover",
    "recover_if_interrupted",
    "redact",
    "refuse_remote",
    "register_level_arrays",
    "register_selection_strategy",
    "registered_selection_strategies",
    "remote",
    "remote_stats",
    "remove_level",
    "remove_link_family",
    "remove_stale_temps",
    "repair",
    "reports_full_disk",
    "resolve",
    "row_batches",
    "selection_strategy",
    "shown",
    "signature",
    "split_parts",
    "stamp_link_settings",
    "temp_sibling",
    "text_attributes",
    "text_codes",
    "unwritable",
    "writable",
    "upstream_build_pyramid",
    "validate",
    "vertex_attribute_names",
    "vertex_owners",
    "write_graph_store",
    "write_mesh_store",
    "write_new_level",
    "write_parent_links",
    "write_point_cloud",
    "write_polyline_store",
    "write_session",
    "write_vertex_attributes",
]
