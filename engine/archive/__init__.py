"""Tar layers: safe extraction, deterministic writing, whiteouts, compression, flattening, change lists.

Everything here raises only EngineError subclasses (ArchiveError, UnsafeArchiveError,
DigestMismatchError, NoSpaceError, StoreError).
"""

from __future__ import annotations

from engine.archive.changes import (
    Change,
    ImageChanges,
    Inefficiency,
    LayerChanges,
    image_layer_changes,
    list_layer_changes,
)
from engine.archive.compression import (
    Compression,
    compression_for_media_type,
    detect_compression,
    media_type_for,
    new_compressor,
    open_decompressed,
)
from engine.archive.flatten import FlattenStats, flatten_layers
from engine.archive.layer_writer import (
    LayerItem,
    LayerResult,
    directory_items,
    file_list_items,
    overlay_upper_items,
    write_layer,
)
from engine.archive.reader import LayerReader
from engine.archive.untar import ExtractStats, extract_layer, extract_layer_for_overlay

__all__ = [
    "Change",
    "Compression",
    "ExtractStats",
    "FlattenStats",
    "ImageChanges",
    "Inefficiency",
    "LayerChanges",
    "LayerItem",
    "LayerReader",
    "LayerResult",
    "compression_for_media_type",
    "detect_compression",
    "directory_items",
    "extract_layer",
    "extract_layer_for_overlay",
    "file_list_items",
    "flatten_layers",
    "image_layer_changes",
    "list_layer_changes",
    "media_type_for",
    "new_compressor",
    "open_decompressed",
    "overlay_upper_items",
    "write_layer",
]
