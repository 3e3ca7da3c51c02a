"""How far validation has approved an object's bytes, for an upload that must not run ahead.

Validation reads the object on one thread while an upload streams it on another. The upload
sends a chunk only once validation has checked every line in it and found no problem so far.
The object's last byte is approved only when the whole file is known to be exactly what is
being uploaded; until then the upload cannot complete, so an abandoned upload never becomes a
file on OpenAI. For a file found invalid late, the lines before the problem did go out, in a
request that was then cut short.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator


class UploadAbandoned(Exception):
    """Validation found the upload running alongside it is not the one the file needs."""


class ApprovedBytes:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._approved = 0
        self._abandoned = False

    def approve(self, end: int) -> None:
        """Everything before byte `end` has been validated."""
        with self._changed:
            if end > self._approved:
                self._approved = end
                self._changed.notify_all()

    def abandon(self) -> None:
        with self._changed:
            self._abandoned = True
            self._changed.notify_all()

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    @property
    def until(self) -> int:
        """The end of the approved bytes so far."""
        return self._approved

    def wait_for(self, end: int) -> None:
        """Block until byte `end` is approved; raise UploadAbandoned if it never will be."""
        with self._changed:
            self._changed.wait_for(lambda: self._abandoned or self._approved >= end)
            if self._abandoned:
                raise UploadAbandoned("validation abandoned the upload")

    def follow(self, chunks: Iterable[bytes], start: int) -> Iterator[bytes]:
        """Pass on the chunks of a range beginning at byte `start`, each once it is approved."""
        position = start
        for chunk in chunks:
            position += len(chunk)
            self.wait_for(position)
            yield chunk
