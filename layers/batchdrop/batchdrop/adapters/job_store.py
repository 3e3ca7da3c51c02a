"""Job and batch records in DynamoDB.

One item per job (sk "JOB") and one per OpenAI batch (sk "BATCH#0000"). A batch item carries
active_pk/active_sk only while the batch is unfinished, which keeps the ActiveIndex sparse: the
poller's one Query costs what the active batches cost, never what the history costs. A job sits
in the same index, under its own partitions, only while it is being submitted (so the poller can
find a submission whose attempt died and resume it) and, once reported, while its files on
OpenAI are still to delete.
Every write that changes state is conditional, so overlapping invocations cannot regress a record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import suppress
from decimal import Decimal
from typing import Any, cast

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from batchdrop.errors import StaleRecordError
from batchdrop.records import Batch, BatchRecord, FileCleanup, JobRecord, openai_fields

Item = dict[str, Any]  # an item as DynamoDB holds it, before it is read as a record
ACTIVE_INDEX = "ActiveIndex"
ACTIVE_PARTITION = "ACTIVE"  # one partition suffices: the index only ever holds live batches
SUBMITTING_PARTITION = "SUBMITTING"  # jobs whose submission has not ended yet
CLEANUP_PARTITION = "CLEANUP"  # reported jobs whose files on OpenAI are still to delete


def job_key(job_id: str) -> dict[str, str]:
    return {"pk": f"JOB#{job_id}", "sk": "JOB"}


def batch_key(job_id: str, index: int) -> dict[str, str]:
    return {"pk": f"JOB#{job_id}", "sk": f"BATCH#{index:04d}"}


class JobStore:
    def __init__(self, table: Any, retention_days: int = 90, clock: Any = time.time) -> None:
        self._table = table
        self._retention_seconds = retention_days * 86_400
        self._clock = clock

    # --- jobs ----------------------------------------------------------------------------------

    def create_job(self, job_id: str, fields: JobRecord) -> bool:
        """Create the job record, in the index of submissions the poller watches; False when it
        already exists (a duplicate delivery)."""
        now = self._now()
        item: Item = {**job_key(job_id), "job_id": job_id, "created_at": now, "updated_at": now}
        item.update(fields)
        if item.get("status") == "submitting":
            item |= {"active_pk": SUBMITTING_PARTITION, "active_sk": f"{now:012d}#{job_id}"}
        try:
            self._table.put_item(
                Item=_to_dynamo(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def get_job(self, job_id: str) -> JobRecord | None:
        return cast(JobRecord | None, self._get(job_key(job_id)))

    def update_job(
        self,
        job_id: str,
        changes: JobRecord,
        *,
        expected_status: str | set[str] | None = None,
        finished: bool = False,
    ) -> None:
        """Apply `changes` if the job is still in `expected_status`; finished jobs get a TTL.
        A job whose submission ends (any status but "submitting") leaves the index of
        submissions the poller watches."""
        written: Item = {**changes, "updated_at": self._now()}
        if written.get("status", "submitting") != "submitting":
            written |= {"active_pk": None, "active_sk": None, "lease_until": None}
        if finished:
            written["expires_at"] = self._now() + self._retention_seconds
        condition = Attr("pk").exists()
        if expected_status is not None:
            allowed = {expected_status} if isinstance(expected_status, str) else expected_status
            condition = condition & Attr("status").is_in(sorted(allowed))
        self._update(job_key(job_id), written, condition)

    # --- the submission lease: one live submitter per job, and a resume when it dies ---------

    def take_submit_lease(
        self, job_id: str, lease_seconds: int, *, resume: bool
    ) -> JobRecord | None:
        """Take a submitting job's lease once its holder has let it go or died, returning the
        job as it now is; None while another holds it or the job is no longer submitting.
        `resume` counts the take as one of the poller's resumptions."""
        now = self._now()
        changes: dict[str, Any] = {"lease_until": now + lease_seconds}
        lapsed = Attr("lease_until").not_exists() | Attr("lease_until").lte(now)
        condition = Attr("status").eq("submitting") & lapsed
        try:
            taken = self._update(
                job_key(job_id),
                changes,
                condition,
                increment="resumes" if resume else None,
                returning=True,
            )
        except StaleRecordError:
            return None
        return cast(JobRecord, taken)

    def release_submit_lease(self, job_id: str, held_until: int, retry_at: int, error: str) -> None:
        """A failed attempt gives its lease back, to be taken again from `retry_at`, and leaves
        its error for the record and the give-up email."""
        changes = {"lease_until": retry_at, "last_error": error[:500]}
        still_ours = Attr("status").eq("submitting") & Attr("lease_until").eq(held_until)
        with suppress(StaleRecordError):  # taken over, or the job ended meanwhile
            self._update(job_key(job_id), changes, still_ours)

    def submitting_jobs(self) -> Iterator[JobRecord]:
        """Every job whose submission has not ended, oldest first."""
        yield from self._query_index(SUBMITTING_PARTITION)

    # --- finishing: one attempt at a time, and each attempt counted -----------------------------

    def update_finish_attempt(
        self, job_id: str, changes: JobRecord, *, open_until: int | None
    ) -> None:
        """Change the job's finish-attempt fields only if its open attempt is still the one that
        ends at `open_until` (None: none is open). Every attempt moves that mark, so two
        invocations can never both hold one job's attempt, nor count one failure twice."""
        mark = Attr("finish_attempt_until")
        still = mark.not_exists() if open_until is None else mark.eq(open_until)
        self._update(job_key(job_id), changes, Attr("pk").exists() & still)

    def park_batches(self, job_id: str) -> int:
        """Take a set-aside job's batches off the active index, remembering where they stood so
        `unpark_batches` can put them back; nothing else about them changes. Returns how many."""
        parked = 0
        for item in self.batches(job_id):
            if item.get("active_sk") is None:
                continue
            changes = {"active_pk": None, "active_sk": None, "parked_sk": item["active_sk"]}
            with suppress(StaleRecordError):  # parked meanwhile by an overlapping tick
                self._update(
                    batch_key(job_id, int(item["index"])),
                    changes,
                    Attr("active_sk").eq(item["active_sk"]),
                )
                parked += 1
        return parked

    def unpark_batches(self, job_id: str) -> int:
        """Put a set-aside job's batches back on the active index, where the poller finds them."""
        unparked = 0
        for item in self.batches(job_id):
            if item.get("parked_sk") is None:
                continue
            changes = {
                "active_pk": ACTIVE_PARTITION,
                "active_sk": item["parked_sk"],
                "parked_sk": None,
            }
            with suppress(StaleRecordError):
                self._update(
                    batch_key(job_id, int(item["index"])), changes, Attr("parked_sk").exists()
                )
                unparked += 1
        return unparked

    # --- notices (an outbox: claim, publish, mark sent) -----------------------------------------

    def claim_notice(self, job_id: str, kind: str, lease_seconds: int) -> int | None:
        """Claim the right to publish one notice, returning the claim's time (None if another
        holds or has used it). A claim left by a crashed run is taken over once its lease has
        passed, so the notice is neither lost nor sent twice at once."""
        field = f"notice_{kind}"
        now = self._now()
        never_claimed = Attr(field).not_exists()
        abandoned = Attr(f"{field}.state").eq("pending") & Attr(f"{field}.claimed_at").lt(
            now - lease_seconds
        )
        try:
            self._update(
                job_key(job_id),
                {field: {"state": "pending", "claimed_at": now}},
                Attr("pk").exists() & (never_claimed | abandoned),
            )
        except StaleRecordError:
            return None
        return now

    def release_notice(self, job_id: str, kind: str, claimed_at: int) -> None:
        """Give a claim back after a failed publish, so a retry need not wait for the lease."""
        field = f"notice_{kind}"
        still_ours = Attr(f"{field}.state").eq("pending") & Attr(f"{field}.claimed_at").eq(
            claimed_at
        )
        with suppress(StaleRecordError):  # someone has taken it over meanwhile
            self._update(job_key(job_id), {field: None}, still_ours)

    def notice_state(self, job_id: str, kind: str) -> str | None:
        job = self._get(job_key(job_id)) or {}
        notice = job.get(f"notice_{kind}") or {}
        state = notice.get("state")
        return str(state) if state else None

    def mark_notice_sent(self, job_id: str, kind: str, message_id: str) -> None:
        field = f"notice_{kind}"
        self._update(
            job_key(job_id),
            {field: {"state": "sent", "sent_at": self._now(), "message_id": message_id}},
            Attr(f"{field}.state").eq("pending"),
        )

    def mark_notice_refused(self, job_id: str, kind: str, claimed_at: int, reason: str) -> None:
        """SNS refused the notice as invalid: record it, so it is not published again and again.
        `forget_refused_notice` clears it for an operator's retry."""
        field = f"notice_{kind}"
        still_ours = Attr(f"{field}.state").eq("pending") & Attr(f"{field}.claimed_at").eq(
            claimed_at
        )
        refused = {"state": "refused", "refused_at": self._now(), "reason": reason[:500]}
        with suppress(StaleRecordError):  # taken over meanwhile
            self._update(job_key(job_id), {field: refused}, still_ours)

    def forget_refused_notice(self, job_id: str, kind: str) -> None:
        field = f"notice_{kind}"
        with suppress(StaleRecordError):
            self._update(job_key(job_id), {field: None}, Attr(f"{field}.state").eq("refused"))

    # --- batches -------------------------------------------------------------------------------

    def batches(self, job_id: str) -> list[BatchRecord]:
        response = self._table.query(
            KeyConditionExpression=Key("pk").eq(f"JOB#{job_id}") & Key("sk").begins_with("BATCH#"),
            ConsistentRead=True,
        )
        return [from_dynamo(item) for item in response["Items"]]

    def record_file(self, job_id: str, index: int, fields: BatchRecord) -> None:
        """Remember an uploaded input file before its batch exists, so a retry can reuse it."""
        now = self._now()
        item = {
            **batch_key(job_id, index),
            "job_id": job_id,
            "index": index,
            "status": "uploaded",
            "created_at": now,
            "updated_at": now,
            "version": 1,
            **fields,
        }
        try:
            self._table.put_item(
                Item=_to_dynamo(item), ConditionExpression=Attr("batch_id").not_exists()
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                raise StaleRecordError(f"batch {index} of job {job_id} already exists") from exc
            raise

    def record_batch(self, job_id: str, index: int, batch: Batch) -> None:
        """The batch exists on OpenAI: record it and put it on the active index, carrying its
        job's cancel request if there is one. The part's first batch wins: recording it again
        changes nothing, and recording another raises StaleRecordError."""
        changes: BatchRecord = {
            "batch_id": batch["id"],
            "status": batch["status"],
            "active_pk": ACTIVE_PARTITION,
            "active_sk": f"{batch['created_at']:012d}#{job_id}#{index:04d}",
            "openai": openai_fields(batch),
        }
        key = batch_key(job_id, index)
        try:
            self._update(key, changes, Attr("batch_id").not_exists(), bump_version=True)
        except StaleRecordError:
            # The duplicate sweep recorded it first, and may have moved it on since.
            if (self._get(key) or {}).get("batch_id") != batch["id"]:
                raise
            return
        # Cancel is a fact about the job: a batch recorded after its job was cancelled carries
        # the request too. `batchdrop cancel` flags the job first and then lists its batches, so
        # every batch is flagged by one side or the other.
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
        """Record a change, unless another tick recorded one first (when a version is given)."""
        condition = (
            Attr("pk").exists()
            if expected_version is None
            else Attr("version").eq(expected_version)
        )
        self._update(batch_key(job_id, index), changes, condition, bump_version=True)

    def add_follow_up(self, job_id: str, index: int, fields: BatchRecord) -> None:
        """A follow-up batch of a job's unfinished requests, tracked like any other part."""
        now = self._now()
        item = {
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
        try:
            self._table.put_item(Item=_to_dynamo(item), ConditionExpression=Attr("pk").not_exists())
        except ClientError as exc:
            if _is_conditional_failure(exc):
                raise StaleRecordError(f"part {index} of job {job_id} already exists") from exc
            raise

    def retire_batches(self, job_id: str, indices: list[int]) -> None:
        """The job is finished and reported: its batches leave the active index for good."""
        for index in indices:
            self._update(
                batch_key(job_id, index),
                {
                    "active_pk": None,
                    "active_sk": None,
                    "expires_at": self._now() + self._retention_seconds,
                },
                Attr("pk").exists(),
            )

    def note_duplicates(
        self, job_id: str, index: int, found: list[str], cancelled: list[str]
    ) -> None:
        """Add to the part's duplicate batches (`duplicate_batch_ids`, a set: whatever they ran
        counts as the part's) and to those cancelled. Additive and unversioned: it touches no
        field the poller writes, so neither write can undo or block the other."""
        expression = "ADD #found :found"
        values: dict[str, Any] = {":found": set(found)}
        if cancelled:
            expression += " SET #dups = list_append(if_not_exists(#dups, :none), :ids)"
            values |= {":ids": list(cancelled), ":none": []}
        self._table.update_item(
            Key=batch_key(job_id, index),
            UpdateExpression=expression,
            ConditionExpression=Attr("pk").exists(),
            ExpressionAttributeNames={"#found": "duplicate_batch_ids"}
            | ({"#dups": "duplicates_cancelled"} if cancelled else {}),
            ExpressionAttributeValues=values,
        )

    # --- deleting a reported job's files on OpenAI ----------------------------------------------

    def schedule_file_cleanup(self, job_id: str, file_ids: list[str]) -> None:
        """Put the job in the index of clean-ups, with the files to delete. Once only: a finish
        that resumes after its email never starts the clean-up over; but a pending one that
        lost its place in the index (the job was set aside meanwhile) takes it back."""
        place = {"active_pk": CLEANUP_PARTITION, "active_sk": f"{self._now():012d}#{job_id}"}
        cleanup: FileCleanup = {"state": "pending", "left": file_ids, "deleted": 0, "attempts": 0}
        new = Attr("pk").exists() & Attr("file_cleanup").not_exists()
        unplaced = Attr("file_cleanup.state").eq("pending") & Attr("active_pk").not_exists()
        try:
            self._update(job_key(job_id), {"file_cleanup": cleanup, **place}, new)
        except StaleRecordError:
            with suppress(StaleRecordError):  # scheduled and in the index, or ended
                self._update(job_key(job_id), place, unplaced)

    def file_cleanups(self) -> Iterator[JobRecord]:
        """Every job whose files are still to delete, oldest first."""
        yield from self._query_index(CLEANUP_PARTITION)

    def record_file_cleanup(self, job_id: str, attempts: int, cleanup: FileCleanup) -> bool:
        """Record an attempt, if no other has been recorded since the one that `attempts`
        counts: a clean-up still pending goes to the back of the queue, one that is no longer
        pending leaves the index. False when another invocation recorded one first."""
        changes: dict[str, Any] = {"file_cleanup": cleanup}
        if cleanup["state"] == "pending":  # to the back of the queue
            changes["active_sk"] = f"{self._now():012d}#{job_id}"
        else:
            changes |= {"active_pk": None, "active_sk": None}
        try:
            self._update(job_key(job_id), changes, Attr("file_cleanup.attempts").eq(attempts))
        except StaleRecordError:
            return False
        return True

    def now(self) -> int:
        return self._now()

    def active_batches(self) -> Iterator[BatchRecord]:
        """Every unfinished batch: one paginated Query on the sparse index, never a Scan."""
        yield from self._query_index(ACTIVE_PARTITION)

    # --- internals -----------------------------------------------------------------------------

    def _get(self, key: Mapping[str, str]) -> Item | None:
        item = self._table.get_item(Key=dict(key), ConsistentRead=True).get("Item")
        return from_dynamo(item) if item else None

    def _query_index(self, partition: str) -> Iterator[Any]:
        kwargs: dict[str, Any] = {
            "IndexName": ACTIVE_INDEX,
            "KeyConditionExpression": Key("active_pk").eq(partition),
        }
        while True:
            response = self._table.query(**kwargs)
            for item in response["Items"]:
                yield from_dynamo(item)
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _update(
        self,
        key: Mapping[str, str],
        changes: Mapping[str, Any],
        condition: Any,
        *,
        bump_version: bool = False,
        increment: str | None = None,
        returning: bool = False,
    ) -> Item:
        """A conditional update; with `returning`, the record as it is after it (else empty:
        the whole record back on every write is bytes on the wire that nobody reads)."""
        request = {
            "Key": dict(key),
            **_update_expression(changes, bump_version=bump_version, increment=increment),
            "ConditionExpression": condition,
            "ReturnValues": "ALL_NEW" if returning else "NONE",
        }
        try:
            response = self._table.update_item(**request)
        except ClientError as exc:
            if _is_conditional_failure(exc):
                raise StaleRecordError(f"{key['pk']} {key['sk']} changed underneath us") from exc
            raise
        updated: Item = from_dynamo(response.get("Attributes", {}))
        return updated

    def _now(self) -> int:
        return int(self._clock())


def _update_expression(
    changes: Mapping[str, Any], *, bump_version: bool, increment: str | None
) -> dict[str, Any]:
    """An UpdateExpression with its names and values: each change is SET, or REMOVEd when
    None; `bump_version` and `increment` add one to "version" and to the named counter."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets: list[str] = []
    removes: list[str] = []
    # boto3 names the condition's placeholders #n0/:v0; ours must not collide with them.
    for position, (field, value) in enumerate(changes.items()):
        names[f"#set{position}"] = field
        if value is None:
            removes.append(f"#set{position}")
        else:
            values[f":set{position}"] = _to_dynamo(value)
            sets.append(f"#set{position} = :set{position}")
    counters = {"#version": "version" if bump_version else None, "#count": increment}
    for placeholder, counter in counters.items():
        if counter:
            names[placeholder] = counter
            values |= {":one": 1, ":zero": 0}
            sets.append(f"{placeholder} = if_not_exists({placeholder}, :zero) + :one")
    expression = ""
    if sets:
        expression += "SET " + ", ".join(sets)
    if removes:
        expression += " REMOVE " + ", ".join(removes)
    request: dict[str, Any] = {
        "UpdateExpression": expression.strip(),
        "ExpressionAttributeNames": names,
    }
    if values:
        request["ExpressionAttributeValues"] = values
    return request


def _is_conditional_failure(exc: ClientError) -> bool:
    return bool(exc.response["Error"]["Code"] == "ConditionalCheckFailedException")


def _to_dynamo(value: Any) -> Any:
    """DynamoDB wants Decimal, not float."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, Mapping):
        return {k: _to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """DynamoDB's Decimals back to ints and floats, recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value
