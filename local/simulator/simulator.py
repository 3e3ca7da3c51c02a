"""`BatchSimulator`: the facade tests, benchmarks and the demo use."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .batches import BatchBook
from .clock import Clock, ManualClock
from .faults import CallLog, Fault, FaultPlan
from .handlers import Handlers
from .lifecycle import OutcomeQueue, Timings
from .server import LoopbackServer, SimulatorApp
from .store import FileStore, IdFactory
from .videos import content_bytes


class LiveBatches(Mapping[str, dict[str, Any]]):
    """Read-only id -> Batch JSON, with each status computed when it is read."""

    def __init__(self, book: BatchBook) -> None:
        self._book = book

    def __getitem__(self, batch_id: str) -> dict[str, Any]:
        try:
            record = self._book.get(batch_id)
        except Exception:
            raise KeyError(batch_id) from None
        return self._book.render(record)

    def __iter__(self) -> Iterator[str]:
        return iter(self._book.ids_in_order())

    def __len__(self) -> int:
        return len(self._book.ids_in_order())


class BatchSimulator:
    def __init__(
        self,
        api_key: str = "sk-test",
        clock: Clock | None = None,
        seed: int = 0,
        timings: Timings | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.clock: Any = clock if clock is not None else ManualClock()
        self.seed = seed
        self.timings = timings or Timings()
        self.host = host
        self.port = port
        self.latency = 0.0
        # Bytes per second at which request bodies arrive, as over a link to OpenAI; None for
        # loopback speed. For benchmarks: the wait costs no CPU, as a network's does not.
        self.link_bytes_per_second: float | None = None
        # About how many bytes each generated PNG takes (None: a tiny picture), for tests of
        # large image result lines.
        self.picture_bytes: int | None = None
        self.faults = FaultPlan()
        self.outcomes = OutcomeQueue()
        self.calls = CallLog()
        self._root: Path | None = None
        self._server: LoopbackServer | None = None
        self._book: BatchBook | None = None
        self._files: FileStore | None = None

    # -- lifecycle of the server ---------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._root = Path(tempfile.mkdtemp(prefix="openai-batch-sim-"))
        ids = IdFactory(self.seed)
        self._files = FileStore(self._root, ids, self.clock)
        self._book = BatchBook(
            self._files,
            ids,
            self.clock,
            self.timings,
            self.outcomes,
            self.seed,
            picture_bytes=lambda: self.picture_bytes,
        )
        app = SimulatorApp(
            Handlers(self._files, self._book, self.clock),
            api_key=self.api_key,
            faults=self.faults,
            calls=self.calls,
            spool_dir=self._root,
            latency=lambda: self.latency,
            link_rate=lambda: self.link_bytes_per_second,
        )
        self._server = LoopbackServer(app, self.host, self.port)
        self.port = self._server.port
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._book is not None:
            self._book.close()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return f"http://{self.host}:{self.port}/v1"

    # -- test helpers --------------------------------------------------------------------

    @property
    def batches(self) -> Mapping[str, dict[str, Any]]:
        return LiveBatches(self._require(self._book))

    def finish_reading_inputs(self) -> None:
        """Wait for the background reads of batch inputs that create started (benchmarks call
        this between runs, so that one run's reading does not slow the next)."""
        self._require(self._book).settle_all()

    def leave_out_results(self, *custom_ids: str) -> None:
        """Leave these requests' result lines out of every batch's output and error files."""
        self._require(self._book).missing_results.update(custom_ids)

    def release(self, batch_id: str) -> None:
        """Let a stuck_validating / stuck_finalizing batch carry on from now."""
        self._require(self._book).release(batch_id)

    def file_ids(self, purpose: str | None = "batch") -> list[str]:
        """The files that exist now (neither deleted nor expired) with `purpose` (batch outputs
        are "batch_output"; None: every purpose)."""
        files = self._require(self._files).all()
        return [f.id for f in files if purpose is None or f.purpose == purpose]

    def has_file(self, file_id: str) -> bool:
        """Whether the file exists now: not deleted, not expired."""
        return file_id in self.file_ids(purpose=None)

    def files_of(self, batch_id: str) -> list[str]:
        """Which of the batch's input, output and error files still exist."""
        batch = self.batches[batch_id]
        named = (batch["input_file_id"], batch["output_file_id"], batch["error_file_id"])
        return [file_id for file_id in named if file_id is not None and self.has_file(file_id)]

    def deleted_file_ids(self) -> list[str]:
        """The files deleted through `DELETE /v1/files/{file_id}`, in the order of deletion."""
        return list(self._require(self._files).deleted)

    def fail_deletes(self, times: int = 1, kind: str = "500", file_id: str | None = None) -> Fault:
        """Make the next `times` file deletes (of `file_id` only, if given) fail with `kind`
        (a 5xx, "429" or "drop"); the failed calls delete nothing."""
        where = {"file_id": file_id} if file_id is not None else None
        return self.faults.inject("DELETE /v1/files/{file_id}", kind, times, where=where)

    def file_bytes(self, file_id: str) -> bytes:
        """The bytes a file held, even once it has been deleted or has expired (for tests: the
        API serves neither)."""
        return self._require(self._files).evidence(file_id).read_bytes()

    def batch_input_bytes(self, batch_id: str) -> bytes:
        """The input the batch read, even once its input file has been deleted or expired."""
        return self._require(self._book).get(batch_id).input_path.read_bytes()

    def video_content(self, video_id: str, variant: str = "video") -> bytes:
        """The bytes `GET /v1/videos/{video_id}/content` serves for a batch-made video (even
        once its download window has closed), for tests to compare a download with."""
        stored = self._require(self._book).videos.get(video_id)
        if stored is None:
            raise KeyError(video_id)
        return content_bytes(video_id, variant, stored.seconds)

    def count(self, route: str) -> int:
        return self.calls.count(route)

    @staticmethod
    def _require[T](part: T | None) -> T:
        if part is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return part
