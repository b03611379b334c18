"""The only place pyroute2 objects are opened; they never leave engine/net.

pyroute2 is imported lazily (its package import costs ~0.1 s) so that the pure parts of engine.net
and the port forwarder stay cheap to import.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import Any

from engine.errors import NetworkSetupError


def netlink_error(exc: BaseException, what: str) -> NetworkSetupError:
    """Translate a pyroute2 NetlinkError / OSError into a one-line NetworkSetupError."""
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        if code == errno.EPERM:
            return NetworkSetupError(f"{what}: operation not permitted (networking needs CAP_NET_ADMIN)")
        return NetworkSetupError(f"{what}: {os.strerror(code)}")
    return NetworkSetupError(f"{what}: {exc}")


@contextlib.contextmanager
def iproute(what: str, netns: str | None = None) -> Iterator[Any]:
    """An ``IPRoute`` socket (inside ``netns`` when named), closed on exit.

    Errors inside the block become NetworkSetupError naming ``what``.
    """
    try:
        from pyroute2 import IPRoute
    except ImportError as exc:  # pragma: no cover - pyroute2 is a dependency
        raise NetworkSetupError("pyroute2 is not installed; bridge networking is unavailable") from exc
    try:
        ipr = IPRoute(netns=netns) if netns is not None else IPRoute()
    except Exception as exc:
        raise netlink_error(exc, what) from exc
    try:
        yield ipr
    except NetworkSetupError:
        raise
    except Exception as exc:
        raise netlink_error(exc, what) from exc
    finally:
        with contextlib.suppress(Exception):
            ipr.close()


def is_netlink_error(exc: BaseException, *codes: int) -> bool:
    """True when ``exc`` is a netlink/OS error with one of ``codes``."""
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    return code in codes
