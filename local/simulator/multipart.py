"""A werkzeug Request that spools multipart file fields straight into the simulator's dir.

Werkzeug's default keeps small parts in memory and big ones in an anonymous temp file; we
need a named file on the same filesystem so a 200 MB upload can be renamed into the store
instead of copied.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO, Any

from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Request


class SpoolingRequest(Request):
    # Non-file form fields (e.g. `purpose`) stay small; file fields go to disk.
    max_form_memory_size = 1024 * 1024

    def __init__(self, environ: dict[str, Any], spool_dir: Path) -> None:
        super().__init__(environ)
        self.spool_dir = spool_dir

    def _get_file_stream(self, *_args: Any, **_kwargs: Any) -> IO[bytes]:
        return tempfile.NamedTemporaryFile(dir=self.spool_dir, prefix="spool-", delete=False)

    def spooled_path(self, field: str) -> tuple[Path, str] | None:
        """Hand over a file field: its on-disk path (ours to move) and its client filename."""
        storage: FileStorage | None = self.files.get(field)
        if storage is None:
            return None
        stream = storage.stream
        stream.flush()
        stream.close()
        return Path(stream.name), storage.filename or ""

    def discard_spooled(self) -> None:
        """Remove spooled files nobody claimed (errors, or fields we do not use)."""
        parsed = self.__dict__.get("files")  # only if the body was parsed at all
        if not parsed:
            return
        for storage in parsed.values():
            storage.stream.close()
            name = getattr(storage.stream, "name", None)
            if isinstance(name, str):
                Path(name).unlink(missing_ok=True)
