"""Exactly one email per job outcome, even across crashes and overlapping invocations."""

from __future__ import annotations

from aws_lambda_powertools import Logger

from batchdrop import SERVICE
from batchdrop.errors import NoticeRefused
from batchdrop.ports import JobRepository, Notice, Publisher

logger = Logger(service=SERVICE, child=True)

# Longer than any invocation (15 minutes), so a live publisher is never overtaken.
CLAIM_LEASE_SECONDS = 20 * 60


class NoticeOutbox:
    def __init__(self, store: JobRepository, publisher: Publisher) -> None:
        self._store = store
        self._publisher = publisher

    def send_once(self, job_id: str, kind: str, notice: Notice) -> bool:
        """Publish `notice` unless this job's `kind` notice was already sent. True once it has
        been sent, by this call or an earlier one; False while another sender holds the claim,
        so the caller keeps the job around until the notice is known to be out.
        A notice SNS refused as invalid raises NoticeRefused, now and on every later call: it is
        recorded, never published again, so the caller can count it as a failure and move on."""
        claimed_at = self._store.claim_notice(job_id, kind, CLAIM_LEASE_SECONDS)
        if claimed_at is None:
            state = self._store.notice_state(job_id, kind)
            logger.info("notice not sent by this call", extra={"kind": kind, "state": state})
            if state == "refused":
                raise NoticeRefused(f"the {kind} notice was refused by SNS as invalid")
            return state == "sent"
        try:
            message_id = self._publisher.publish(notice)
        except NoticeRefused as refused:
            self._store.mark_notice_refused(job_id, kind, claimed_at, str(refused))
            logger.error("notice refused by SNS", extra={"kind": kind, "reason": str(refused)})
            raise
        except Exception:
            self._store.release_notice(job_id, kind, claimed_at)
            raise
        self._store.mark_notice_sent(job_id, kind, message_id)
        logger.info("notice sent", extra={"kind": kind, "message_id": message_id})
        return True
