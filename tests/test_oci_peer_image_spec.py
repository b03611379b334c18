"""The image-spec's own validation cases (../shared/peer-data/image-spec, opencontainers/image-spec@13cff54).

Two independent judges must agree with every case's ``valid``:

1. the real JSON schemas run by ``jsonschema`` (draft-04, ``format`` asserted), plus the few checks the
   upstream Go validator adds (written here from the fixture notes, separately from our code), and
2. our hand-written ``engine.oci.validate.validate_document``.

Then: the Docker originals of the backwards-compatibility cases hash to their recorded digests and
our models parse them losslessly; every example from the spec's Markdown passes both judges; and the
models accept or refuse each case as documented in ``engine.oci.validate``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from engine.errors import InvalidManifestError
from engine.oci import mediatypes as mt
from engine.oci.models import Descriptor, ImageConfig, Index, Manifest
from engine.oci.validate import OCI_LAYOUT_HEADER, validate_document
from tests.peerdata import peer_dir

SPEC = peer_dir("image-spec")
SCHEMAS = SPEC / "schema"
FIXTURES = json.loads((SPEC / "fixtures.json").read_text())
CASES: list[dict[str, Any]] = FIXTURES["cases"]
EXAMPLES: list[dict[str, Any]] = FIXTURES["examples"]

# Documents the models accept although the strict validator refuses them (engine/oci/validate.py
# explains why: an image may have no layers).
MODEL_TOLERATES = {"schema/manifest_test.go/TestManifest#5"}

DOCKER_TO_OCI = {
    mt.DOCKER_MANIFEST_LIST: mt.OCI_INDEX,
    mt.DOCKER_MANIFEST: mt.OCI_MANIFEST,
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    mt.DOCKER_CONFIG: mt.OCI_CONFIG,
}
OCI_TO_DOCKER = {oci: docker for docker, oci in DOCKER_TO_OCI.items() if docker != mt.DOCKER_LAYER_GZIP}


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


# -- judge 1: jsonschema over the real schema files + the Go validator's extra checks ---------------


def _retrieve(uri: str) -> Resource[Any]:
    # Like the upstream loader: any https://opencontainers.org/schema/.../<file> is schema/<file>.
    path = SCHEMAS / uri.rstrip("/").rsplit("/", 1)[-1]
    if not path.is_file():
        raise LookupError(f"no schema file for {uri}")
    return Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT4)


@cache
def _schema_validator(schema_file: str, *, formats: bool = True) -> Draft4Validator:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema, registry=Registry(retrieve=_retrieve),
                           format_checker=Draft4Validator.FORMAT_CHECKER if formats else None)


_GO_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}


def _go_digest_ok(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    algorithm, _, encoded = value.partition(":")
    size = _GO_DIGEST_HEX.get(algorithm)
    return size is None or re.fullmatch(f"[a-f0-9]{{{size}}}", encoded) is not None


def _descriptors(media_type: str, doc: dict[str, Any]) -> list[Any]:
    if media_type == mt.OCI_DESCRIPTOR:
        return [doc]
    if media_type == mt.OCI_MANIFEST:
        return [doc.get("config"), doc.get("subject"), *(doc.get("layers") or [])]
    if media_type == mt.OCI_INDEX:
        return [doc.get("subject"), *(doc.get("manifests") or [])]
    return []


def _padded_base64(value: Any) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return False
    return True


def upstream_verdict(media_type: str, schema_file: str, document: str) -> bool:
    """What image-spec's schema/validator.go says, reproduced with jsonschema and the fixture notes."""
    try:
        doc = json.loads(document)
    except ValueError:
        return False  # Go's json.Unmarshal fails before any schema check
    if not isinstance(doc, dict):
        return False
    for descriptor in _descriptors(media_type, doc):
        if isinstance(descriptor, dict) and "data" in descriptor and not _padded_base64(descriptor["data"]):
            return False  # Go decodes "data" into []byte
    if media_type == mt.OCI_DESCRIPTOR and not _go_digest_ok(doc.get("digest")):
        return False
    if media_type == mt.OCI_CONFIG:
        env = (doc.get("config") or {}).get("Env") or []
        if any(isinstance(e, str) and not re.fullmatch(r"[^=]+=.*", e) for e in env):
            return False
    return _schema_validator(schema_file).is_valid(doc)


def test_format_checker_asserts_uri_and_date_time() -> None:
    # jsonschema only checks these formats when rfc3986-validator and rfc3339-validator are installed
    # (they are in the test extras); without them case TestDescriptor#17 could not fail.
    checker = Draft4Validator.FORMAT_CHECKER
    assert not checker.conforms("value", "uri"), "install rfc3986-validator (pip install -e .[test])"
    assert checker.conforms("https://example.com/foo", "uri")
    assert not checker.conforms("2015-10-31 22:22:56", "date-time"), "install rfc3339-validator"
    assert checker.conforms("2015-10-31T22:22:56.015925234Z", "date-time")


