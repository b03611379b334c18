"""Write the starting corpora under tests/fuzz/corpus/<target>/ (re-run to regenerate the seeds; crash
inputs the fuzzers find are saved beside them as ``crash-<sha256 prefix>`` and kept)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from tests.fuzz.targets import CORPUS

H = "a" * 64
D = f"sha256:{H}"


def _tar(entries: list[tuple[str, str, str | bytes]], *, gz: bool = False) -> bytes:
    kinds = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
             "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            info.type = kinds[kind]
            info.mode = 0o4755 if name.endswith("suid") else 0o755 if kind == "dir" else 0o644
            data = extra if isinstance(extra, bytes) else b""
            if kind in ("sym", "hard"):
                info.linkname = str(extra)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


SEEDS: dict[str, dict[str, bytes]] = {
    "dockerfile": {
        "basic": b"FROM busybox AS base\nARG V=1\nENV A=$V B=\"x y\"\nRUN echo ${A:-z} && \\\n  ls\n"
                 b"COPY --from=base --chown=1:1 a b /dst/\nWORKDIR /w\nEXPOSE 80/tcp 53/udp\n"
                 b"HEALTHCHECK --interval=5s CMD [\"true\"]\nCMD [\"sh\", \"-c\", \"x\"]\n",
        "heredoc": b"# syntax=docker/dockerfile:1\nFROM alpine\nRUN <<EOF bash\nset -e\necho $HOME\nEOF\n"
                   b"COPY <<-EOT /etc/x\n\thello\n\tEOT\n",
        "escape": b"# escape=`\nFROM mcr/windows\nRUN dir `\n  c:\\\nSHELL [\"powershell\"]\n",
        "onbuild": b"FROM scratch\nONBUILD RUN x\nLABEL a=b \"c d\"=e\nSTOPSIGNAL SIGTERM\nUSER 1:1\n"
                   b"VOLUME [\"/data\"]\nADD --chmod=755 http://x/y /z\nENTRYPOINT exec x\n",
        "mount": b"FROM a\nRUN --mount=type=cache,target=/c --network=none echo\nARG X\nFROM a AS b\n",
    },
    "shell_word": {
        "vars": b"$A ${A} ${A:-d} ${A:+x} ${EMPTY-u} ${X%%y*} ${X#?} ${X/y/z} 'q $A' \"d $A\"",
        "escape": b"a\\ b \\$A \\\\\x00\\",
        "backtick": b"a` b `$A\x00`",
        "error": b"${A:?must be set} ${UNSET?x} ${",
    },
    "dockerignore": {
        "basic": b"# comment\n*.pyc\n!keep.pyc\nnode_modules/\n**/tmp\n/abs\n../up\n\x00a.pyc\x00keep.pyc\x00x/tmp/y",
        "classes": b"[a-c]?.txt\n[!x]*\n\\*lit\n**\n!**/*.go\n\x00b1.txt\x00z/y.go",
    },
    "reference": {
        "names": b"busybox\x00localhost:5000/a/b:t@" + D.encode() + b"\x00docker.io/library/x\x00[::1]:5000/r",
        "digests": D.encode() + b"\x00sha512:" + b"b" * 128 + b"\x00sha256:XYZ\x00" + H.encode(),
        "platforms": b"linux/arm64/v8\x00linux/amd64\x00windows/amd64/10.0.17763\x00linux/arm/v7",
    },
    "oci_document": {
        "manifest": b"\x01" + json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D, "size": 9,
                        "annotations": {"a": "b"}, "urls": ["https://x/y"]}]}).encode(),
        "index": b"\x02" + json.dumps({
            "schemaVersion": 2, "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D, "size": 10,
                 "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}]}).encode(),
        "docker_list": b"\x04" + json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": D,
                           "size": 1, "platform": {"os": "linux", "architecture": "amd64"}}]}).encode(),
        "config": b"\x00" + json.dumps({
            "created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
            "config": {"Env": ["A=b"], "Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/v": {}},
                       "Labels": {"a": "b"}, "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000}},
            "rootfs": {"type": "layers", "diff_ids": [D]},
            "history": [{"created_by": "x", "empty_layer": True}]}).encode(),
        "nulls": b"\x00" + json.dumps({"config": None, "rootfs": None, "history": None, "os": None}).encode(),
    },
    "challenge": {
        "bearer": b'Bearer realm="https://auth.test/token",service="registry.test",scope="repository:a:pull"'
                  b'\x00{"token":"t","expires_in":60}',
        "multi": b'Basic realm="x", Bearer realm="http://a/t", error="invalid_token"\nNegotiate abc==\x00{}',
        "odd": b'Bearer realm="http://[::1",service=\x00{"access_token":"x","refresh_token":1}',
    },
    "ports": {
        "specs": b"80\x008080:80\x00127.0.0.1:8000-8002:80-82/udp\x00[::1]::53/sctp\x00:80\x0065536:1\x00"
                 b"1-2:3\x0080/tcp",
    },
    "volume": {
        "specs": b"/h:/c:ro\x00name:/c\x00/c\x00c\x00/:/\x00a:b:c:d\x00/h:/c:rw,z\x00"
                 b"512m\x001g\x001.5k\x0030s\x001h2m\x00nofile=1024:2048\x00A=b\n#c\nB",
    },
    "tar_layer": {
        "plain.tar": _tar([("etc", "dir", ""), ("etc/passwd", "file", b"root:x:0:0::/:/bin/sh\n"),
                           ("bin/suid", "file", b"#!"), ("bin/sh", "sym", "busybox")]),
        "escape_dotdot.tar": _tar([("../victim", "file", b"pwned")]),
        "escape_symlink.tar": _tar([("ln", "sym", "../outside"), ("ln/victim", "file", b"pwned")]),
        "escape_abs_symlink.tar": _tar([("ln", "sym", "/tmp"), ("ln/dockyard-fuzz-escape", "file", b"pwned")]),
        "escape_hardlink.tar": _tar([("h", "hard", "../victim"), ("h", "file", b"pwned")]),
        "whiteouts.tar.gz": _tar([("a", "dir", ""), ("a/.wh..wh..opq", "file", b""), ("a/.wh.b", "file", b""),
                                  ("dev", "dir", ""), ("dev/null", "chr", ""), ("p", "fifo", "")], gz=True),
        "bomb.tar.gz": gzip.compress(b"\x00" * (4 << 20), mtime=0),
    },
}


def _archives() -> dict[str, bytes]:
    """A docker-archive and an OCI archive of a one-layer image, saved by dockyard itself."""
    import tempfile

    from engine.store.archives import save_images
    from engine.store.layout import ImageStore
    from tests.store_helpers import import_files

    with tempfile.TemporaryDirectory() as tmp:
        store = ImageStore(Path(tmp) / "images")
        import_files(store, "localhost/fuzz:1", {"etc": None, "etc/hostname": b"fuzz\n"})
        out = {}
        for fmt in ("docker-archive", "oci-archive"):
            buf = io.BytesIO()
            save_images(store, ["localhost/fuzz:1"], buf, fmt)
            out[fmt] = buf.getvalue()
    escape = json.dumps([{"Config": "../../etc/passwd", "RepoTags": ["a:b"], "Layers": ["/etc/shadow"]}]).encode()
    out["escaping-manifest"] = _tar([("manifest.json", "file", escape)])
    out["symlinked-manifest"] = _tar([("manifest.json", "sym", "/etc/passwd")])
    return out


def main() -> None:
    SEEDS["image_archive"] = _archives()
    for target, seeds in SEEDS.items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (directory / f"seed-{name}").write_bytes(data)
    print(f"wrote {sum(map(len, SEEDS.values()))} seeds under {CORPUS}")


if __name__ == "__main__":
    main()
