"""The landing area: every byte received, kept immutably under its sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from partnerflow.paths import var_dir

CHUNK = 1 << 20


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


def land(write: Callable[[BinaryIO], None]) -> LandedFile:
    """Land whatever ``write`` writes into a file object; name it by its sha256, read-only.

    The bytes go to a temporary file inside the landing area first, so a failed transfer never leaves a
    partial file under a content name, and the final rename is atomic.
    """
    directory = landing_dir()
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        digest, size = _sha256_of(Path(tmp_name))
        relative = f"{digest[:2]}/{digest}"
        final = directory / relative
        final.parent.mkdir(exist_ok=True)
        if final.exists():
            os.unlink(tmp_name)
        else:
            os.chmod(tmp_name, 0o444)
            os.replace(tmp_name, final)
        return LandedFile(sha256=digest, size=size, relative_path=relative)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def land_bytes(data: bytes) -> LandedFile:
    return land(lambda out: out.write(data))


def _sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
