"""Find duplicate custom_ids in memory that does not grow with the number of requests.

A set of every custom_id seen grows with the file: about 140 bytes a request in a dict, so 3
million short requests alone outgrow the submit function's 512 MB. Instead each custom_id becomes
a small record (its digest, its line number, and its first characters for the message), gathered
in a run of bounded size; a full run is sorted and spilled to a file in a temporary directory.
At the end the sorted runs are merged: records with the same digest come together, lowest line
first, so every later line with that digest is a duplicate of that first line.

Memory is one run plus a read buffer per run being merged. Disk is about 30 bytes a request for
short ids (up to 270 for long non-ASCII ones), removed on `close`. A file that fits in one run
never touches the disk.
"""

from __future__ import annotations

import hashlib
import heapq
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

DIGEST_BYTES = 16
# Messages quote 60 characters and mark a longer id with "…": one more tells the two apart.
SHOWN_ID_CHARS = 61
DEFAULT_RUN_BYTES = 32 * 1024 * 1024
# Runs merged at once; more are first merged in rounds, so open files and buffers stay bounded.
DEFAULT_FAN_IN = 64
# A record is digest | line | length of the id's prefix | the prefix. The line is big-endian so
# that comparing records as bytes orders them by digest, then by line.
_TAIL = struct.Struct(">QB")
_HEADER_BYTES = DIGEST_BYTES + _TAIL.size
# What one record costs in memory beyond its bytes: the bytes object's header, its list slot.
_RECORD_OVERHEAD = 33 + 8
_READ_BUFFER_BYTES = 64 * 1024


def custom_id_digest(custom_id: str) -> bytes:
    """A fixed DIGEST_BYTES per custom_id: files may hold millions, of any length."""
    # JSON escapes can produce lone surrogates; surrogatepass keeps them hashable.
    return hashlib.blake2b(
        custom_id.encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES
    ).digest()


@dataclass(frozen=True)
class Duplicate:
    line: int
    first_line: int
    custom_id: str  # its first SHOWN_ID_CHARS characters


class DuplicateFinder:
    """Collects (digest, line) pairs fed in line order; `duplicates` reports the repeats.

    Use it as a context manager, or call `close`: that removes every spill file, however the
    caller ended."""

    def __init__(
        self,
        spill_dir: Path | None = None,
        *,
        run_bytes: int = DEFAULT_RUN_BYTES,
        fan_in: int = DEFAULT_FAN_IN,
    ) -> None:
        if fan_in < 2:
            raise ValueError("fan_in must be at least 2")
        self._parent = spill_dir or Path(tempfile.gettempdir())
        self._run_limit = run_bytes
        self._fan_in = fan_in
        self._run: list[bytes] = []
        self._run_bytes = 0
        self._runs: list[Path] = []
        self._written = 0
        self._dir: Path | None = None  # made at the first spill

    def add(self, digest: bytes, line: int, custom_id: str) -> None:
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"a digest must be {DIGEST_BYTES} bytes")
        shown = custom_id[:SHOWN_ID_CHARS].encode("utf-8", "surrogatepass")
        record = digest + _TAIL.pack(line, len(shown)) + shown
        self._run.append(record)
        self._run_bytes += len(record) + _RECORD_OVERHEAD
        if self._run_bytes >= self._run_limit:
            self._spill()

    def duplicates(self) -> Iterator[Duplicate]:
        """Every line whose digest an earlier line had, in digest order (not line order)."""
        if not self._runs:
            self._run.sort()
            records: Iterable[bytes] = self._run
        else:
            self._spill()
            while len(self._runs) > self._fan_in:
                self._merge_round()
            records = heapq.merge(*(_read_run(path) for path in self._runs))
        return _repeats(records)

    def close(self) -> None:
        self._run = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._runs = []

    def __enter__(self) -> DuplicateFinder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _spill(self) -> None:
        if not self._run:
            return
        self._run.sort()
        self._write_run(self._run)
        self._run = []
        self._run_bytes = 0

    def _merge_round(self) -> None:
        merging, self._runs = self._runs[: self._fan_in], self._runs[self._fan_in :]
        self._write_run(heapq.merge(*(_read_run(path) for path in merging)))
        for path in merging:
            path.unlink()

    def _write_run(self, records: Iterable[bytes]) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="duplicates-", dir=self._parent))
        path = self._dir / f"run-{self._written:06d}"
        self._written += 1
        with path.open("wb", buffering=_READ_BUFFER_BYTES) as out:
            out.writelines(records)
        self._runs.append(path)


def _read_run(path: Path) -> Iterator[bytes]:
    with path.open("rb", buffering=_READ_BUFFER_BYTES) as run:
        while header := run.read(_HEADER_BYTES):
            yield header + run.read(header[-1])


def _repeats(records: Iterable[bytes]) -> Iterator[Duplicate]:
    first_digest, first_line = b"", 0
    for record in records:
        line, _ = _TAIL.unpack_from(record, DIGEST_BYTES)
        if record[:DIGEST_BYTES] == first_digest:
            shown = record[_HEADER_BYTES:].decode("utf-8", "surrogatepass")
            yield Duplicate(line, first_line, shown)
        else:
            first_digest, first_line = record[:DIGEST_BYTES], line
