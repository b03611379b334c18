"""One function per parser that reads outside input.  Each takes raw bytes (what a file, a header or a
registry hands dockyard) and drives the parser, and the accessors callers use after it, the way the
engine does.  The property every harness checks: a target returns, or raises an EngineError subclass;
any other exception is a defect.  ``tar_layer`` also checks that nothing is written outside the
destination.  Used by tests/test_hardening_fuzz.py (hypothesis) and tests/fuzz/run_atheris.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from engine.errors import EngineError

CORPUS = Path(__file__).resolve().parent / "corpus"


def _text(data: bytes) -> str:
    # The engine reads text files strictly (a decode error is refused at the read); what reaches the
    # parsers is always str, so invalid bytes are replaced rather than fed through.
    return data.decode("utf-8", "replace")


def _lines(data: bytes, parts: int) -> list[str]:
    """Split an input into ``parts`` fields on NUL, so one byte string can carry several arguments."""
    fields = _text(data).split("\x00")
    return (fields + [""] * parts)[:parts]


def dockerfile(data: bytes) -> None:
    from engine.build.dockerfile import parse_dockerfile
    from engine.build.instructions import expand_instruction

    parsed = parse_dockerfile(_text(data))
    env = {"A": "a b", "EMPTY": "", "HOME": "/root"}
    for stage in parsed.stages:
        for instruction in stage.instructions:
            expand_instruction(instruction, env, escape=parsed.escape)


def shell_word(data: bytes) -> None:
    from engine.build.shell import process_word

    word, escape = _lines(data, 2)
    env = {"A": "a b", "EMPTY": "", "X": "x*y?[z]", "HOME": "/root"}
    escape = escape[:1] or "\\"
    process_word(word, env, escape=escape)
    process_word(word, env, escape=escape, skip_unset=True, raw_quotes=True)
    process_word(word, env, escape=escape, raw_escapes=True, skip_quotes=True)


def dockerignore(data: bytes) -> None:
    from engine.build.ignore import IgnoreMatcher, MatchInfo, read_ignore_file

    text, *paths = _text(data).split("\x00")
    matcher = IgnoreMatcher(read_ignore_file(text))
    for path in [*paths, "a", "a/b/c", ".", "..", "/x", "Dockerfile"]:
        matcher.matches(path)
        info = MatchInfo()
        parts = [p for p in path.split("/") if p]
        for i in range(len(parts)):
            _, info = matcher.matches_using_parents("/".join(parts[: i + 1]), info)
        matcher.excludes_dir_entirely(path)


def reference(data: bytes) -> None:
    from engine.oci.digest import Digest
    from engine.oci.platform import Platform
    from engine.oci.reference import Reference

    for text in _text(data).split("\x00"):
        for default_tag in (True, False):
            try:
                ref = Reference.parse(text, default_tag=default_tag)
            except EngineError:
                continue
            str(ref), ref.familiar, ref.api_registry, ref.is_localhost  # noqa: B018
            again = Reference.parse(str(ref), default_tag=default_tag)
            assert again == ref, f"{text!r} does not round-trip: {ref} -> {again}"
        try:
            digest = Digest.parse(text)
        except EngineError:
            pass
        else:
            assert Digest.parse(str(digest)) == digest
        with contextlib.suppress(EngineError):
            Platform.parse(text)


def _touch_manifest(doc: object) -> None:
    from engine.oci.models import Index, Manifest
    from engine.oci.platform import Platform

    if isinstance(doc, Manifest):
        doc.digest, doc.is_docker, doc.config, doc.layers  # noqa: B018
        doc.descriptor()
    elif isinstance(doc, Index):
        doc.digest, doc.manifests  # noqa: B018
        doc.select(Platform("linux", "amd64"))
        doc.select(Platform("linux", "arm", "v7"))


def oci_document(data: bytes) -> None:
    from engine.oci import mediatypes as mt
    from engine.oci.models import ImageConfig, Index, Manifest, parse_document
    from engine.oci.validate import validate_document

    hints = [None, mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST]
    hint = hints[data[0] % len(hints)] if data else None
    raw = data[1:]
    for attempt in (
        lambda: _touch_manifest(parse_document(raw, hint)),
        lambda: _touch_manifest(Manifest.parse(raw, hint)),
        lambda: _touch_manifest(Index.parse(raw, hint)),
    ):
        with contextlib.suppress(EngineError):
            attempt()
    for media_type in (mt.OCI_MANIFEST, mt.OCI_INDEX, mt.OCI_CONFIG):
        for strict in (True, False):
            with contextlib.suppress(EngineError):
                validate_document(media_type, raw, strict=strict)
    config = ImageConfig.parse(raw)
    for name in ("digest", "id", "config", "diff_ids", "history", "created", "author", "platform", "env",
                 "entrypoint", "cmd", "working_dir", "user", "exposed_ports", "volumes", "labels", "stop_signal",
                 "healthcheck"):
        getattr(config, name)


def challenge(data: bytes) -> None:
    """WWW-Authenticate header values, then the token request the engine makes from the picked one."""
    import httpx

    from engine.registry.auth import Authenticator
    from engine.registry.challenge import parse_headers, pick
    from engine.registry.credentials import Credential

    header, body = _lines(data, 2)
    challenges = parse_headers(header.split("\n"))
    chosen = pick(challenges)
    if chosen is None or chosen.scheme != "bearer":
        return

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body.encode())

    async def fetch() -> None:
        auth = Authenticator("registry.test", Credential("user", "pass"))
        auth.challenge = chosen
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            await auth.fetch_token(http, ("repository:a/b:pull",))

    asyncio.run(fetch())


_SEPARATORS = frozenset('()<>@,;:\\"/[]?={}')


def _responses(data: bytes) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    """Input -> a list of (status, headers, body): NUL-separated triples, headers one ``name: value`` a line."""
    fields = data.split(b"\x00")
    out = []
    for i in range(0, len(fields), 3):
        status_text, header_text, body = ([*fields[i:i + 3], b"", b""])[:3]
        digits = "".join(c for c in status_text.decode("latin-1") if c in "0123456789")[:3]
        status = int(digits) if digits and 100 <= int(digits) <= 599 else 200
        headers = []
        for line in header_text.decode("latin-1").splitlines():
            name, sep, value = line.partition(":")
            name = name.strip()
            if sep and name and all(33 <= ord(c) < 127 and c not in _SEPARATORS for c in name):
                headers.append((name, value.strip()))
        out.append((status, headers, body))
    return out or [(200, [], b"")]


def registry_response(data: bytes) -> None:
    """A registry that answers with the input: statuses, headers (Location, Retry-After, Link,
    WWW-Authenticate, Content-Length, Docker-Content-Digest) and bodies, for ping, manifest, blob and
    tag-list requests."""
    import httpx

    from engine.oci.digest import Digest
    from engine.registry.client import RegistryClient, parse_link_next, retry_after_seconds

    answers = _responses(data)
    for _, headers, _ in answers:
        for _name, value in headers:
            retry_after_seconds(value)
            with contextlib.suppress(EngineError):
                parse_link_next(value, "https://registry.test/v2/a/tags/list")
    served = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal served
        status, headers, body = answers[served % len(answers)]
        served += 1
        if served > 40:
            raise httpx.ConnectError("the fuzzed registry hung up", request=request)
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]  # as bytes, like the wire
        return httpx.Response(status, headers=raw, content=body, request=request)

    async def session() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            client = RegistryClient("registry.test", http=http, retries=0, backoff=0)
            for call in (
                lambda: client.get_manifest("a/b", "latest"),
                lambda: client.get_blob("a/b", Digest.from_bytes(b"x"), max_size=1 << 20),
                lambda: client.head_blob("a/b", Digest.from_bytes(b"x")),
            ):
                with contextlib.suppress(EngineError):
                    await call()
            try:
                async for _ in client.pages("https://registry.test/v2/a/b/tags/list", "tags",
                                            scopes=("repository:a/b:pull",)):
                    pass
            except EngineError:
                pass

    asyncio.run(session())


def ports(data: bytes) -> None:
    from engine.net.ports import PortMapping, parse_exposed, parse_publish, publish_all

    for spec in _text(data).split("\x00"):
        try:
            for mapping in parse_publish(spec):
                str(mapping), mapping.host_address  # noqa: B018
                assert PortMapping.from_dict(mapping.to_dict()) == mapping
        except EngineError:
            pass
        try:
            parse_exposed([spec])
            publish_all([spec])
        except EngineError:
            pass


def volume(data: bytes) -> None:
    from engine.runtime.options import parse_duration, parse_env_file, parse_memory, parse_ulimit, parse_volume

    text = _text(data)
    for parse in (parse_volume, parse_memory, parse_duration, parse_ulimit, parse_env_file):
        for spec in text.split("\x00"):
            with contextlib.suppress(EngineError):
                parse(spec)


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int, bytes]]:
    seen: dict[str, tuple[int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = here / name
            if path == skip:
                continue
            st = path.lstat()
            body = path.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(path).encode() \
                if stat.S_ISLNK(st.st_mode) else b""
            seen[str(path.relative_to(root))] = (st.st_mode, st.st_size, body)
    return seen


def extract_into_box(data: bytes, *, overlay: bool = False) -> Path:
    """Extract ``data`` as a layer into box/dest, where box also holds files an escape would change.

    Returns the box (caller removes it).  Raises AssertionError when anything outside dest changed, or
    when an absolute-path probe outside the box appeared.
    """
    from engine.archive.untar import extract_layer, extract_layer_for_overlay

    box = Path(tempfile.mkdtemp(prefix="fuzz-tar-"))
    dest = box / "dest"
    (box / "outside").mkdir()
    (box / "outside" / "victim").write_bytes(b"original")
    (box / "victim").write_bytes(b"original")
    os.symlink(box / "outside", box / "link-out")
    before = _snapshot(box, dest)
    extract = extract_layer_for_overlay if overlay else extract_layer
    try:
        extract(io.BytesIO(data), dest, max_bytes=8 << 20)
    except EngineError:
        pass
    finally:
        after = _snapshot(box, dest)
        if after != before:
            changed = sorted(set(before.items()) ^ set(after.items()))
            raise AssertionError(f"extraction wrote outside its destination: {changed[:5]}")
        for probe in ("/tmp/dockyard-fuzz-escape", "/dockyard-fuzz-escape"):
            if os.path.lexists(probe):
                raise AssertionError(f"extraction created {probe}")
    return box


def tar_layer(data: bytes) -> None:
    for overlay in (False, True):
        box = extract_into_box(data, overlay=overlay)
        shutil.rmtree(box, ignore_errors=True)


def image_archive(data: bytes) -> None:
    """``dockyard load`` of a hostile docker-archive / OCI archive: refused with an EngineError or loaded,
    and either way the store stays fsck-clean with no temp file left behind."""
    from engine.store.archives import load_archive
    from engine.store.layout import ImageStore

    box = Path(tempfile.mkdtemp(prefix="fuzz-load-"))
    try:
        store = ImageStore(box / "images")
        try:
            load_archive(store, io.BytesIO(data))
        finally:
            report = store.fsck()
            assert report.clean and not report.temp_files, f"load left the store unclean: {report}"
    finally:
        shutil.rmtree(box, ignore_errors=True)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "dockerfile": dockerfile,
    "shell_word": shell_word,
    "dockerignore": dockerignore,
    "reference": reference,
    "oci_document": oci_document,
    "challenge": challenge,
    "registry_response": registry_response,
    "ports": ports,
    "volume": volume,
    "tar_layer": tar_layer,
    "image_archive": image_archive,
}


ENGINE_MODULES = (
    "engine.build.dockerfile", "engine.build.instructions", "engine.build.shell", "engine.build.ignore",
    "engine.oci.digest", "engine.oci.reference", "engine.oci.platform", "engine.oci.models", "engine.oci.validate",
    "engine.registry.challenge", "engine.registry.auth", "engine.registry.client", "engine.registry.errors",
    "engine.net.ports", "engine.runtime.options",
    "engine.archive.untar", "engine.archive.reader", "engine.archive.compression", "engine.store.archives",
    "engine.store.archive_members",
)


def import_engine() -> None:
    """Import every module the targets reach (atheris instruments modules as they are first imported)."""
    import importlib

    for name in ENGINE_MODULES:
        importlib.import_module(name)


def run(target: str, data: bytes) -> None:
    """Run one input; only EngineError may escape (the harnesses treat anything else as a finding)."""
    with contextlib.suppress(EngineError):
        TARGETS[target](data)


def corpus(target: str) -> list[bytes]:
    directory = CORPUS / target
    if not directory.is_dir():
        return []
    return [p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()]
