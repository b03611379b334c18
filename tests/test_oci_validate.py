"""engine.oci.validate on its own (the peer module holds it to the image-spec's cases)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.errors import InvalidManifestError
from engine.oci import mediatypes as mt
from engine.oci.validate import (
    OCI_LAYOUT_HEADER,
    digest_problem,
    is_absolute_uri,
    is_padded_base64,
    is_rfc3339,
    validate_descriptor,
    validate_document,
)

SHA256 = "sha256:" + "a" * 64


def _desc(**fields: Any) -> dict[str, Any]:
    return {"mediaType": mt.OCI_LAYER_GZIP, "size": 1, "digest": SHA256, **fields}


def _manifest(**fields: Any) -> dict[str, Any]:
    return {"schemaVersion": 2, "config": _desc(mediaType=mt.OCI_CONFIG), "layers": [_desc()], **fields}


def _config(**fields: Any) -> dict[str, Any]:
    return {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [SHA256]}, **fields}


def _check(media_type: str, doc: Any, *, strict: bool = True) -> str | None:
    try:
        validate_document(media_type, json.dumps(doc).encode(), strict=strict)
    except InvalidManifestError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (SHA256, None),
        ("sha384:" + "b" * 96, None),
        ("sha512:" + "c" * 128, None),
        ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", None),
        ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", None),
        ("sha256:" + "a" * 63, "64 lower-case hex"),
        ("sha384:" + "b" * 64, "96 lower-case hex"),
        ("sha512:" + "C" * 128, "128 lower-case hex"),
        ("sha256:../x", "not a digest"),
        ("sha256++x:abc", "not a digest"),
        ("SHA256:" + "a" * 64, "not a digest"),
        ("sha256:" + "a" * 64 + "\n", "not a digest"),
        ("", "not a digest"),
    ],
)
def test_digest_rules(value: str, problem: str | None) -> None:
    got = digest_problem(value)
    assert (got is None) if problem is None else (got is not None and problem in got)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2015-10-31T22:22:56.015925234Z", True),
        ("2015-10-31T22:22:56Z", True),
        ("2015-10-31t22:22:56z", True),
        ("2015-10-31T22:22:56+05:30", True),
        ("2016-02-29T00:00:00-00:00", True),
        ("2015-02-29T00:00:00Z", False),
        ("2015-10-31T24:00:00Z", False),
        ("2015-10-31T22:60:00Z", False),
        ("2015-10-31T22:22:60Z", False),
        ("2015-10-31 22:22:56Z", False),
        ("2015-10-31T22:22:56", False),
        ("2015-10-31T22:22:56+0530", False),
        ("2015-13-01T00:00:00Z", False),
        ("2015-10-31T22:22:56Z\n", False),
    ],
)
def test_rfc3339(value: str, ok: bool) -> None:
    assert is_rfc3339(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://example.com/foo", True),
        ("http://[::1]:5000/v2/x?y=1#frag", True),
        ("urn:isbn:0451450523", True),
        ("https://example.com/a%20b", True),
        ("value", False),
        ("/relative/path", False),
        ("https://example.com/a b", False),
        ("https://example.com/%zz", False),
        ("1http://example.com", False),
        ("https://exämple.com", False),
    ],
)
def test_absolute_uri(value: str, ok: bool) -> None:
    assert is_absolute_uri(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("e30=", True), ("", True), ("aHR0cHM6Ly9n\naXRodWIuY29t", True), ("e30", False), ("e3=0", False),
     ("e30-", False), ("e3 0=", False)],
)
def test_base64_as_go_decodes_it(value: str, ok: bool) -> None:
    assert is_padded_base64(value) is ok


@pytest.mark.parametrize("media_type", [mt.OCI_MANIFEST, mt.DOCKER_MANIFEST])
def test_docker_media_types_use_the_oci_rules(media_type: str) -> None:
    assert _check(media_type, _manifest()) is None
    assert "layers" in (_check(media_type, _manifest(layers=[])) or "")


def test_unknown_media_type_is_refused_clearly() -> None:
    with pytest.raises(InvalidManifestError, match="cannot validate documents of media type 'text/plain'"):
        validate_document("text/plain", b"{}")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"imageLayoutVersion": "1.0.0"}', None),
        (b'{"imageLayoutVersion": "1.0.0", "x": 1}', None),
        (b'{"imageLayoutVersion": "1.1.0"}', "imageLayoutVersion"),
        (b'{"imageLayoutVersion": 1}', "imageLayoutVersion"),
        (b"{}", "imageLayoutVersion: is required"),
        (b"[]", "must be an object"),
    ],
)
def test_oci_layout_file(raw: bytes, why: str | None) -> None:
    if why is None:
        validate_document(OCI_LAYOUT_HEADER, raw)
    else:
        with pytest.raises(InvalidManifestError, match=why):
            validate_document(OCI_LAYOUT_HEADER, raw)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\xef\xbb\xbf{}", "not valid JSON"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b'{"size": Infinity}', "not valid JSON"),
        (b"null", "expected a JSON object"),
        (b"{} {}", "not valid JSON"),
    ],
)
def test_decoding_is_as_strict_as_go(raw: bytes, why: str) -> None:
    with pytest.raises(InvalidManifestError, match=why):
        validate_document(mt.OCI_DESCRIPTOR, raw)


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        # Go's encoding/json matches field names case-insensitively, so these must have Go's types.
        (_desc(Size="1"), "Size: must be a 64-bit integer"),
        (_desc(PLATFORM={"os": 1}), "PLATFORM.os: must be a string"),
        (_desc(Annotations={"a": 1}), "Annotations.a: must be a string"),
        # ... while an unknown field is anything at all.
        (_desc(whatever={"a": [1, None]}), None),
        # Platform in a plain descriptor: typed by Go, not required by the schema.
        (_desc(platform={"variant": "v8"}), None),
        (_desc(platform={"os.features": "x"}), "platform.os.features"),
        (_desc(size=2**63 - 1), None),
        (_desc(size=2**63), "size"),
        (_desc(size=1.5), "size"),
        (_desc(size=None), "size"),
        (_desc(mediaType="a/" + "b" * 127), None),
        (_desc(mediaType="a/" + "b" * 128), "mediaType"),
        (_desc(urls="https://example.com"), "urls"),
        (_desc(annotations=None), "annotations"),
    ],
)
def test_descriptor_rules(doc: dict[str, Any], why: str | None) -> None:
    problem = _check(mt.OCI_DESCRIPTOR, doc)
    assert problem is None if why is None else (problem is not None and why in problem), problem


def test_stricter_than_upstream_where_the_prose_demands_it() -> None:
    # Upstream only checks digests of a top-level descriptor document, and lets index entries have any
    # int64 size; both are refused here.
    assert "64 lower-case hex" in (_check(mt.OCI_MANIFEST, _manifest(layers=[_desc(digest="sha256:" + "A" * 64)]))
                                   or "")
    index = {"schemaVersion": 2, "manifests": [_desc(mediaType=mt.OCI_MANIFEST, size=-1)]}
    assert "size" in (_check(mt.OCI_INDEX, index) or "")
    assert "diff_ids[0]" in (_check(mt.OCI_CONFIG, _config(rootfs={"type": "layers", "diff_ids": ["x"]})) or "")


@pytest.mark.parametrize(
    ("media_type", "doc"),
    [
        (mt.OCI_MANIFEST, _manifest(layers=[])),
        (mt.OCI_MANIFEST, _manifest(annotations=None, subject=None, artifactType=None)),
        (mt.OCI_INDEX, {"schemaVersion": 2, "manifests": [_desc(platform=None, urls=None)],
                        "annotations": None}),
        (mt.OCI_CONFIG, _config(rootfs={"type": "layers"})),
        (mt.OCI_CONFIG, _config(rootfs={"type": "layers", "diff_ids": None})),
        (mt.OCI_CONFIG, _config(config={"Env": None, "ExposedPorts": None, "User": None}, history=None,
                                created=None)),
        (mt.DOCKER_CONFIG, _config(config=None)),
    ],
)
def test_relaxed_mode_accepts_real_world_documents_strict_refuses(media_type: str, doc: Any) -> None:
    assert _check(media_type, doc, strict=False) is None
    assert _check(media_type, doc, strict=True) is not None


@pytest.mark.parametrize(
    ("media_type", "doc"),
    [
        (mt.OCI_MANIFEST, _manifest(config=None)),
        (mt.OCI_MANIFEST, _manifest(layers=None)),
        (mt.OCI_MANIFEST, _manifest(schemaVersion=None)),
        (mt.OCI_CONFIG, _config(os=None)),
        (mt.OCI_CONFIG, _config(rootfs={"type": None})),
        (mt.OCI_CONFIG, _config(config={"Env": ["novalue"]})),
        (mt.OCI_INDEX, {"schemaVersion": 2, "manifests": [None]}),
        (mt.OCI_DESCRIPTOR, _desc(mediaType=None)),
    ],
)
def test_relaxed_mode_still_refuses_missing_required_fields(media_type: str, doc: Any) -> None:
    assert _check(media_type, doc, strict=False) is not None


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (_config(config={"Env": ["A=1", "B="]}), None),
        (_config(config={"Env": ["A=1=2"]}), None),
        (_config(config={"Env": ["=1"]}), "NAME=VALUE"),
        (_config(config={"Env": ["A=1\n"]}), "NAME=VALUE"),
        (_config(config={"env": ["novalue"]}), "NAME=VALUE"),  # Go decodes "env" into Env too
        (_config(config={"Entrypoint": None, "Cmd": None, "Volumes": None, "Labels": None}), None),
        (_config(config={"Entrypoint": "sh"}), "Entrypoint"),
        (_config(config={"ArgsEscaped": "yes"}), "ArgsEscaped"),
        (_config(config={"ExposedPorts": {"80/tcp": []}}), "ExposedPorts"),
        (_config(config={"Healthcheck": "anything", "OnBuild": 5}), None),  # not in the OCI schema
        (_config(**{"os.features": ["a", 1]}), "os.features[1]"),
        (_config(history=[{"created": "2015-10-31T22:22:56Z", "created_by": "x", "empty_layer": True}]), None),
        (_config(history=[{"created": "not a date"}]), "history[0].created"),
        (_config(created="2015-10-31T22:22:56.015925234Z"), None),
    ],
)
def test_config_rules(doc: dict[str, Any], why: str | None) -> None:
    problem = _check(mt.OCI_CONFIG, doc)
    assert problem is None if why is None else (problem is not None and why in problem), problem


def test_validate_descriptor_names_its_subject() -> None:
    with pytest.raises(InvalidManifestError, match=r"^invalid index\.json entry: size: is required$"):
        validate_descriptor({"mediaType": mt.OCI_MANIFEST, "digest": SHA256}, what="index.json entry")
