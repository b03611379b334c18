from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from engine.errors import InvalidInputError
from engine.oci.reference import Reference
from engine.store.importer import apply_changes, import_rootfs
from engine.store.layout import ImageStore
from tests.images import have_busybox, make_busybox_tar

pytestmark = pytest.mark.skipif(not have_busybox(), reason="busybox-static is not installed")


def test_import_plain_and_gzip_give_the_same_layer(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    plain = make_busybox_tar(tmp_path / "bb.tar")
    zipped = tmp_path / "bb.tar.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    a = import_rootfs(store, plain, Reference.parse("a"), changes=['CMD ["sh"]'])
    b = import_rootfs(store, zipped, Reference.parse("b"))
    assert a.config.diff_ids == b.config.diff_ids
    assert a.config.cmd == ("sh",)
    assert b.config.cmd is None
    assert store.fsck().clean


def test_changes_follow_docker_import() -> None:
    config = apply_changes({}, [
        'ENTRYPOINT ["/bin/app"]', "CMD serve --port 80", "ENV A=1 B=two", "ENV C three words",
        "WORKDIR /srv", "USER www-data", "EXPOSE 80 53/udp", 'LABEL "x"="y"', 'VOLUME ["/data"]',
        "STOPSIGNAL SIGINT",
    ])
    assert config["Entrypoint"] == ["/bin/app"]
    assert config["Cmd"] == ["/bin/sh", "-c", "serve --port 80"]
    assert config["Env"] == ["A=1", "B=two", "C=three words"]
    assert config["WorkingDir"] == "/srv" and config["User"] == "www-data"
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["Labels"] == {"x": "y"}
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGINT"


def test_unknown_change_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="RUN"):
        apply_changes({}, ["RUN echo hi"])


def test_imported_config_is_what_inspect_shows(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    image = import_rootfs(store, make_busybox_tar(tmp_path / "bb.tar"), Reference.parse("bb:1"),
                          message="from busybox-static")
    doc = json.loads(image.config.raw)
    assert doc["history"][0]["comment"] == "from busybox-static"
    assert doc["rootfs"]["diff_ids"] == [str(d) for d in image.config.diff_ids]
    assert store.resolve("bb:1").id == image.id
