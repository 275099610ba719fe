"""Partners' zip and gzip archives, expanded as a stream under hard limits.

An archive must hold exactly one file. It is expanded into a file object, never onto a path, so names
inside the archive (``../x``, ``/etc/x``) mean nothing here. Limits on entries, expanded size and
compression ratio are checked from the archive's own directory first and again on the bytes actually
produced, because a hostile archive can lie about its sizes.

Pitfalls:
    ``zipfile`` reads the whole central directory into memory, so the entry count is read from the
    end-of-central-directory record before ``zipfile`` is given the file.
    Messages never include names from inside the archive: a partner may name a file after a child.
"""

from __future__ import annotations

import gzip
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
ZIP_END_RECORD = b"PK\x05\x06"
ZIP_END_RECORD_SIZE = 22
ZIP_MAX_COMMENT = 0xFFFF
MAC_METADATA = "__MACOSX/"
SYMLINK_MODE = 0o120000
FILE_TYPE_MASK = 0o170000

# Rule codes for a rejection report: the partner is told what to fix, nothing about the contents.
ARCHIVE_RULES = {
    "ARC-001": "The archive could not be read (damaged, encrypted or an unsupported kind). Send a plain zip or gz.",
    "ARC-002": "The archive is over the limits on entries, expanded size or compression ratio.",
    "ARC-003": "The archive must hold exactly one file, with no links or folders of files.",
}


@dataclass(frozen=True, kw_only=True)
class ArchiveLimits:
    """Hard caps on what expanding one archive may produce."""

    max_entries: int = 16
    max_expanded_bytes: int = 4 << 30
    max_ratio: int = 100
    ratio_floor_bytes: int = 1 << 20
    """Below this many expanded bytes the ratio is not checked: a small file can't hurt, however packed."""


class ArchiveRefused(Exception):
    """The archive was not expanded; ``code`` is one of ARCHIVE_RULES. No names or contents inside."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def archive_kind(name: str) -> str | None:
    """``"zip"`` or ``"gz"`` for a file name ending in ``.zip`` or ``.gz``, else None."""
    lowered = name.lower()
    if lowered.endswith(".zip"):
        return "zip"
    if lowered.endswith(".gz"):
        return "gz"
    return None


def expand(path: Path, kind: str, out: BinaryIO, limits: ArchiveLimits | None = None) -> int:
    """Write the one file inside the archive at ``path`` to ``out``; return its size, or raise ArchiveRefused."""
    limits = limits or ArchiveLimits()
    budget = _ExpansionBudget(out, compressed_size=path.stat().st_size, limits=limits)
    try:
        if kind == "zip":
            _expand_zip(path, budget, limits)
        elif kind == "gz":
            _expand_gz(path, budget)
        else:
            raise ValueError(f"unknown archive kind {kind!r}")
    except ArchiveRefused:
        raise
    except (zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise ArchiveRefused("ARC-001", f"unreadable {kind} archive ({type(exc).__name__})") from None
    return budget.written


class _ExpansionBudget:
    """A writer that refuses to pass on more bytes than the limits allow."""

    def __init__(self, out: BinaryIO, *, compressed_size: int, limits: ArchiveLimits):
        self.out = out
        self.written = 0
        self.cap = limits.max_expanded_bytes
        self.ratio_cap = max(limits.ratio_floor_bytes, limits.max_ratio * max(compressed_size, 1))

    def check(self, size: int) -> None:
        if size > self.cap:
            raise ArchiveRefused("ARC-002", f"expands to more than {self.cap} bytes")
        if size > self.ratio_cap:
            raise ArchiveRefused("ARC-002", "expands beyond the allowed compression ratio")

    def write(self, data: bytes) -> None:
        self.check(self.written + len(data))
        self.out.write(data)
        self.written += len(data)


def _expand_zip(path: Path, budget: _ExpansionBudget, limits: ArchiveLimits) -> None:
    declared_entries = _zip_entry_count(path)
    if declared_entries > limits.max_entries:
        raise ArchiveRefused("ARC-002", f"holds {declared_entries} entries, more than {limits.max_entries}")
    with zipfile.ZipFile(path) as archive:
        entries = archive.infolist()
        if len(entries) > limits.max_entries:
            raise ArchiveRefused("ARC-002", f"holds {len(entries)} entries, more than {limits.max_entries}")
        files = [e for e in entries if not e.is_dir() and not e.filename.startswith(MAC_METADATA)]
        if len(files) != 1:
            raise ArchiveRefused("ARC-003", f"holds {len(files)} files, not one")
        (entry,) = files
        if (entry.external_attr >> 16) & FILE_TYPE_MASK == SYMLINK_MODE:
            raise ArchiveRefused("ARC-003", "the file inside is a link")
        if entry.flag_bits & 0x1:
            raise ArchiveRefused("ARC-001", "the file inside is encrypted")
        budget.check(entry.file_size)
        with archive.open(entry) as member:
            while chunk := member.read(CHUNK):
                budget.write(chunk)


def _expand_gz(path: Path, budget: _ExpansionBudget) -> None:
    with gzip.open(path, "rb") as member:
        while chunk := member.read(CHUNK):
            budget.write(chunk)


def _zip_entry_count(path: Path) -> int:
    """The entry count in the end-of-central-directory record (0xFFFF means "more than fit here")."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        tail_size = min(size, ZIP_END_RECORD_SIZE + ZIP_MAX_COMMENT)
        handle.seek(size - tail_size)
        tail = handle.read(tail_size)
    at = tail.rfind(ZIP_END_RECORD)
    if at < 0 or len(tail) - at < ZIP_END_RECORD_SIZE:
        raise ArchiveRefused("ARC-001", "not a zip archive")
    (total_entries,) = struct.unpack("<H", tail[at + 10 : at + 12])
    return total_entries
