"""Content-addressed blob ingest: temp file in the store, verify size and digest, fsync, link into place.

A blob that exists is never rewritten (``os.link`` refuses to replace), and nothing unverified is ever
visible under ``blobs/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from types import TracebackType

from engine.errors import DigestMismatchError, SizeMismatchError, StoreError, from_os_error
from engine.oci.digest import Digest

CHUNK = 1 << 20


class BlobWriter:
    """Stream bytes into the store; ``commit()`` verifies and publishes, anything else discards."""

    def __init__(self, blobs_dir: Path, ingest_dir: Path, expected: Digest | None, size: int | None) -> None:
        self._blobs_dir = blobs_dir
        self._expected = expected
        self._expected_size = size
        self._hash: hashlib._Hash | None = hashlib.new(expected.algorithm if expected else "sha256")
        self.bytes_written = 0
        self._path = ingest_dir / f"{secrets.token_hex(8)}.partial"
        try:
            self._fd: int | None = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise from_os_error(exc, "cannot create a blob in the store") from exc
        self._result: tuple[Digest, int] | None = None

    @property
    def temp_path(self) -> Path:
        return self._path

    def trust_caller_digest(self) -> None:
        """Skip hashing: the caller hashes exactly the bytes it writes (a layer the builder compresses
        and hashes anyway) and hands that digest to :meth:`commit`.  Call before the first write.

        For locally produced bytes only; anything from outside the process keeps the writer's own
        hashing (a registry blob, an archive member).  Size checks, fsync and the atomic link stay.
        """
        if self.bytes_written:
            raise StoreError("trust_caller_digest() must come before the first write")
        self._hash = None

    def write(self, chunk: bytes | memoryview) -> None:
        if self._fd is None:
            raise StoreError("blob writer is closed")
        if self._expected_size is not None and self.bytes_written + len(chunk) > self._expected_size:
            self.abort()
            raise SizeMismatchError(
                f"blob {self._expected or ''} is larger than the {self._expected_size} bytes promised"
            )
        if self._hash is not None:
            self._hash.update(chunk)
        view = memoryview(chunk)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            self.abort()
            raise from_os_error(exc, "cannot write a blob to the store") from exc
        self.bytes_written += len(chunk)

    def commit(self, digest: Digest | None = None) -> tuple[Digest, int]:
        """Verify and publish.  ``digest`` is the caller's hash of what it wrote: required after
        :meth:`trust_caller_digest`, otherwise checked against the writer's own hash."""
        if self._result is not None:
            return self._result
        if self._fd is None:
            raise StoreError("blob writer is closed")
        if self._hash is not None:
            own = Digest(self._hash.name if self._hash.name in ("sha256", "sha512") else "sha256",
                         self._hash.hexdigest())
            if digest is not None and digest != own:
                self.abort()
                raise DigestMismatchError(f"blob content hashes to {own}, not the {digest} its writer computed")
            digest = own
        elif digest is None:
            self.abort()
            raise StoreError("commit() needs the caller's digest after trust_caller_digest()")
        if self._expected_size is not None and self.bytes_written != self._expected_size:
            self.abort()
            raise SizeMismatchError(
                f"blob {self._expected or digest}: got {self.bytes_written} bytes, expected {self._expected_size}"
            )
        if self._expected is not None and digest != self._expected:
            self.abort()
            raise DigestMismatchError(f"blob content hashes to {digest}, not the expected {self._expected}")
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            final_dir = self._blobs_dir / digest.algorithm
            final_dir.mkdir(parents=True, exist_ok=True)
            final = final_dir / digest.hex
            with contextlib.suppress(FileExistsError):
                os.link(self._path, final)
            os.unlink(self._path)
            dir_fd = os.open(final_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.abort()
            raise from_os_error(exc, "cannot store a blob") from exc
        self._result = (digest, self.bytes_written)
        return self._result

    def abort(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            os.unlink(self._path)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None or self._result is None:
            self.abort()


def hash_file(path: Path, algorithm: str = "sha256") -> tuple[str, int]:
    h = hashlib.new(algorithm)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size
