"""Hypothesis strategies for the fuzz targets: corpus mutation with per-target tokens, plus structure-aware
generators for tar layers and OCI JSON documents."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.targets import corpus

TOKENS: dict[str, list[bytes]] = {
    "dockerfile": [b"FROM ", b"RUN ", b"COPY ", b"ADD ", b"ARG ", b"ENV ", b"LABEL ", b"ONBUILD ", b"HEALTHCHECK ",
                   b"CMD ", b"SHELL ", b"EXPOSE ", b"USER ", b"VOLUME ", b"WORKDIR ", b"STOPSIGNAL ", b"MAINTAINER ",
                   b"ENTRYPOINT ", b"\\\n", b"`\n", b"\n", b"<<EOF", b"<<-\"EOF\"", b"EOF\n", b"# escape=`\n",
                   b"# syntax=x\n", b"${", b"}", b"$", b"[", b"]", b"\"", b"'", b"=", b"--from=", b"--mount=",
                   b"--chmod=", b"--interval=", b"AS ", b"NONE", b"\t", b"\r\n", b"\x00", b"\xff", b"#", b":-", b":?"],
    "shell_word": [b"$", b"${", b"}", b":-", b":+", b":?", b"-", b"+", b"?", b"%", b"%%", b"#", b"##", b"/", b"//",
                   b"'", b"\"", b"\\", b"`", b" ", b"A", b"EMPTY", b"X", b"*", b"[", b"]", b"\x00", b"\x00`"],
    "dockerignore": [b"*", b"**", b"?", b"[", b"]", b"[!", b"^", b"-", b"\\", b"!", b"/", b"../", b"./", b"\n",
                     b"#", b" ", b"\x00", b"\x00a/b", b"{", b"}", b"."],
    "reference": [b":", b"@", b"/", b"sha256:", b"sha512:", b"a" * 64, b"localhost", b"[::1]", b":5000", b"..",
                  b"__", b"-", b"\x00", b"docker.io/", b"library/", b"linux", b"arm64", b"v8", b"0" * 130],
    "oci_document": [b"{", b"}", b"[", b"]", b"null", b"\"", b":", b",", b"1e999", b"-1", b"true", b"\"digest\"",
                     b"\"size\"", b"\"mediaType\"", b"\"platform\"", b"\"schemaVersion\":2", b"\\u0000", b"\xff"],
    "challenge": [b"Bearer ", b"Basic ", b"realm=", b"service=", b"scope=", b"\"", b",", b"=", b"\\", b"\n",
                  b"http://", b"https://", b"[", b"]", b":", b"\x00", b"{\"token\":", b"\"expires_in\":"],
    "registry_response": [b"\x00", b"200", b"401", b"307", b"429", b"500", b"404", b"Location: ", b"Retry-After: ",
                          b"Link: <", b">; rel=\"next\"", b"WWW-Authenticate: Bearer realm=\"", b"Content-Length: ",
                          b"Docker-Content-Digest: sha256:", b"Content-Type: application/vnd.oci.image.index.v1+json",
                          b"\n", b"http://[::1", b"https://other.test/", b"{\"errors\":[{\"code\":", b"{\"tags\":[",
                          b"{\"schemaVersion\":2", b"\xc2\xb2", b"99999999999999999999", b"//", b"\xff"],
    "ports": [b":", b"-", b"/", b"tcp", b"udp", b"sctp", b"[", b"]", b"::", b"127.0.0.1", b"0", b"65535",
              b"65536", b"99999999999999999999", b"\x00", b" ", b"\xd9\xa3"],
    "volume": [b":", b"/", b"ro", b"rw", b",", b"z", b"=", b"m", b"g", b"k", b"s", b"h", b"ms", b"1e400", b"nan",
               b"-", b".", b"\x00", b"\n", b"#", b"inf", b"\xd9\xa3"],
    "image_archive": [b"\x00" * 512, b"manifest.json", b"index.json", b"oci-layout", b"blobs/sha256/", b"../",
                      b"\"Config\":", b"\"Layers\":[", b"\"RepoTags\":[", b"\"manifests\":[", b"sha256:"],
    "tar_layer": [b"\x00" * 512, b"ustar\x00", b"../", b".wh.", b"\x1f\x8b\x08", b"(\xb5/\xfd", b"BZh"],
}


_SEEDS: dict[str, list[bytes]] = {}  # change the strategy mid-run (hypothesis wants it stable)


@st.composite
def mutated(draw: st.DrawFn, target: str) -> bytes:
    """A corpus entry (or nothing) put through a few random edits: token inserts, deletes, byte flips,
    duplicated slices, random bytes, and splices with another corpus entry."""
    seeds = _SEEDS.setdefault(target, corpus(target) or [b""])  # read once: a saved finding must not
    data = bytearray(draw(st.sampled_from(seeds)))
    tokens = TOKENS.get(target, [b""])
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.integers(0, 5))
        pos = draw(st.integers(0, len(data)))
        if op == 0:
            data[pos:pos] = draw(st.sampled_from(tokens))
        elif op == 1:
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == 2 and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == 3:
            end = draw(st.integers(pos, len(data)))
            data[pos:pos] = data[pos:end]
        elif op == 4:
            data[pos:pos] = draw(st.binary(max_size=16))
        else:
            other = draw(st.sampled_from(seeds))
            cut = draw(st.integers(0, len(other)))
            data[pos:] = other[cut:]
    return bytes(data)


def text_tokens(target: str) -> st.SearchStrategy[bytes]:
    """Inputs assembled from the target's tokens and short random text."""
    pieces = st.one_of(st.sampled_from(TOKENS[target]), st.text(max_size=6).map(str.encode))
    return st.lists(pieces, max_size=30).map(b"".join)


