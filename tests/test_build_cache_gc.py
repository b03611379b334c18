"""gc keeps the layers the build cache holds (a rebuild after rmi still hits), unless asked to drop them."""

from __future__ import annotations

import asyncio

from tests.buildfixtures import BuilderEnv

pytest_plugins = ("tests.buildfixtures",)

DOCKERFILE = "FROM busybox\nRUN echo cached > /f\nCOPY a /a\n"


def test_gc_keeps_build_cache_layers(builder_env: BuilderEnv) -> None:
    files = {"Dockerfile": DOCKERFILE, "a": "x\n"}
    first = builder_env.build(files, tags=("app:1",))
    assert first.cached_steps() == [False, False]
    asyncio.run(builder_env.engine.images.remove("app:1"))
    asyncio.run(builder_env.engine.images.gc())
    again = builder_env.build(files, tags=("app:1",))
    assert again.cached_steps() == [True, True]
    assert again.id == first.id


def test_gc_build_cache_empties_the_cache(builder_env: BuilderEnv) -> None:
    files = {"Dockerfile": DOCKERFILE, "a": "x\n"}
    builder_env.build(files, tags=("app:1",))
    asyncio.run(builder_env.engine.images.remove("app:1"))
    report = asyncio.run(builder_env.engine.images.gc(build_cache=True))
    assert report.removed_blobs >= 2
    assert builder_env.build(files, tags=("app:1",)).cached_steps() == [False, False]
    assert builder_env.store.fsck().clean
