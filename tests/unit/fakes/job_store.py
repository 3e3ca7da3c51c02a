"""The job repository in memory, with the DynamoDB store's conditional writes.

Every method the use cases call on `JobStore` is here, with its name, its signature and its
condition: a write whose condition does not hold changes nothing and raises the same
`StaleRecordError` (or, where the real store swallows it, is swallowed the same way). Records
come back as the real store returns them: copies, where a field set to None is absent, and with
the sparse index's `active_pk`/`active_sk` kept as fields.

Tests may interpose on a write, or on a read of the records (`before`): a crash, a kill, or an
overlapping writer acting at an exact step.

tests/integration/test_fake_job_store.py runs the same scripts of calls against this store and
the DynamoDB one (on moto), and requires them to see the same.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from typing import Any, cast

from batchdrop.adapters.job_store import (
    ACTIVE_PARTITION,
    CLEANUP_PARTITION,
    SUBMITTING_PARTITION,
    batch_key,
    job_key,
)
from batchdrop.errors import StaleRecordError
from batchdrop.records import Batch, BatchRecord, FileCleanup, JobRecord, openai_fields

Item = dict[str, Any]
Key = tuple[str, str]
Condition = Callable[[Item | None], bool]


def exists(item: Item | None) -> bool:
    return item is not None


def absent(item: Item | None) -> bool:
    return item is None


def lacks(field: str) -> Condition:
    return lambda item: item is None or field not in item


def equals(field: str, value: Any) -> Condition:
    return lambda item: item is not None and item.get(field) == value


class FakeJobStore:
    def __init__(self, clock: Callable[[], float], retention_days: int = 90) -> None:
        self._clock = clock
        self._retention_seconds = retention_days * 86_400
        self._items: dict[Key, Item] = {}
        self._lock = threading.RLock()
        self._hooks: dict[str, list[Callable[..., None]]] = {}
        self.writes: list[str] = []  # every write that took effect, by method name

    # --- for tests ------------------------------------------------------------------------------

    def before(self, method: str, hook: Callable[..., None]) -> None:
        """Run `hook(*args, **kwargs)` the next time `method` is called, before it runs (once).
        A hook that raises stands for a crash or a kill just before that step."""
        self._hooks.setdefault(method, []).append(hook)

    def job(self, job_id: str) -> Item:
        """The job as stored (a copy), for assertions."""
        return _copy(self._items[_key(job_key(job_id))])

    def part(self, job_id: str, index: int) -> Item:
        return _copy(self._items[_key(batch_key(job_id, index))])

    def _hook(self, method: str, *args: Any, **kwargs: Any) -> None:
        hooks = self._hooks.get(method)
        if hooks:
            hooks.pop(0)(*args, **kwargs)

    # --- jobs -----------------------------------------------------------------------------------

    def create_job(self, job_id: str, fields: JobRecord) -> bool:
        self._hook("create_job", job_id, fields)
        now = self.now()
        item: Item = {**job_key(job_id), "job_id": job_id, "created_at": now, "updated_at": now}
        item.update(fields)
        if item.get("status") == "submitting":
            item |= {"active_pk": SUBMITTING_PARTITION, "active_sk": f"{now:012d}#{job_id}"}
        try:
            self._put(item, absent, "create_job")
        except StaleRecordError:
            return False
        return True

    def get_job(self, job_id: str) -> JobRecord | None:
        self._hook("get_job", job_id)
        with self._lock:
            item = self._items.get(_key(job_key(job_id)))
            return _job(_copy(item)) if item is not None else None

    def update_job(
        self,
        job_id: str,
        changes: JobRecord,
        *,
        expected_status: str | set[str] | None = None,
        finished: bool = False,
    ) -> None:
        self._hook("update_job", job_id, changes)
        written: Item = {**changes, "updated_at": self.now()}
        if written.get("status", "submitting") != "submitting":
            written |= {"active_pk": None, "active_sk": None, "lease_until": None}
        if finished:
            written["expires_at"] = self.now() + self._retention_seconds
        allowed = {expected_status} if isinstance(expected_status, str) else expected_status

        def condition(item: Item | None) -> bool:
            return item is not None and (allowed is None or item.get("status") in allowed)

        self._update(job_key(job_id), written, condition, "update_job")

    def take_submit_lease(
        self, job_id: str, lease_seconds: int, *, resume: bool
    ) -> JobRecord | None:
        self._hook("take_submit_lease", job_id)
        now = self.now()

        def lapsed(item: Item | None) -> bool:
            return (
                item is not None
                and item.get("status") == "submitting"
                and ("lease_until" not in item or item["lease_until"] <= now)
            )

        try:
            taken = self._update(
                job_key(job_id),
                {"lease_until": now + lease_seconds},
                lapsed,
                "take_submit_lease",
                increment="resumes" if resume else None,
            )
        except StaleRecordError:
            return None
        return _job(taken)

    def release_submit_lease(self, job_id: str, held_until: int, retry_at: int, error: str) -> None:
        self._hook("release_submit_lease", job_id)

        def still_ours(item: Item | None) -> bool:
            return equals("status", "submitting")(item) and equals("lease_until", held_until)(item)

        with suppress(StaleRecordError):
            self._update(
                job_key(job_id),
                {"lease_until": retry_at, "last_error": error[:500]},
                still_ours,
                "release_submit_lease",
            )

    def submitting_jobs(self) -> Iterator[JobRecord]:
        yield from map(_job, self._index(SUBMITTING_PARTITION))

    # --- finishing ------------------------------------------------------------------------------

    def update_finish_attempt(
        self, job_id: str, changes: JobRecord, *, open_until: int | None
    ) -> None:
        self._hook("update_finish_attempt", job_id, changes)
        field = "finish_attempt_until"
        still = lacks(field) if open_until is None else equals(field, open_until)

        def condition(item: Item | None) -> bool:
            return item is not None and still(item)

        self._update(job_key(job_id), changes, condition, "update_finish_attempt")

    def park_batches(self, job_id: str) -> int:
        self._hook("park_batches", job_id)
        parked = 0
        for item in self.batches(job_id):
            if item.get("active_sk") is None:
                continue
            changes = {"active_pk": None, "active_sk": None, "parked_sk": item["active_sk"]}
            with suppress(StaleRecordError):
                self._update(
                    batch_key(job_id, int(item["index"])),
                    changes,
                    equals("active_sk", item["active_sk"]),
                    "park_batches",
                )
                parked += 1
        return parked

    # --- notices --------------------------------------------------------------------------------

    def claim_notice(self, job_id: str, kind: str, lease_seconds: int) -> int | None:
        self._hook("claim_notice", job_id, kind)
        field = f"notice_{kind}"
        now = self.now()

        def claimable(item: Item | None) -> bool:
            if item is None:
                return False
            notice = item.get(field)
            if notice is None:
                return True
            return bool(
                notice.get("state") == "pending" and notice["claimed_at"] < now - lease_seconds
            )

        try:
            self._update(
                job_key(job_id),
                {field: {"state": "pending", "claimed_at": now}},
                claimable,
                "claim_notice",
            )
        except StaleRecordError:
            return None
        return now

    def release_notice(self, job_id: str, kind: str, claimed_at: int) -> None:
        self._hook("release_notice", job_id, kind)
        field = f"notice_{kind}"
        with suppress(StaleRecordError):
            self._update(
                job_key(job_id), {field: None}, _claim_is(field, claimed_at), "release_notice"
            )

    def notice_state(self, job_id: str, kind: str) -> str | None:
        # A notice's state is kept under a key built from its kind, which JobRecord cannot name.
        job: Mapping[str, Any] = self.get_job(job_id) or {}
        notice = job.get(f"notice_{kind}") or {}
        state = notice.get("state")
        return str(state) if state else None

    def mark_notice_sent(self, job_id: str, kind: str, message_id: str) -> None:
        self._hook("mark_notice_sent", job_id, kind)
        field = f"notice_{kind}"

        def pending(item: Item | None) -> bool:
            return item is not None and (item.get(field) or {}).get("state") == "pending"

        sent = {"state": "sent", "sent_at": self.now(), "message_id": message_id}
        self._update(job_key(job_id), {field: sent}, pending, "mark_notice_sent")

    def mark_notice_refused(self, job_id: str, kind: str, claimed_at: int, reason: str) -> None:
        self._hook("mark_notice_refused", job_id, kind)
        field = f"notice_{kind}"
        refused = {"state": "refused", "refused_at": self.now(), "reason": reason[:500]}
        with suppress(StaleRecordError):
            self._update(
                job_key(job_id),
                {field: refused},
                _claim_is(field, claimed_at),
                "mark_notice_refused",
            )

    # --- batches --------------------------------------------------------------------------------

    def batches(self, job_id: str) -> list[BatchRecord]:
        self._hook("batches", job_id)
        pk = f"JOB#{job_id}"
        with self._lock:
            return [
                _batch(_copy(item))
                for (item_pk, sk), item in sorted(self._items.items())
                if item_pk == pk and sk.startswith("BATCH#")
            ]

    def record_file(self, job_id: str, index: int, fields: BatchRecord) -> None:
        self._hook("record_file", job_id, index, fields)
        now = self.now()
        item: Item = {
            **batch_key(job_id, index),
            "job_id": job_id,
            "index": index,
            "status": "uploaded",
            "created_at": now,
            "updated_at": now,
            "version": 1,
            **fields,
        }
        self._put(item, lacks("batch_id"), "record_file")

    def record_batch(self, job_id: str, index: int, batch: Batch) -> None:
        self._hook("record_batch", job_id, index, batch)
        changes: BatchRecord = {
            "batch_id": batch["id"],
            "status": batch["status"],
            "active_pk": ACTIVE_PARTITION,
            "active_sk": f"{batch['created_at']:012d}#{job_id}#{index:04d}",
            "openai": openai_fields(batch),
        }
        key = batch_key(job_id, index)
        try:
            self._update(key, changes, lacks("batch_id"), "record_batch", bump_version=True)
        except StaleRecordError:
            if self._items[_key(key)].get("batch_id") != batch["id"]:
                raise
            return
        if (self.get_job(job_id) or {}).get("cancel_requested"):
            self.update_batch(job_id, index, {"cancel_requested": True})

    def update_batch(
        self,
        job_id: str,
        index: int,
        changes: BatchRecord,
        *,
        expected_version: int | None = None,
    ) -> None:
        self._hook("update_batch", job_id, index, changes)
        condition = exists if expected_version is None else equals("version", expected_version)
        self._update(
            batch_key(job_id, index), changes, condition, "update_batch", bump_version=True
        )

    def add_follow_up(self, job_id: str, index: int, fields: BatchRecord) -> None:
        self._hook("add_follow_up", job_id, index, fields)
        now = self.now()
        item: Item = {
            **batch_key(job_id, index),
            "job_id": job_id,
            "index": index,
            "created_at": now,
            "updated_at": now,
            "version": 1,
            "active_pk": ACTIVE_PARTITION,
            "active_sk": f"{now:012d}#{job_id}#{index:04d}",
            **fields,
        }
        self._put(item, absent, "add_follow_up")

    def retire_batches(self, job_id: str, indices: list[int]) -> None:
        self._hook("retire_batches", job_id, indices)
        for index in indices:
            changes: Item = {
                "active_pk": None,
                "active_sk": None,
                "expires_at": self.now() + self._retention_seconds,
            }
            self._update(batch_key(job_id, index), changes, exists, "retire_batches")

    def note_duplicates(
        self, job_id: str, index: int, found: list[str], cancelled: list[str]
    ) -> None:
        """Additive and unversioned, as the real one. (On a missing record the real store lets
        botocore's ClientError through; here it is StaleRecordError.)"""
        self._hook("note_duplicates", job_id, index)
        key = _key(batch_key(job_id, index))
        with self._lock:
            item = self._items.get(key)
            if item is None:
                raise StaleRecordError(f"{key} is not there")
            item["duplicate_batch_ids"] = set(item.get("duplicate_batch_ids", set())) | set(found)
            if cancelled:
                item["duplicates_cancelled"] = [*item.get("duplicates_cancelled", []), *cancelled]
            self.writes.append("note_duplicates")

    # --- deleting a reported job's files on OpenAI ---------------------------------------------

    def schedule_file_cleanup(self, job_id: str, file_ids: list[str]) -> None:
        self._hook("schedule_file_cleanup", job_id, file_ids)
        now = self.now()
        cleanup: FileCleanup = {"state": "pending", "left": file_ids, "deleted": 0, "attempts": 0}
        changes: Item = {
            "file_cleanup": cleanup,
            "active_pk": CLEANUP_PARTITION,
            "active_sk": f"{now:012d}#{job_id}",
        }

        def not_yet(item: Item | None) -> bool:
            return item is not None and "file_cleanup" not in item

        def unplaced(item: Item | None) -> bool:
            return (
                item is not None
                and item.get("file_cleanup", {}).get("state") == "pending"
                and "active_pk" not in item
            )

        try:
            self._update(job_key(job_id), changes, not_yet, "schedule_file_cleanup")
        except StaleRecordError:
            place = {key: changes[key] for key in ("active_pk", "active_sk")}
            with suppress(StaleRecordError):
                self._update(job_key(job_id), place, unplaced, "schedule_file_cleanup")

    def file_cleanups(self) -> Iterator[JobRecord]:
        yield from map(_job, self._index(CLEANUP_PARTITION))

    def record_file_cleanup(self, job_id: str, attempts: int, cleanup: FileCleanup) -> bool:
        self._hook("record_file_cleanup", job_id, attempts, cleanup)
        changes: Item = {"file_cleanup": cleanup}
        if cleanup["state"] == "pending":
            changes["active_sk"] = f"{self.now():012d}#{job_id}"
        else:
            changes |= {"active_pk": None, "active_sk": None}

        def unchanged(item: Item | None) -> bool:
            return item is not None and item.get("file_cleanup", {}).get("attempts") == attempts

        try:
            self._update(job_key(job_id), changes, unchanged, "record_file_cleanup")
        except StaleRecordError:
            return False
        return True

    def now(self) -> int:
        return int(self._clock())

    def active_batches(self) -> Iterator[BatchRecord]:
        yield from map(_batch, self._index(ACTIVE_PARTITION))

    # --- internals ------------------------------------------------------------------------------

    def _index(self, partition: str) -> Iterator[Item]:
        with self._lock:
            listed = sorted(
                (item for item in self._items.values() if item.get("active_pk") == partition),
                key=lambda item: str(item["active_sk"]),
            )
            found = [_copy(item) for item in listed]
        yield from found

    def _put(self, item: Item, condition: Condition, method: str) -> None:
        key = (str(item["pk"]), str(item["sk"]))
        with self._lock:
            if not condition(self._items.get(key)):
                raise StaleRecordError(f"{key[0]} {key[1]} changed underneath us")
            self._items[key] = _stored(item)
            self.writes.append(method)

    def _update(
        self,
        key: Mapping[str, str],
        changes: Mapping[str, Any],
        condition: Condition,
        method: str,
        *,
        bump_version: bool = False,
        increment: str | None = None,
    ) -> Item:
        """Like DynamoDB's UpdateItem: applied only if `condition` holds of the record as it is,
        creating the record when there is none and the condition allows; a None value removes
        the field. Returns the record after the update."""
        at = (key["pk"], key["sk"])
        with self._lock:
            current = self._items.get(at)
            if not condition(current):
                raise StaleRecordError(f"{at[0]} {at[1]} changed underneath us")
            item: Item = dict(current) if current is not None else dict(key)
            for field, value in changes.items():
                if value is None:
                    item.pop(field, None)
                else:
                    item[field] = _stored(value)
            counters = [name for name in ("version" if bump_version else "", increment) if name]
            for counter in counters:
                item[counter] = int(item.get(counter, 0)) + 1
            self._items[at] = item
            self.writes.append(method)
            return _copy(item)


def _job(item: Item) -> JobRecord:
    """A stored item as the job record it is (the real store casts what DynamoDB returns too)."""
    return cast(JobRecord, item)


def _batch(item: Item) -> BatchRecord:
    return cast(BatchRecord, item)


def _claim_is(field: str, claimed_at: int) -> Condition:
    def condition(item: Item | None) -> bool:
        notice = (item or {}).get(field) or {}
        return bool(notice.get("state") == "pending" and notice.get("claimed_at") == claimed_at)

    return condition


def _key(key: Mapping[str, str]) -> Key:
    return (key["pk"], key["sk"])


def _stored(value: Any) -> Any:
    """A value as it comes back from DynamoDB: None fields of a map dropped, tuples as lists,
    whole floats as ints, a str subclass (a StrEnum) as a plain str, and nothing shared with
    the caller's objects."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {k: _stored(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_stored(v) for v in value]
    if isinstance(value, set | frozenset):
        return set(value)
    return copy.deepcopy(value)


def _copy(item: Item) -> Item:
    """A stored item as a read hands it out: the caller's own, sharing nothing with the store.
    (What `_stored` keeps is dicts, lists, sets and immutable scalars: quicker than deepcopy.)"""
    return {field: _copied(value) for field, value in item.items()}


def _copied(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    if isinstance(value, set):
        return set(value)
    if value is None or isinstance(value, str | int | float):
        return value
    return copy.deepcopy(value)
