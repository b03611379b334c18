"""dockyard's headless engine: the public surface others may import.

Everything else under ``engine`` is internal to the engine. This package never imports textual,
rich, tui or cli (a test proves it). Names load lazily, so a process that needs one submodule (the
per-container monitor, a CLI verb) does not pay for the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.config import EngineConfig
    from engine.errors import EngineError
    from engine.oci.digest import Digest
    from engine.oci.platform import Platform
    from engine.oci.reference import Reference

__all__ = ["Digest", "Engine", "EngineConfig", "EngineError", "Platform", "Reference"]

_WHERE = {
    "Engine": "engine.api", "EngineConfig": "engine.config", "EngineError": "engine.errors",
    "Digest": "engine.oci.digest", "Platform": "engine.oci.platform", "Reference": "engine.oci.reference",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
