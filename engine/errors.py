"""The one exception tree every part of the engine raises.

Foreign exceptions (OSError, httpx, pyroute2, runc exit codes, json) are translated once, at the
boundary where they happen, with ``raise XError(...) from exc``.  Every message is one line a user can
act on; it never contains a secret.

::

    EngineError
     ├── InvalidInputError            bad user or outside input that was parsed and refused
     │    ├── InvalidDigestError
     │    ├── InvalidReferenceError
     │    ├── InvalidPlatformError
     │    ├── InvalidManifestError    manifest / index / config JSON that is not valid
     │    ├── InvalidPortSpecError
     │    ├── DockerfileError         carries file and line: "Dockerfile:7: unknown instruction: COPPY"
     │    └── ShellExpansionError     a word BuildKit's shell lexer refuses: "failed to process "${x": ..."
     ├── NotFoundError
     │    ├── ImageNotFoundError
     │    ├── BlobNotFoundError
     │    └── ContainerNotFoundError
     ├── ConflictError                name already in use, image in use by a container, ...
     ├── StoreError                   the local store: corruption, locks, disk
     │    ├── DigestMismatchError     bytes that do not hash to what was promised
     │    ├── SizeMismatchError
     │    └── NoSpaceError            "no space left on <path>"
     ├── ArchiveError                 a tar/gzip that cannot be read
     │    └── UnsafeArchiveError      a tar entry that would escape its destination
     ├── RegistryError                distribution-spec errors keep their code (MANIFEST_UNKNOWN, ...)
     │    ├── AuthenticationError     401 / wrong password / missing credentials
     │    ├── CredentialHelperError
     │    └── RegistryUnavailableError connection refused, TLS, timeouts after retries
     ├── BuildError
     │    └── BuildStepError          a RUN step exited non-zero (exit code, last lines)
     ├── ContainerRuntimeError        runc/crun failures, monitor failures
     │    └── RuntimeUnavailableError no usable OCI runtime
     ├── NetworkSetupError
     │    └── PortInUseError
     └── WatchError
"""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""

    def __init__(self, message: str) -> None:
        # One line, always: a user reads it in a terminal status bar or a notification.
        self.message = " ".join(str(message).split())
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class InvalidInputError(EngineError):
    """Input from a user, a file or a server that dockyard refuses."""


class InvalidDigestError(InvalidInputError):
    pass


class InvalidReferenceError(InvalidInputError):
    pass


class InvalidPlatformError(InvalidInputError):
    pass


class InvalidManifestError(InvalidInputError):
    pass


class InvalidPortSpecError(InvalidInputError):
    pass


class DockerfileError(InvalidInputError):
    """A Dockerfile that cannot be parsed; the message names file and line."""

    def __init__(self, message: str, *, file: str = "Dockerfile", line: int | None = None) -> None:
        self.file = file
        self.line = line
        self.problem = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")


class ShellExpansionError(InvalidInputError):
    """A word that cannot be expanded (``${}``, an unterminated quote, ``${v:?msg}`` on an unset v)."""


class NotFoundError(EngineError):
    pass


class ImageNotFoundError(NotFoundError):
    pass


class BlobNotFoundError(NotFoundError):
    pass


class ContainerNotFoundError(NotFoundError):
    pass


class ConflictError(EngineError):
    pass


class StoreError(EngineError):
    pass


class DigestMismatchError(StoreError):
    pass


class SizeMismatchError(StoreError):
    pass


class NoSpaceError(StoreError):
    pass


class ArchiveError(EngineError):
    pass


class UnsafeArchiveError(ArchiveError):
    pass


class RegistryError(EngineError):
    """An error from a registry; ``code`` is the distribution spec's code when the registry sent one."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        self.code = code
        self.status = status
        super().__init__(message)


class AuthenticationError(RegistryError):
    pass


class CredentialHelperError(RegistryError):
    pass


class RegistryUnavailableError(RegistryError):
    pass


class BuildError(EngineError):
    pass


class BuildStepError(BuildError):
    def __init__(
        self, message: str, *, step: int | None = None, exit_code: int | None = None,
        last_lines: tuple[str, ...] = (),
    ) -> None:
        self.step = step
        self.exit_code = exit_code
        self.last_lines = last_lines
        super().__init__(message)


class ContainerRuntimeError(EngineError):
    pass


class RuntimeUnavailableError(ContainerRuntimeError):
    pass


class NetworkSetupError(EngineError):
    pass


class PortInUseError(NetworkSetupError):
    pass


class WatchError(EngineError):
    pass


def os_error_message(exc: OSError, what: str) -> str:
    """A one-line message for an OSError met while doing ``what`` (no traceback, names the cause)."""
    import errno

    target = exc.filename if exc.filename is not None else ""
    if exc.errno == errno.ENOSPC:
        return f"{what}: no space left on {target or 'device'}"
    reason = exc.strerror or exc.__class__.__name__
    return f"{what}: {reason}{': ' + str(target) if target else ''}"


def from_os_error(exc: OSError, what: str) -> EngineError:
    """Translate an OSError into the engine's tree (ENOSPC becomes NoSpaceError)."""
    import errno

    if exc.errno == errno.ENOSPC:
        return NoSpaceError(os_error_message(exc, what))
    return StoreError(os_error_message(exc, what))
