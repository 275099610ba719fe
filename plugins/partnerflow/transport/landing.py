"""The landing area: every byte received, kept immutably under its sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from partnerflow.core.paths import var_dir


@dataclass(frozen=True)
class LandedFile:
    sha256: str
    size: int
    relative_path: str

    @property
    def path(self) -> Path:
        return landing_dir() / self.relative_path


def landing_dir() -> Path:
    path = var_dir() / "landing"
    path.mkdir(parents=True, exist_ok=True)
    return path


def land(write: Callable[[BinaryIO], object]) -> LandedFile:
    """Land whatever ``write`` writes into a file object; name it by its sha256, read-only.

    The bytes go to a temporary file inside the landing area first, hashed as they are written, so a failed
    transfer never leaves a partial file under a content name. They are flushed to disk before the atomic
    rename, so a ledger row committed afterwards never points at bytes a crash could lose.
    """
    directory = landing_dir()
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out:
            hashing = _HashingWriter(out)
            write(hashing)  # type: ignore[arg-type]
            out.flush()
            os.fsync(out.fileno())
        digest = hashing.digest.hexdigest()
        relative = f"{digest[:2]}/{digest}"
        final = directory / relative
        final.parent.mkdir(exist_ok=True)
        if final.exists():
            os.unlink(tmp_name)
        else:
            os.chmod(tmp_name, 0o444)
            os.replace(tmp_name, final)
        return LandedFile(sha256=digest, size=hashing.size, relative_path=relative)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def land_bytes(data: bytes) -> LandedFile:
    return land(lambda out: out.write(data))


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()
