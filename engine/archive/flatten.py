"""Squash an image's layers into one tar of the final filesystem (``dockyard export``), without disk.

Two passes over the layer streams, nothing extracted.  Pass 1 reads headers only and builds the final
state in memory (:class:`FsTree`): which entry of which layer provides each path.  Pass 2 reads the layers
again bottom-up and copies exactly those entries, in the archive's own order, so hardlink targets always
precede their links; a directory's final header is written before its first child even when the header
comes from a higher layer.  A hardlink whose original was later overwritten or deleted becomes a regular
file carrying the original's data (kept aside in a spooled temp file when pass 2 meets it).
"""

from __future__ import annotations

import contextlib
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from engine.archive.compression import CHUNK
from engine.archive.fstree import FsTree, Key, Node
from engine.archive.reader import BLOCK, LayerReader
from engine.errors import ArchiveError, from_os_error

_SPOOL_IN_MEMORY = 8 << 20


@dataclass(frozen=True, slots=True)
class FlattenStats:
    entries: int
    layers: int
    size: int  # bytes written to ``out``


@dataclass(slots=True)
class _Plan:
    visible: dict[Key, str]  # entry -> the path it provides in the final filesystem
    dirs: dict[str, tarfile.TarInfo]  # final directory headers by path
    spool: set[Key]  # invisible originals that visible hardlinks need the data of
    origins: dict[Key, Key]  # visible hardlink -> original entry


def flatten_layers(
    layer_streams: Sequence[BinaryIO], out: BinaryIO, *, max_bytes: int | None = None
) -> FlattenStats:
    """Write one uncompressed tar of the filesystem the layers (bottom-up, as in the manifest) produce.

    The streams must be seekable (store blobs are files): each is read twice.
    """
    starts = []
    for stream in layer_streams:
        try:
            starts.append(stream.tell())
        except (OSError, AttributeError) as exc:
            raise ArchiveError("flatten_layers needs seekable layer streams (it reads each twice)") from exc
    plan = _plan(layer_streams, max_bytes)
    with contextlib.ExitStack() as spools:
        writer = _Writer(out, plan, spools)
        for index, stream in enumerate(layer_streams):
            try:
                stream.seek(starts[index])
            except OSError as exc:
                raise ArchiveError(f"cannot rewind layer {index}: {exc}") from exc
            writer.layer(index, stream, max_bytes)
        writer.close()
    return FlattenStats(entries=writer.entries, layers=len(layer_streams), size=writer.size)


def _plan(layer_streams: Sequence[BinaryIO], max_bytes: int | None) -> _Plan:
    tree = FsTree()
    for index, stream in enumerate(layer_streams):
        with LayerReader(stream, max_bytes=max_bytes) as reader:
            for ordinal, member in enumerate(reader):
                tree.apply(member, index, ordinal)
            reader.finish()
    plan = _Plan({}, {}, set(), {})
    links: list[Node] = []
    for path, node in tree.walk():
        if node.implied:
            continue
        plan.visible[node.key] = path
        if node.info is not None:
            plan.dirs[path] = node.info
        if node.origin is not None:
            links.append(node)
    for node in links:
        assert node.origin is not None
        plan.origins[node.key] = node.origin
        if node.origin not in plan.visible:
            plan.spool.add(node.origin)
    return plan


class _Writer:
    def __init__(self, out: BinaryIO, plan: _Plan, spools: contextlib.ExitStack) -> None:
        self._out = out
        self._spools = spools
        self._plan = plan
        self._emitted_dirs: set[str] = set()
        self._spooled: dict[Key, tuple[tarfile.TarInfo, tempfile.SpooledTemporaryFile[bytes] | None]] = {}
        self._materialized: dict[Key, str] = {}  # invisible original -> path that now carries its data
        self.entries = 0
        self.size = 0

    def _write(self, data: bytes | memoryview) -> None:
        try:
            self._out.write(data)
        except OSError as exc:
            raise from_os_error(exc, "writing the flattened archive") from exc
        self.size += len(data)

    def _header(self, info: tarfile.TarInfo, name: str) -> None:
        copy = info.replace(name=name, deep=False)
        if copy.pax_headers:
            copy.pax_headers = {k: v for k, v in copy.pax_headers.items() if k not in ("path", "linkpath")}
        self._write(copy.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self.entries += 1

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self._write(bytes(BLOCK - size % BLOCK))

    def _parents(self, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in self._emitted_dirs:
                continue
            info = self._plan.dirs.get(parent)
            if info is not None:
                self._header(info, parent)
                self._emitted_dirs.add(parent)

    def layer(self, index: int, stream: BinaryIO, max_bytes: int | None) -> None:
        plan = self._plan
        with LayerReader(stream, max_bytes=max_bytes) as reader:
            for ordinal, member in enumerate(reader):
                key = (index, ordinal)
                if key in plan.spool:
                    self._spool(key, member, reader)
                path = plan.visible.get(key)
                if path is None:
                    continue
                self._parents(path)
                if member.isdir():
                    if path not in self._emitted_dirs:
                        self._header(member, path)
                        self._emitted_dirs.add(path)
                elif key in plan.origins:
                    self._hardlink(path, member, plan.origins[key])
                else:
                    self._header(member, path)
                    for chunk in reader.chunks(member) if member.isreg() else ():
                        self._write(chunk)
                    if member.isreg():
                        self._pad(member.size)
            reader.finish()

    def _spool(self, key: Key, member: tarfile.TarInfo, reader: LayerReader) -> None:
        if not member.isreg():
            self._spooled[key] = (member, None)
            return
        spool = self._spools.enter_context(tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY))  # noqa: SIM115
        try:
            for chunk in reader.chunks(member):
                spool.write(chunk)
        except OSError as exc:
            raise from_os_error(exc, "spooling a hardlinked file") from exc
        self._spooled[key] = (member, spool)

    def _from_spool(self, key: Key, path: str) -> None:
        info, spool = self._spooled[key]
        self._header(info, path)
        if spool is not None:
            spool.seek(0)
            while data := spool.read(CHUNK):
                self._write(data)
            self._pad(info.size)

    def _hardlink(self, path: str, member: tarfile.TarInfo, origin: Key) -> None:
        target = self._plan.visible.get(origin) or self._materialized.get(origin)
        if target is None:
            if origin not in self._spooled:
                raise ArchiveError(f"hardlink {member.name!r}: its original is missing from the layers")
            self._from_spool(origin, path)  # the original is gone: this link carries the data now
            self._materialized[origin] = path
            return
        link = member.replace(linkname=target, deep=False)
        if link.pax_headers:
            link.pax_headers = {k: v for k, v in link.pax_headers.items() if k != "linkpath"}
        self._header(link, path)

    def close(self) -> None:
        self._write(bytes(2 * BLOCK))
        try:
            self._out.flush()
        except OSError as exc:
            raise from_os_error(exc, "writing the flattened archive") from exc


__all__ = ["FlattenStats", "flatten_layers"]
