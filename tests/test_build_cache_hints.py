"""Build cache entries and the context hash cache are hints: written atomically without fsync, and a
crash's leftovers (an empty or cut entry) read as a miss, never as an error."""

from __future__ import annotations

from pathlib import Path

from engine.build.cache import BuildCache, CacheEntry, step_key, write_hint_file
from engine.build.context import BuildContext
from engine.oci.digest import Digest
from engine.oci.models import Descriptor


def test_write_hint_file_replaces_whole_files_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "entry.json"
    write_hint_file(target, b"first")
    write_hint_file(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["entry.json"]


def test_entries_cut_by_a_crash_are_misses(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path / "cache")
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", Digest.from_bytes(b"layer"), 5)
    entry = CacheEntry(layer, Digest.from_bytes(b"tar"), "2024-01-01T00:00:00Z", "RUN true")
    key = step_key("", "RUN", "true")
    cache.put(key, entry)
    assert cache.get(key) == entry
    path = next((tmp_path / "cache").rglob("*.json"))
    for leftover in (b"", b'{"layer": {"mediaType"'):
        path.write_bytes(leftover)
        assert cache.get(key) is None
    assert list(cache.entries()) == []


def test_a_cut_context_hash_cache_is_ignored(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a")
    hashes = tmp_path / "hashes.json"
    first = BuildContext(ctx, hash_cache=hashes).content_hash(["a.txt"])
    assert hashes.exists()
    hashes.write_bytes(b'{"/x": [1, 2')
    assert BuildContext(ctx, hash_cache=hashes).content_hash(["a.txt"]) == first
