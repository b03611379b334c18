"""dockyard's headless engine: the public surface others may import.

Everything else under ``engine`` is internal to the engine. This package never imports textual,
rich, tui or cli (a test proves it).
"""

from __future__ import annotations

from engine.api import Engine
from engine.config import EngineConfig
from engine.errors import EngineError
from engine.oci.digest import Digest
from engine.oci.platform import Platform
from engine.oci.reference import Reference

__all__ = ["Digest", "Engine", "EngineConfig", "EngineError", "Platform", "Reference"]