def test_fixture_file_is_what_the_notes_describe() -> None:
    assert len(CASES) == 71
    assert len(EXAMPLES) == 13
    assert sum(1 for c in CASES if "extra_check" in c) == 4
    assert {c["schema"] for c in CASES} <= {p.name for p in SCHEMAS.glob("*.json")}


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_jsonschema_and_upstream_checks_agree_with_case(case: dict[str, Any]) -> None:
    assert upstream_verdict(case["mediatype"], case["schema"], case["document"]) is case["valid"], case.get(
        "comment")
    if "extra_check" in case:
        # The case fails only through an extra check: the bare schema, format as annotation, accepts it.
        assert _schema_validator(case["schema"], formats=False).is_valid(json.loads(case["document"]))


# -- judge 2: our validator ------------------------------------------------------------------------


def _ours(media_type: str, document: str) -> str | None:
    try:
        validate_document(media_type, document.encode())
    except InvalidManifestError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_validate_document_agrees_with_case(case: dict[str, Any]) -> None:
    problem = _ours(case["mediatype"], case["document"])
    assert (problem is None) is case["valid"], f"{case.get('comment')}: {problem}"
    if problem is not None:
        assert "\n" not in problem and problem.startswith("invalid ")


# -- backwards compatibility with Docker schema2 -----------------------------------------------------


COMPAT = [c for c in CASES if "original_docker_document" in c]


def test_there_are_four_backwards_compatibility_cases() -> None:
    assert len(COMPAT) == 4


@pytest.mark.parametrize("case", COMPAT, ids=_ids(COMPAT))
def test_docker_original_hashes_to_its_digest_and_parses_losslessly(case: dict[str, Any]) -> None:
    original: str = case["original_docker_document"]
    raw = original.encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == case["original_digest"]
    translated = original
    for docker, oci in DOCKER_TO_OCI.items():
        translated = translated.replace(docker, oci)
    assert translated == case["document"]

    docker_type = OCI_TO_DOCKER[case["mediatype"]]
    validate_document(docker_type, raw)  # Docker types are judged by their OCI counterparts' rules
    model: Manifest | Index | ImageConfig
    if case["mediatype"] == mt.OCI_MANIFEST:
        model = Manifest.parse(raw, docker_type)
        assert model.media_type == mt.DOCKER_MANIFEST and model.is_docker
        assert [layer.media_type for layer in model.layers] == [mt.DOCKER_LAYER_GZIP] * len(model.layers)
    elif case["mediatype"] == mt.OCI_INDEX:
        model = Index.parse(raw, docker_type)
        assert model.media_type == mt.DOCKER_MANIFEST_LIST
        assert all(d.platform is not None for d in model.manifests)
    else:
        model = ImageConfig.parse(raw)
        assert model.id == model.digest
        assert len(model.diff_ids) == len(json.loads(raw)["rootfs"]["diff_ids"])
    assert model.raw == raw
    assert str(model.digest) == case["original_digest"]
    assert model.data == json.loads(raw)


# -- the spec's examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=_ids(EXAMPLES))
def test_spec_examples_pass_both_judges(example: dict[str, Any]) -> None:
    assert example["valid"] is True
    assert upstream_verdict(example["mediatype"], example["schema"], example["document"])
    assert _ours(example["mediatype"], example["document"]) is None


# -- the models: validation at parse time -------------------------------------------------------------


def _parse_with_model(media_type: str, raw: bytes) -> None:
    if media_type == mt.OCI_MANIFEST:
        Manifest.parse(raw, media_type)
    elif media_type == mt.OCI_INDEX:
        Index.parse(raw, media_type)
    elif media_type == mt.OCI_CONFIG:
        ImageConfig.parse(raw)
    elif media_type == mt.OCI_DESCRIPTOR:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidManifestError("not JSON") from exc
        Descriptor.from_json(data)
    else:
        assert media_type == OCI_LAYOUT_HEADER


MODEL_ITEMS = [c for c in CASES + EXAMPLES if c["mediatype"] != OCI_LAYOUT_HEADER]


@pytest.mark.parametrize("case", MODEL_ITEMS, ids=_ids(MODEL_ITEMS))
def test_models_refuse_what_the_validator_refuses(case: dict[str, Any]) -> None:
    raw = case["document"].encode()
    try:
        _parse_with_model(case["mediatype"], raw)
    except InvalidManifestError as exc:
        refused: str | None = str(exc)
    else:
        refused = None
    if case["id"] in MODEL_TOLERATES:
        assert not case["valid"] and refused is None
    elif not case["valid"]:
        assert refused is not None
    elif refused is not None:
        # Valid by the spec, but with a digest algorithm dockyard cannot store: a clear refusal.
        assert "unsupported digest algorithm" in refused, refused


def test_layout_file_cases_cover_both_outcomes() -> None:
    layout = [c for c in CASES if c["mediatype"] == OCI_LAYOUT_HEADER]
    assert {c["valid"] for c in layout} == {True, False}
    assert Path(SCHEMAS / "image-layout-schema.json").is_file()
