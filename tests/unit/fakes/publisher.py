"""SNS in memory: every notice published, in order, and scripted refusals and failures."""

from __future__ import annotations

from collections.abc import Callable

from batchdrop.errors import NoticeRefused
from batchdrop.ports import Notice


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[Notice] = []
        self.attempts = 0  # every publish, refused and failed ones included
        self._failures: list[BaseException] = []
        self.refuse: Callable[[Notice], bool] = lambda _notice: False

    def fail_next(self, error: BaseException, *, times: int = 1) -> None:
        """The next `times` publishes raise `error` (SNS unreachable, the process killed...)."""
        self._failures.extend([error] * times)

    def publish(self, notice: Notice) -> str:
        self.attempts += 1
        if self._failures:
            raise self._failures.pop(0)
        if self.refuse(notice):
            raise NoticeRefused("InvalidParameter: refused as invalid")
        self.sent.append(notice)
        return f"message-{len(self.sent)}"

    def statuses(self) -> list[str]:
        """The status attribute of each notice sent: "completed", "stuck", "needs_attention"..."""
        return [notice.attributes.get("status", "") for notice in self.sent]
