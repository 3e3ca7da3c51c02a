"""`make demo`: the whole pipeline on this machine, no AWS account and no OpenAI key.

It starts the local stack, drops the bundled request file into the bucket, shows the job's
progress, prints the email as SNS would deliver it and saves the results to ./demo-output/.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from batchdrop.cli.present import progress_bar
from batchdrop.cli.stack_client import BatchdropClient, StackInfo
from batchdrop.cli.views import JobView
from local.inbox import Inbox, as_email
from local.stack import LocalOptions, LocalStack

SAMPLE = Path(__file__).resolve().parent / "sample-requests.jsonl"
OUTPUT = Path("demo-output")
SPEED = 120.0  # the simulated day runs 120x faster: a batch takes about 6 real seconds
TIMEOUT_SECONDS = 50.0


def main() -> int:
    print("batchdrop demo: moto stands in for AWS, a local simulator for the OpenAI Batch API.\n")
    with LocalStack(LocalOptions(speed=SPEED, quiet=True)) as local:
        info = StackInfo.from_outputs(local.stack.outputs if local.stack else {}, "us-east-1")
        print(f"Local AWS endpoint:  {local.endpoint}")
        print(f"Bucket:              s3://{info.bucket}/{info.input_prefix}\n")
        client = BatchdropClient(info)
        inbox = Inbox(info.topic_arn)

        submitted = client.submit(SAMPLE)
        print(f"Uploaded {SAMPLE.name}: {submitted.report.summary()}")
        print(f"Job {submitted.job_id}\n")
        client.wait_for_job(submitted.job_id, timeout=TIMEOUT_SECONDS)
        started = time.monotonic()
        view = client.follow(submitted.job_id, _show, interval=0.2, timeout=TIMEOUT_SECONDS)
        print(f"\nFinished in {time.monotonic() - started:.1f} s of real time.\n")

        emails = _wait_for_email(inbox)
        for email in emails:
            print("-" * 72)
            print(as_email(email))
        print("-" * 72)

        if OUTPUT.exists():
            shutil.rmtree(OUTPUT)
        written = client.download_results(submitted.job_id, OUTPUT, raw=True)
        print(f"\nResults saved to ./{OUTPUT}/:")
        for path in sorted(written):
            print(f"  {path}")
        if local.errors:
            print("\nErrors seen by the local stack:", *local.errors, sep="\n  ")
            return 1
        return 0 if view.status == "completed" else 1


def _show(view: JobView) -> None:
    print(progress_bar(view), flush=True)


def _wait_for_email(inbox: Inbox, timeout: float = 10.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emails := inbox.messages():
            return emails
        time.sleep(0.2)
    return []


if __name__ == "__main__":
    sys.exit(main())
