"""Tar layers: safe extraction, deterministic writing, whiteouts, compression, flattening, change lists.

Everything here raises only EngineError subclasses (ArchiveError, UnsafeArchiveError,
DigestMismatchError, NoSpaceError, StoreError).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each name loads its module on first use (PEP 562): importing one submodule, say layer_writer for a
# build step, no longer pulls in change lists, flattening and extraction.
_EXPORTS = {
    "Change": "engine.archive.changes",
    "Compression": "engine.archive.compression",
    "ExtractStats": "engine.archive.untar",
    "FlattenStats": "engine.archive.flatten",
    "ImageChanges": "engine.archive.changes",
    "Inefficiency": "engine.archive.changes",
    "LayerChanges": "engine.archive.changes",
    "LayerItem": "engine.archive.layer_writer",
    "LayerReader": "engine.archive.reader",
    "LayerResult": "engine.archive.layer_writer",
    "compression_for_media_type": "engine.archive.compression",
    "detect_compression": "engine.archive.compression",
    "directory_items": "engine.archive.layer_writer",
    "extract_layer": "engine.archive.untar",
    "extract_layer_for_overlay": "engine.archive.untar",
    "file_list_items": "engine.archive.layer_writer",
    "flatten_layers": "engine.archive.flatten",
    "image_layer_changes": "engine.archive.changes",
    "list_layer_changes": "engine.archive.changes",
    "media_type_for": "engine.archive.compression",
    "new_compressor": "engine.archive.compression",
    "open_decompressed": "engine.archive.compression",
    "overlay_upper_items": "engine.archive.layer_writer",
    "write_layer": "engine.archive.layer_writer",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


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