def inputs(target: str) -> st.SearchStrategy[bytes]:
    options = [mutated(target), st.binary(max_size=256)]
    if target in TOKENS and target not in ("tar_layer", "oci_document"):
        options.append(text_tokens(target))
    if target == "tar_layer":
        options.append(tar_archives())
    if target == "oci_document":
        options.append(oci_documents())
    return st.one_of(options)


# ---- tar layers --------------------------------------------------------------------------------------

_NAMES = st.lists(st.sampled_from(["a", "b", "..", ".", "", "etc", ".wh.a", ".wh..wh..opq", "ln", "victim",
                                   "outside", "tmp", "dockyard-fuzz-escape", "x" * 120]),
                  min_size=1, max_size=4).map("/".join)
_LINKS = st.one_of(_NAMES, st.sampled_from(["/", "/tmp", "../outside", "../../", "/etc/passwd", "ln", "..", "a/.."]))
_KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                          tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE, b"Z", tarfile.GNUTYPE_SPARSE])


@st.composite
def tar_archives(draw: st.DrawFn) -> bytes:
    """Small tars whose entries aim at the usual escapes: ``..``, absolute names, symlinks and hard links
    leading out, entries through a symlink, devices, set-id modes, odd types, whiteouts, huge sizes."""
    buf = io.BytesIO()
    fmt = draw(st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]))
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for _ in range(draw(st.integers(1, 8))):
            name = draw(st.one_of(_NAMES, _NAMES.map(lambda n: "/" + n)))
            info = tarfile.TarInfo(name)
            info.type = draw(_KINDS)
            info.mode = draw(st.sampled_from([0o644, 0o755, 0o4755, 0o2755, 0o7777, 0, 0o1777]))
            info.uid = draw(st.sampled_from([0, 1000, 65534, 2**21 - 1]))
            info.gid = info.uid
            info.mtime = draw(st.sampled_from([0, 1_700_000_000, 2**33 - 1]))
            if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = draw(_LINKS)
            if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = draw(st.sampled_from([(1, 3), (0, 0), (8, 0), (4095, 255)]))
            data = draw(st.binary(max_size=64)) if info.type in (tarfile.REGTYPE, tarfile.CONTTYPE) else b""
            info.size = len(data)
            if fmt == tarfile.PAX_FORMAT and draw(st.booleans()):
                info.pax_headers = draw(st.dictionaries(
                    st.sampled_from(["path", "linkpath", "size", "SCHILY.xattr.user.a", "SCHILY.xattr.trusted.x",
                                     "mtime", "uid", "SCHILY.xattr.security.capability"]),
                    st.sampled_from(["../victim", "/tmp/dockyard-fuzz-escape", "-1", "99999999999", "x", "1e9",
                                     "ln/victim", ""]), max_size=2))
            try:
                tar.addfile(info, io.BytesIO(data) if data else None)
            except (ValueError, tarfile.HeaderError):
                continue  # tarfile itself cannot write this header; the raw mutator covers such bytes
    raw = buf.getvalue()
    if draw(st.integers(0, 3)) == 0:
        raw = gzip.compress(raw, mtime=0)
    cut = draw(st.integers(0, 20))
    return raw[: len(raw) - cut * 64] if cut > 16 else raw


# ---- OCI documents -----------------------------------------------------------------------------------

_KEYS = ["schemaVersion", "mediaType", "config", "layers", "manifests", "digest", "size", "platform", "urls",
         "annotations", "os", "architecture", "variant", "os.version", "os.features", "rootfs", "diff_ids", "type",
         "history", "created", "created_by", "empty_layer", "Env", "Cmd", "Entrypoint", "ExposedPorts", "Volumes",
         "Labels", "Healthcheck", "Test", "Interval", "User", "WorkingDir", "StopSignal", "subject", "artifactType",
         "data"]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.sampled_from(["sha256:" + "a" * 64, "sha256:zz", "application/vnd.oci.image.manifest.v1+json",
                     "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.layer.v1.tar+gzip",
                     "application/vnd.docker.distribution.manifest.v2+json", "linux", "amd64", "arm", "v7", "layers",
                     "2024-01-01T00:00:00Z", "2024-13-99T99:99:99Z", "", "80/tcp", "A=b", "\x00", "\udc80"]),
    st.text(max_size=8),
)
_JSON: st.SearchStrategy[Any] = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=4)), inner, max_size=6)),
    max_leaves=30,
)


@st.composite
def oci_documents(draw: st.DrawFn) -> bytes:
    doc = draw(st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=8))
    if draw(st.booleans()):
        doc["schemaVersion"] = 2
    hint = draw(st.integers(0, 255))
    try:
        body = json.dumps(doc).encode("utf-8", "surrogatepass")
    except (ValueError, UnicodeEncodeError):
        body = b"{}"
    return bytes([hint]) + body
