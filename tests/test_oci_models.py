"""Descriptor / Manifest / Index / ImageConfig: lossless parsing, building, validation at parse time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.errors import InvalidManifestError
from engine.oci import mediatypes as mt
from engine.oci.digest import Digest
from engine.oci.models import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    canonical_json,
    parse_document,
)
from engine.oci.platform import Platform

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def _desc(media_type: str, digest: str = D1, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def _manifest(media_type: str = mt.OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    config_type = mt.DOCKER_CONFIG if media_type == mt.DOCKER_MANIFEST else mt.OCI_CONFIG
    layer_type = mt.DOCKER_LAYER_GZIP if media_type == mt.DOCKER_MANIFEST else mt.OCI_LAYER_GZIP
    return {"schemaVersion": 2, "mediaType": media_type, "config": _desc(config_type, D1, 100),
            "layers": [_desc(layer_type, D2, 2000)], **extra}


def _config(**extra: Any) -> dict[str, Any]:
    return {"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [D3]}, **extra}


# -- lossless round trips -------------------------------------------------------------------------


ODD_BUT_VALID_MANIFEST = (
    b'{\n   "schemaVersion" : 2,\n   "mediaType": "application/vnd.oci.image.manifest.v1+json",\n'
    b'   "x-unknown": {"nested": [1, 2.50, "\\u00e9"]},\n'
    b'   "config": {"digest": "' + D1.encode() + b'", "size": 100, '
    b'"mediaType": "application/vnd.oci.image.config.v1+json", "x-extra": true},\n'
    b'   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 2000, '
    b'"digest": "' + D2.encode() + b'", "annotations": {"a": "b"}, "urls": ["https://example.com/l"]}],\n'
    b'   "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}\n}\n'
)


def test_manifest_keeps_raw_bytes_unknown_fields_and_digest() -> None:
    manifest = Manifest.parse(ODD_BUT_VALID_MANIFEST)
    assert manifest.raw == ODD_BUT_VALID_MANIFEST
    assert manifest.digest == Digest.from_bytes(ODD_BUT_VALID_MANIFEST)
    assert manifest.data["x-unknown"] == {"nested": [1, 2.5, "é"]}
    assert manifest.config.extra == {"x-extra": True}
    assert manifest.config.digest == Digest.parse(D1)
    assert manifest.layers[0].annotations == {"a": "b"}
    assert manifest.layers[0].urls == ("https://example.com/l",)
    assert manifest.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    # Parsing again, or parsing what we keep, never changes a byte.
    again = Manifest.parse(manifest.raw)
    assert again.raw == manifest.raw and again.digest == manifest.digest
    desc = manifest.descriptor()
    assert (desc.media_type, desc.digest, desc.size) == (mt.OCI_MANIFEST, manifest.digest, len(manifest.raw))


def test_descriptor_to_json_keeps_extra_fields_and_platform_spelling() -> None:
    data = _desc(mt.OCI_MANIFEST, D1, 7, annotations={"k": "v"}, urls=["https://example.com/x"],
                 platform={"architecture": "arm64", "os": "linux", "variant": "v8"},
                 artifactType="application/vnd.example+type", data="e30=",
                 **{"x-future": {"a": [1]}})
    descriptor = Descriptor.from_json(data)
    assert descriptor.extra == {"data": "e30=", "x-future": {"a": [1]}}
    assert descriptor.platform == Platform("linux", "arm64", "v8")
    assert descriptor.to_json() == data
    assert Descriptor.from_json(descriptor.to_json()) == descriptor
    renamed = descriptor.with_annotations({"x": "y"})
    assert renamed.to_json()["annotations"] == {"x": "y"}
    assert renamed.extra == descriptor.extra


@pytest.mark.parametrize("media_type", [mt.OCI_MANIFEST, mt.DOCKER_MANIFEST])
def test_manifest_media_types(media_type: str) -> None:
    raw = json.dumps(_manifest(media_type), indent=3).encode()
    manifest = Manifest.parse(raw)
    assert manifest.media_type == media_type
    assert manifest.is_docker is (media_type == mt.DOCKER_MANIFEST)
    assert manifest.raw == raw
    assert parse_document(raw) == manifest


def test_manifest_media_type_comes_from_the_hint_when_absent() -> None:
    doc = _manifest()
    del doc["mediaType"]
    raw = canonical_json(doc)
    assert Manifest.parse(raw).media_type == mt.OCI_MANIFEST
    assert Manifest.parse(raw, mt.DOCKER_MANIFEST).media_type == mt.DOCKER_MANIFEST
    with pytest.raises(InvalidManifestError, match="does not match"):
        Manifest.parse(canonical_json(_manifest(mt.DOCKER_MANIFEST)), mt.OCI_MANIFEST)
    with pytest.raises(InvalidManifestError, match="unexpected mediaType"):
        Manifest.parse(canonical_json(_manifest(mt.OCI_INDEX)))


@pytest.mark.parametrize("media_type", [mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST])
def test_index_media_types_and_selection(media_type: str) -> None:
    entry_type = mt.DOCKER_MANIFEST if media_type == mt.DOCKER_MANIFEST_LIST else mt.OCI_MANIFEST
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            _desc(entry_type, D1, 1, platform={"architecture": "amd64", "os": "linux"}),
            _desc(entry_type, D2, 2, platform={"architecture": "arm", "os": "linux", "variant": "v6",
                                               "features": ["sse4"]}),
            _desc(entry_type, D3, 3, platform={"architecture": "arm64", "os": "linux", "variant": "v8"}),
            _desc("application/vnd.in-toto+json", D3, 4, platform={"architecture": "unknown", "os": "unknown"}),
        ],
        "x-unknown": 1,
    }
    raw = json.dumps(doc).encode()
    index = Index.parse(raw)
    assert index.raw == raw and index.media_type == media_type and index.data["x-unknown"] == 1
    assert index.digest == Digest.from_bytes(raw)
    assert [str(d.digest) for d in index.manifests] == [D1, D2, D3, D3]
    assert index.select(Platform.parse("linux/amd64")).digest == Digest.parse(D1)  # type: ignore[union-attr]
    assert index.select(Platform.parse("linux/arm64")).digest == Digest.parse(D3)  # type: ignore[union-attr]
    assert index.select(Platform.parse("linux/arm/v7")).digest == Digest.parse(D2)  # type: ignore[union-attr]
    assert index.select(Platform.parse("linux/s390x")) is None
    assert parse_document(raw) == index


def test_index_without_media_type_is_recognised_by_parse_document() -> None:
    raw = canonical_json({"schemaVersion": 2, "manifests": []})
    assert isinstance(parse_document(raw), Index)
    assert isinstance(parse_document(raw, mt.DOCKER_MANIFEST_LIST), Index)


DOCKER_CONFIG_RAW = (
    b'{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"","Env":null,'
    b'"Cmd":["sh"],"Image":"","Volumes":null,"WorkingDir":"/srv","Entrypoint":null,"OnBuild":null,'
    b'"Labels":{"a":"b"},"ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Test":["CMD","true"]},'
    b'"StopSignal":"SIGTERM"},"container_config":{"Cmd":null},'
    b'"created":"2016-10-10T23:04:00.821781828Z","docker_version":"1.12.1",'
    b'"history":[{"created":"2016-09-23T16:29:57.276868291Z","created_by":"/bin/sh -c #(nop) ADD x in /"},'
    b'{"created":"2016-09-23T16:29:58Z","created_by":"/bin/sh -c #(nop) CMD [\\"sh\\"]","empty_layer":true}],'
    b'"os":"linux","rootfs":{"type":"layers","diff_ids":["' + D3.encode() + b'"]}}'
)


def test_image_config_is_lossless_and_typed() -> None:
    config = ImageConfig.parse(DOCKER_CONFIG_RAW)
    assert config.raw == DOCKER_CONFIG_RAW
    assert config.id == config.digest == Digest.from_bytes(DOCKER_CONFIG_RAW)
    assert config.data["docker_version"] == "1.12.1"
    assert config.env == ()  # "Env": null, as Go writes an empty slice
    assert config.cmd == ("sh",)
    assert config.entrypoint is None
    assert config.working_dir == "/srv"
    assert config.user == ""
    assert config.exposed_ports == ("80/tcp",)
    assert config.volumes == ()
    assert config.labels == {"a": "b"}
    assert config.stop_signal == "SIGTERM"
    assert config.healthcheck == {"Test": ["CMD", "true"]}
    assert config.diff_ids == (Digest.parse(D3),)
    assert config.created == "2016-10-10T23:04:00.821781828Z"
    assert [h.empty_layer for h in config.history] == [False, True]
    assert config.history[1].to_json()["empty_layer"] is True
    assert config.platform == Platform("linux", "amd64")


def test_with_config_builds_a_new_canonical_document() -> None:
    config = ImageConfig.parse(DOCKER_CONFIG_RAW)
    changed = config.with_config(Env=["A=1"], Cmd=None, WorkingDir="/app")
    assert changed.env == ("A=1",)
    assert changed.cmd is None
    assert changed.working_dir == "/app"
    assert changed.data["docker_version"] == "1.12.1"  # unknown fields survive
    assert changed.raw == canonical_json(json.loads(changed.raw))
    assert config.raw == DOCKER_CONFIG_RAW  # the original is untouched
    with pytest.raises(InvalidManifestError, match="NAME=VALUE"):
        config.with_config(Env=["novalue"])


def test_build_writes_canonical_json_that_parses_back() -> None:
    config = ImageConfig.build(_config(config={"Env": ["PATH=/bin"]}))
    layer = Descriptor.for_bytes(mt.OCI_LAYER_GZIP, b"layer")
    manifest = Manifest.build(Descriptor(mt.OCI_CONFIG, config.digest, len(config.raw)), [layer],
                              annotations={"k": "v"})
    assert manifest.raw == canonical_json(json.loads(manifest.raw))
    assert Manifest.parse(manifest.raw) == manifest
    assert manifest.layers == (layer,)
    index = Index.build([manifest.descriptor()], annotations={"a": "b"})
    assert Index.parse(index.raw) == index
    assert index.manifests[0].digest == manifest.digest
    docker = Manifest.build(Descriptor(mt.DOCKER_CONFIG, config.digest, len(config.raw)),
                            [Descriptor.for_bytes(mt.DOCKER_LAYER_GZIP, b"x")], media_type=mt.DOCKER_MANIFEST)
    assert docker.is_docker and json.loads(docker.raw)["mediaType"] == mt.DOCKER_MANIFEST


def test_images_without_layers_are_accepted_by_the_models() -> None:
    # A FROM-scratch image with only metadata: the spec says layers SHOULD (not MUST) have an entry;
    # Docker and BuildKit write such images, and Docker omits rootfs.diff_ids when it is empty.
    manifest = Manifest.build(Descriptor.for_bytes(mt.OCI_CONFIG, b"{}"), [])
    assert manifest.layers == ()
    config = ImageConfig.parse(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}')
    assert config.diff_ids == ()


# -- what parse refuses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (b"", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b"\xff{}", "not UTF-8"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),
        (b'{"schemaVersion": NaN}', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|not valid JSON"),
        (canonical_json(_manifest(schemaVersion=1)), "schemaVersion"),
        (canonical_json({**_manifest(), "config": None}), "config"),
        (canonical_json({**_manifest(), "layers": None}), "layers"),
        (canonical_json({**_manifest(), "layers": [_desc(mt.OCI_LAYER, "sha256:../x")]}), "layers\\[0\\].digest"),
        (canonical_json({**_manifest(), "layers": [_desc(mt.OCI_LAYER, D1, -1)]}), "layers\\[0\\].size"),
        (canonical_json({**_manifest(), "layers": [_desc(mt.OCI_LAYER, D1, 1.0)]}), "layers\\[0\\].size"),
        (canonical_json({**_manifest(), "layers": [_desc(mt.OCI_LAYER, D1, True)]}), "layers\\[0\\].size"),
        (canonical_json({**_manifest(), "layers": [_desc("invalid")]}), "not a media type"),
        (canonical_json({**_manifest(), "layers": [_desc(mt.OCI_LAYER, urls=["not a uri"])]}), "absolute URI"),
        (canonical_json({**_manifest(), "layers": [_desc(mt.OCI_LAYER, data="e30")]}), "base64"),
        (canonical_json({**_manifest(), "annotations": {"a": 1}}), "annotations.a"),
        (canonical_json({**_manifest(), "subject": "nope"}), "subject"),
        (canonical_json({**_manifest(), "Config": 5}), "Config"),  # Go matches field names case-insensitively
        (canonical_json({**_manifest(), "config": _desc(mt.OCI_CONFIG, "sha256+b64:abc")}),
         "unsupported digest algorithm 'sha256\\+b64'"),
    ],
)
def test_manifest_parse_refuses_invalid_documents(doc: bytes, why: str) -> None:
    with pytest.raises(InvalidManifestError, match=why) as info:
        Manifest.parse(doc)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"schemaVersion": 2, "manifests": [_desc(mt.OCI_MANIFEST, platform={"os": "linux"})]},
         "platform.architecture"),
        ({"schemaVersion": 2, "manifests": [_desc(mt.OCI_MANIFEST, size="1")]}, "size"),
        ({"schemaVersion": 2, "manifests": [_desc(mt.OCI_MANIFEST, size=-1)]}, "size"),
        ({"schemaVersion": 2, "manifests": {}}, "manifests"),
        ({"schemaVersion": 2}, "manifests: is required"),
        ({"schemaVersion": 2, "manifests": [], "mediaType": "nope"}, "unexpected mediaType"),
    ],
)
def test_index_parse_refuses_invalid_documents(doc: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidManifestError, match=why):
        Index.parse(canonical_json(doc))


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (_config(os=123), "os"),
        (_config(created="yesterday"), "RFC 3339"),
        (_config(created="2024-02-30T00:00:00Z"), "RFC 3339"),
        (_config(config={"Env": ["foo"]}), "NAME=VALUE"),
        (_config(config={"Env": ["=foo"]}), "NAME=VALUE"),
        (_config(config={"Env": ["A=1\nB"]}), "NAME=VALUE"),
        (_config(config={"User": 0}), "config.User"),
        (_config(config={"Volumes": ["/data"]}), "config.Volumes"),
        (_config(config={"ExposedPorts": {"80/tcp": None}}), "ExposedPorts"),
        (_config(config={"Labels": {"a": 1}}), "Labels"),
        (_config(history="x"), "history"),
        (_config(history=[{"empty_layer": "yes"}]), "empty_layer"),
        (_config(rootfs={"type": "other", "diff_ids": []}), "rootfs.type"),
        (_config(rootfs={"type": "layers", "diff_ids": ["nope"]}), "diff_ids"),
        (_config(rootfs={"type": "layers", "diff_ids": ["sha384:" + "a" * 96]}), "unsupported|diff_id"),
        ({"os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}, "architecture: is required"),
    ],
)
def test_image_config_parse_refuses_invalid_documents(doc: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidManifestError, match=why):
        ImageConfig.parse(canonical_json(doc))


def test_descriptor_from_json_refuses_what_the_validator_refuses() -> None:
    with pytest.raises(InvalidManifestError, match=r"index\.json entry: digest"):
        Descriptor.from_json(_desc(mt.OCI_MANIFEST, "sha256:" + "A" * 64), "index.json entry")
    with pytest.raises(InvalidManifestError, match="expected a JSON object"):
        Descriptor.from_json(None)
    with pytest.raises(InvalidManifestError, match="platform"):
        Descriptor.from_json(_desc(mt.OCI_MANIFEST, platform={"os": 1}))
    with pytest.raises(InvalidManifestError, match="unsupported digest algorithm"):
        Descriptor.from_json(_desc(mt.OCI_MANIFEST, "sha384:" + "a" * 96))


def test_null_optional_fields_read_as_absent() -> None:
    descriptor = Descriptor.from_json(_desc(mt.OCI_LAYER, annotations=None, urls=None, platform=None))
    assert descriptor.annotations == {} and descriptor.urls == () and descriptor.platform is None
    manifest = Manifest.parse(canonical_json({**_manifest(), "annotations": None, "subject": None}))
    assert manifest.annotations == {} and manifest.subject is None
