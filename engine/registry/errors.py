"""Distribution-spec error bodies and HTTP statuses -> one-line RegistryError messages (pure).

A registry answers ``{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "...", "detail": ...}]}``.
The code survives in ``RegistryError.code``; the message tells the user what to do next.
"""

from __future__ import annotations

import json
from typing import Any

from engine.errors import AuthenticationError, RegistryError

MAX_ERROR_BODY = 64 * 1024

_HINTS = {
    "UNAUTHORIZED": "run `dockyard login {registry}`",
    "DENIED": "check that you may access {target} (`dockyard login {registry}`)",
    "NAME_UNKNOWN": "repository {repository} does not exist on {registry}",
    "MANIFEST_UNKNOWN": "{target} was not found on {registry}",
    "BLOB_UNKNOWN": "a blob of {target} is missing on {registry}",
    "TOOMANYREQUESTS": "the registry's rate limit was reached; wait and retry, or log in",
    "UNSUPPORTED": "{registry} does not support this operation",
    "DIGEST_INVALID": "the registry rejected content whose digest did not match",
    "MANIFEST_INVALID": "{registry} refused the manifest of {target}",
    "MANIFEST_BLOB_UNKNOWN": "{registry} lacks a blob the manifest of {target} references",
    "NAME_INVALID": "{repository} is not a valid repository name for {registry}",
    "TAG_INVALID": "the tag of {target} is not valid on {registry}",
    "SIZE_INVALID": "the registry rejected a blob whose size did not match",
    "BLOB_UPLOAD_UNKNOWN": "the upload session expired on {registry}",
    "BLOB_UPLOAD_INVALID": "{registry} refused a blob upload",
    "PAGINATION_NUMBER_INVALID": "{registry} refused the page size",
}

_STATUS_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 405: "UNSUPPORTED", 429: "TOOMANYREQUESTS"}


def parse_error_body(body: bytes) -> list[tuple[str, str]]:
    """[(code, message)] from a distribution error body; [] when it is not one."""
    try:
        data: Any = json.loads(body[:MAX_ERROR_BODY])
    except (ValueError, UnicodeDecodeError):
        return []
    items = data.get("errors") if isinstance(data, dict) else None
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("code"), str):
            message = item.get("message")
            out.append((item["code"].upper(), message if isinstance(message, str) else ""))
    return out


def registry_error(
    status: int, body: bytes, *, registry: str, repository: str | None = None, target: str | None = None,
) -> RegistryError:
    """The RegistryError for a failed response (status + body)."""
    errors = parse_error_body(body)
    code = errors[0][0] if errors else _STATUS_CODES.get(status)
    server_message = errors[0][1] if errors else ""
    if code == "NOT_FOUND":
        code = "MANIFEST_UNKNOWN" if target else "NAME_UNKNOWN"
    fields = {"registry": registry, "repository": repository or "?", "target": target or repository or registry}
    hint = _HINTS.get(code or "")
    label = (code or f"HTTP {status}").lower().replace("_", " ")
    if hint:
        message = f"{label}: {hint.format(**fields)}"
    else:
        detail = _one_line(server_message) or f"HTTP {status}"
        message = f"{label}: {detail} ({fields['target']})"
    if code in ("UNAUTHORIZED",) or status == 401:
        return AuthenticationError(message, code=code or "UNAUTHORIZED", status=status)
    return RegistryError(message, code=code, status=status)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]
