"""A friendly front for a batchdrop stack, deployed or local: submit, follow, fetch, cancel.

It finds the stack's bucket and table from the CloudFormation outputs (or the local stack's
state file) and speaks to them with the user's own credentials; it never needs the OpenAI key.
The command's one module that imports boto3 and botocore.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from batchdrop.adapters.job_store import JobStore
from batchdrop.cli.views import JobView, UserError, batch_view
from batchdrop.domain.file_options import encode_value
from batchdrop.domain.model import SourceObject
from batchdrop.domain.validation import ValidationReport, validate_stream

# moto accepts any credentials; these keep a laptop without AWS credentials working.
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
# What AWS may raise from any call; the command reports it in one line.
AWS_ERRORS = (ClientError, BotoCoreError)


@dataclass(frozen=True)
class StackInfo:
    bucket: str
    input_prefix: str
    table: str
    topic_arn: str
    region: str | None = None
    endpoint: str | None = None

    @classmethod
    def from_outputs(
        cls, outputs: dict[str, str], region: str | None = None, endpoint: str | None = None
    ) -> StackInfo:
        try:
            return cls(
                bucket=outputs["BucketName"],
                input_prefix=outputs["InputPrefix"],
                table=outputs["TableName"],
                topic_arn=outputs["TopicArn"],
                region=region,
                endpoint=endpoint,
            )
        except KeyError as missing:
            raise UserError(
                f"the stack has no {missing} output; is it a batchdrop stack?"
            ) from None

    @classmethod
    def from_cloudformation(cls, stack_name: str) -> StackInfo:
        try:
            cloudformation = boto3.client("cloudformation")
            stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        except (ClientError, BotoCoreError) as exc:
            raise UserError(f"cannot read stack {stack_name!r}: {_reason(exc)}") from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        return cls.from_outputs(outputs, region=cloudformation.meta.region_name)

    @classmethod
    def from_local_state(cls, path: Path) -> StackInfo:
        if not path.exists():
            raise UserError(f"no local stack found ({path} is missing); run `batchdrop local up`")
        state = json.loads(path.read_text())
        return cls.from_outputs(state["outputs"], state.get("region"), state["endpoint"])


@dataclass(frozen=True)
class Submitted:
    job_id: str
    key: str
    version_id: str | None
    report: ValidationReport


class BatchdropClient:
    def __init__(self, info: StackInfo) -> None:
        self.info = info
        session = boto3.session.Session(region_name=info.region)
        if info.endpoint:  # the local stack: moto takes any credentials
            session = boto3.session.Session(**LOCAL_CREDENTIALS, region_name=info.region)
        self._s3 = session.client("s3", endpoint_url=info.endpoint)
        table = session.resource("dynamodb", endpoint_url=info.endpoint).Table(info.table)
        self._store = JobStore(table)  # the functions' own reads and writes

    # --- submit ------------------------------------------------------------------------------

    def submit(
        self, path: Path, name: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> Submitted:
        """Validate with the Lambda's own validator (fail fast), then upload to the prefix,
        with `metadata` as the object's user metadata (non-ASCII values RFC 2047 encoded, as
        S3 carries only ASCII there)."""
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        with path.open("rb") as stream:
            report = validate_stream(stream)
        if not report.ok:
            problems = "; ".join(p.message for p in report.problems[:3])
            more = f" (+{report.problem_count - 3} more)" if report.problem_count > 3 else ""
            raise UserError(f"{path}: {report.problem_count} problem(s): {problems}{more}")
        key = f"{self.info.input_prefix}{name or path.name}"
        if not key.endswith(".jsonl"):
            raise UserError(f"{key}: only .jsonl files are submitted; rename the file")
        encoded = {k: encode_value(v) for k, v in (metadata or {}).items()}
        with path.open("rb") as body:
            put = self._call(
                lambda: self._s3.put_object(
                    Bucket=self.info.bucket, Key=key, Body=body, Metadata=encoded
                )
            )
        version = put.get("VersionId")
        job_id = SourceObject(self.info.bucket, key, 0, put["ETag"], "", version).job_id
        return Submitted(job_id, key, version, report)

    # --- jobs --------------------------------------------------------------------------------

    def job(self, job_id: str) -> JobView:
        item = self._call(lambda: self._store.get_job(job_id))
        if item is None:
            raise UserError(f"no job {job_id!r}; `batchdrop status` lists the jobs")
        return self._view(item)

    def wait_for_job(self, job_id: str, *, timeout: float = 120.0) -> JobView:
        """A just-uploaded file becomes a job once the submit function has claimed it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.job(job_id)
            except UserError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

    def jobs(self, limit: int = 20) -> list[JobView]:
        """The jobs of the newest uploads, found from the bucket rather than by a table Scan."""
        listed = self._call(
            lambda: self._s3.list_object_versions(
                Bucket=self.info.bucket, Prefix=self.info.input_prefix
            )
        )
        versions = sorted(
            listed.get("Versions", []), key=lambda v: v["LastModified"], reverse=True
        )[:limit]
        views = []
        for version in versions:
            version_id = None if version["VersionId"] == "null" else version["VersionId"]
            source = SourceObject(
                self.info.bucket, version["Key"], 0, version["ETag"], "", version_id
            )
            item = self._store.get_job(source.job_id)
            if item is not None:
                views.append(self._view(item))
        return views

    def follow(
        self,
        job_id: str,
        on_change: Callable[[JobView], None],
        *,
        interval: float = 0.5,
        timeout: float | None = None,
    ) -> JobView:
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[str, int] | None = None
        while True:
            view = self.job(job_id)
            if (view.status, view.done) != last:
                on_change(view)
                last = (view.status, view.done)
            if view.finished or view.status == "needs_attention":
                return view  # set aside: nothing moves until someone runs `batchdrop retry`
            if deadline is not None and time.monotonic() > deadline:
                raise UserError(f"job {job_id} is still {view.status}; try again later")
            time.sleep(interval)

    def cancel(self, job_id: str) -> JobView:
        """Record the request; the poll function cancels the batches on OpenAI at its next tick,
        including any a submission still under way creates after this."""
        view = self.job(job_id)
        if view.finished:
            raise UserError(f"job {job_id} already ended ({view.status})")
        # The job first, then every batch it has now: a batch recorded after this listing reads
        # the job's flag as it is recorded (JobStore.record_batch), so none escapes the cancel.
        self._store.update_job(job_id, {"cancel_requested": True})
        view = self.job(job_id)
        for batch in view.batches:
            self._store.update_batch(job_id, batch.index, {"cancel_requested": True})
        return self.job(job_id)

    def retry(self, job_id: str) -> JobView:
        """Put a job set aside as needs_attention back to active, with its batches back on the
        active index and its failure count reset: the next poll tick finishes it. Run it once
        the cause (`batchdrop status JOB` shows the last error) is fixed. Safe to run again: a
        retry cut short after the job was put back still returns its batches."""
        view = self.job(job_id)
        if view.status not in {"needs_attention", "active"}:
            raise UserError(f"job {job_id} is {view.status}; only a job that needs attention "
                            "can be retried")  # fmt: skip
        if view.status == "needs_attention":
            # An email SNS refused as invalid is tried again, in case its cause was fixed too.
            for kind in ("outcome", "needs_attention"):
                self._store.forget_refused_notice(job_id, kind)
            self._call(lambda: self._store.update_job(
                job_id,
                {"status": "active", "finish_failures": 0, "finish_attempt_until": None,
                 "retried_at": self._store.now()},
                expected_status="needs_attention",
            ))  # fmt: skip
        if not self._store.unpark_batches(job_id) and view.status == "active":
            raise UserError(f"job {job_id} is active and was not set aside; nothing to retry")
        return self.job(job_id)

    # --- results -----------------------------------------------------------------------------

    def download_results(self, job_id: str, out_dir: Path, *, raw: bool = False) -> list[Path]:
        view = self.job(job_id)
        if view.status == "rejected":
            names = [str(view.record["report_key"])]
        elif not view.finished:
            raise UserError(f"job {job_id} is still {view.status}; its results are not ready")
        else:
            # The round the outcome came from; raw files sit in the job's own folder.
            prefix = str(view.record["results_key"]).removesuffix("results.jsonl")
            names = [f"{prefix}results.jsonl", f"{prefix}summary.json"]
            for name in ("unfinished_key", "not_succeeded_key"):  # unset: the file is empty
                if view.record.get(name):
                    names.append(str(view.record[name]))
            names += self._media_files(prefix)
            if raw:
                job_prefix = str(view.record.get("results_prefix") or prefix)
                names += [key for key in self._keys(f"{job_prefix}raw/")]
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for key in names:
            if not self._exists(key):
                continue
            target = out_dir / ("raw" if "/raw/" in key else "") / Path(key).name
            target.parent.mkdir(parents=True, exist_ok=True)
            self._s3.download_file(self.info.bucket, key, str(target))
            written.append(target)
        return written

    # --- internals ---------------------------------------------------------------------------

    def _view(self, item: Mapping[str, Any]) -> JobView:
        return JobView(
            job_id=str(item["job_id"]),
            key=str(item.get("source_key", "")),
            status=str(item.get("status", "")),
            created_at=int(item.get("created_at", 0)),
            record=dict(item),
            batches=[batch_view(b) for b in self._store.batches(str(item["job_id"]))],
        )

    def _media_files(self, prefix: str) -> list[str]:
        """The images or videos saved beside the results, as their summary.json lists them."""
        try:
            summary = self._s3.get_object(Bucket=self.info.bucket, Key=f"{prefix}summary.json")
        except ClientError:
            return []
        media = json.loads(summary["Body"].read()).get("media") or {}
        return [f"{prefix}{name}" for name in media.get("files", [])]

    def _keys(self, prefix: str) -> list[str]:
        listed = self._s3.list_objects_v2(Bucket=self.info.bucket, Prefix=prefix)
        return [obj["Key"] for obj in listed.get("Contents", [])]

    def _exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.info.bucket, Key=key)
        except ClientError:
            return False
        return True

    def _call(self, operation: Callable[[], Any]) -> Any:
        try:
            return operation()
        except (ClientError, BotoCoreError) as exc:
            raise UserError(_reason(exc)) from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return str(exc)
