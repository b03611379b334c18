"""The build cache: step key -> what the step produced (a layer, or nothing) and when.

A key chains the parent's key with everything the step depends on (see ``step_key``), so a hit
means the whole chain up to this step matches. Entries are small JSON files under
``$DOCKYARD_ROOT/cache/build/``, written atomically; the layer blobs they name are gc roots.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidManifestError
from engine.oci.digest import Digest
from engine.oci.models import Descriptor


def write_hint_file(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically (temp file + rename), without fsync.

    For files that are only hints (build cache entries, the context hash cache): a crash may lose an
    entry or leave it empty, and readers take anything unreadable for a miss, so durability would buy
    nothing but a journal commit per step.  Blobs, manifests and the index keep ``atomic_write``.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def step_key(parent: str, *parts: Any) -> str:
    """sha256 over the parent key and the step's canonical inputs."""
    payload = json.dumps([parent, *parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CacheEntry:
    layer: Descriptor | None
    diff_id: Digest | None
    created: str
    created_by: str


class BuildCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> CacheEntry | None:
        try:
            data = json.loads(self._path(key).read_text())
            layer = Descriptor.from_json(data["layer"]) if data.get("layer") else None
            diff_id = Digest.parse(data["diff_id"]) if data.get("diff_id") else None
            return CacheEntry(layer, diff_id, str(data["created"]), str(data.get("created_by", "")))
        except (OSError, ValueError, KeyError, TypeError, InvalidManifestError):
            return None

    def put(self, key: str, entry: CacheEntry) -> None:
        path = self._path(key)
        data = {
            "layer": entry.layer.to_json() if entry.layer else None,
            "diff_id": str(entry.diff_id) if entry.diff_id else None,
            "created": entry.created,
            "created_by": entry.created_by,
        }
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs speed
            path.parent.mkdir(parents=True, exist_ok=True)
            write_hint_file(path, json.dumps(data).encode())

    def entries(self) -> Iterator[CacheEntry]:
        if not self.directory.is_dir():
            return
        for sub in os.scandir(self.directory):
            if not sub.is_dir():
                continue
            for item in os.scandir(sub.path):
                if item.name.endswith(".json"):
                    entry = self.get(item.name[:-5])
                    if entry is not None:
                        yield entry

    def layer_digests(self) -> set[Digest]:
        """The blobs the cache needs (gc keeps them)."""
        return {e.layer.digest for e in self.entries() if e.layer is not None}

    def prune(self) -> int:
        removed = 0
        if not self.directory.is_dir():
            return 0
        for sub in os.scandir(self.directory):
            if sub.is_dir():
                for item in os.scandir(sub.path):
                    with contextlib.suppress(OSError):
                        os.unlink(item.path)
                        removed += 1
        return removed
