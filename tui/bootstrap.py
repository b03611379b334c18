"""First run (placeholder until the dev services land): nothing to do."""

from __future__ import annotations

from typing import Any


async def first_run(app: Any) -> None:
    return None
