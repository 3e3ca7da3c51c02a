"""The `batchdrop` command: drive a deployed stack, or run the whole pipeline on this machine.

    batchdrop local up                 start the local stack (moto + the OpenAI simulator)
    batchdrop submit FILE... [--wait] [--metadata K=V]...  validate, upload (with metadata), follow
    batchdrop status [JOB]             a table of jobs, or one job's full record
    batchdrop results JOB [-o DIR]     download results, images, videos (--raw: OpenAI's files too)
    batchdrop cancel JOB               ask the poll function to cancel the job's batches
    batchdrop retry JOB                finish a job set aside as needs_attention, once fixed

A deployed stack is found from its CloudFormation outputs (--stack, default from samconfig.toml);
--local uses the stack that `batchdrop local up` is running.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchdrop.cli.present import job_details, jobs_table, progress_bar
from batchdrop.cli.stack_client import AWS_ERRORS, BatchdropClient, StackInfo
from batchdrop.cli.views import JobView, UserError
from batchdrop.domain.file_options import read_options

SAMCONFIG = Path("samconfig.toml")
DEFAULT_STACK = "batchdrop"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except UserError as error:
        print(f"batchdrop: {error}", file=sys.stderr)
        return 1
    except AWS_ERRORS as error:
        print(f"batchdrop: AWS said: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


# --- commands --------------------------------------------------------------------------------


def local_up(args: argparse.Namespace) -> int:
    # Imported here: only this command needs moto and the simulator.
    from local.inbox import Inbox, as_email
    from local.stack import LocalOptions, LocalStack

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    options = LocalOptions(openai=args.openai, speed=args.speed, tick_seconds=args.tick, quiet=True)
    with LocalStack(options) as local:
        state = local.write_state(args.state)
        outputs = local.describe()["outputs"]
        inbox = Inbox(outputs["TopicArn"])
        print(f"batchdrop local stack is up (OpenAI: {args.openai}).")
        print(f"  endpoint: {local.endpoint}")
        print(f"  bucket:   s3://{outputs['BucketName']}/{outputs['InputPrefix']}")
        print(f"  try:      aws --endpoint-url {local.endpoint} s3 cp my.jsonl "
              f"s3://{outputs['BucketName']}/{outputs['InputPrefix']}")  # fmt: skip
        print("  or:       batchdrop --local submit my.jsonl --wait")
        print("Emails are printed here as they arrive. Ctrl-C stops the stack.", flush=True)
        try:
            while not stopping.wait(0.5):
                for email in inbox.messages():
                    print("-" * 72 + "\n" + as_email(email) + "-" * 72, flush=True)
        finally:
            state.unlink(missing_ok=True)
    print("batchdrop local stack stopped.", flush=True)
    return 0


def submit(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.name and len(args.files) > 1:
        raise UserError("--name only goes with a single file")
    metadata = _metadata(args.metadata or [])
    submitted = []
    for file in args.files:
        result = client.submit(Path(file), args.name, metadata)
        submitted.append(result)
        if not args.json:
            print(f"{result.key}: {result.report.summary()} Job {result.job_id}.")
    if not args.wait:
        if args.json:
            _print_json([{"job_id": s.job_id, "key": s.key} for s in submitted])
        return 0
    views = [_follow(client, s.job_id, args) for s in submitted]
    if args.json:
        _print_json([view.as_dict() for view in views])
    return 0 if all(view.status == "completed" for view in views) else 1


def status(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.job:
        view = client.job(client_resolve(client, args.job))
        if args.json:
            _print_json(view.record | {"batches": [b.__dict__ for b in view.batches]})
        else:
            print(job_details(view))
        return 0
    views = client.jobs(limit=args.limit)
    if args.json:
        _print_json([view.as_dict() for view in views])
    elif not views:
        print("No jobs yet: `batchdrop submit FILE` starts one.")
    else:
        print(jobs_table(views))
    return 0


def results(args: argparse.Namespace) -> int:
    client = _client(args)
    job_id = client_resolve(client, args.job)
    written = client.download_results(job_id, Path(args.output), raw=args.raw)
    if args.json:
        _print_json([str(path) for path in written])
    else:
        for path in written:
            print(path)
    return 0


def cancel(args: argparse.Namespace) -> int:
    client = _client(args)
    view = client.cancel(client_resolve(client, args.job))
    if args.json:
        _print_json(view.as_dict())
    else:
        print(f"Cancel requested for job {view.job_id}; the next poll cancels its batches on "
              "OpenAI, keeps the finished results and emails the outcome.")  # fmt: skip
    return 0


def retry(args: argparse.Namespace) -> int:
    client = _client(args)
    view = client.retry(client_resolve(client, args.job))
    if args.json:
        _print_json(view.as_dict())
    else:
        print(f"Job {view.job_id} is active again; the next poll tries to finish it and emails "
              "the outcome.")  # fmt: skip
    return 0


# --- helpers ---------------------------------------------------------------------------------


def client_resolve(client: BatchdropClient, job: str) -> str:
    """A job id, or the name or key of an uploaded file (its newest upload)."""
    try:
        return client.job(job).job_id
    except UserError:
        for view in client.jobs(limit=100):
            if job in {view.key, view.filename}:
                return view.job_id
        raise


def _client(args: argparse.Namespace) -> BatchdropClient:
    if args.local:
        return BatchdropClient(StackInfo.from_local_state(args.state))
    return BatchdropClient(StackInfo.from_cloudformation(args.stack or _default_stack()))


def _default_stack() -> str:
    if SAMCONFIG.exists():
        config: dict[str, Any] = tomllib.loads(SAMCONFIG.read_text())
        for section in ("deploy", "global"):
            name = (
                config.get("default", {}).get(section, {}).get("parameters", {}).get("stack_name")
            )
            if name:
                return str(name)
    return DEFAULT_STACK


def _follow(client: BatchdropClient, job_id: str, args: argparse.Namespace) -> JobView:
    client.wait_for_job(job_id)

    def show(view: JobView) -> None:
        if not args.json:
            print(progress_bar(view), flush=True)

    return client.follow(job_id, show, timeout=args.timeout)


def _metadata(pairs: list[str]) -> dict[str, str]:
    """`--metadata k=v` pairs, checked here as the submit function will check them."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise UserError(f"--metadata {pair!r}: write it as KEY=VALUE")
        metadata[key.strip().lower()] = value
    checked = read_options(metadata)
    if isinstance(checked, list):
        raise UserError("; ".join(problem["message"] for problem in checked))
    return metadata


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchdrop", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", help="CloudFormation stack name (default: samconfig.toml)")
    parser.add_argument("--local", action="store_true", help="use the running local stack")
    parser.add_argument(
        "--state", type=Path, default=Path(".batchdrop/local.json"), help=argparse.SUPPRESS
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    local = commands.add_parser("local", help="the local stack")
    local_commands = local.add_subparsers(required=True, metavar="ACTION")
    up = local_commands.add_parser("up", help="start moto, the OpenAI simulator and the functions")
    up.add_argument("--openai", choices=["sim", "real"], default="sim")
    up.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")
    up.add_argument("--tick", type=float, help="seconds between poll ticks")
    up.set_defaults(run=local_up)

    sub = commands.add_parser("submit", help="validate and upload request files")
    sub.add_argument("files", nargs="+", metavar="FILE")
    sub.add_argument("--name", help="the key name under the input prefix (one file only)")
    sub.add_argument("--wait", action="store_true", help="follow the jobs to the end")
    sub.add_argument(
        "--metadata",
        action="append",
        metavar="KEY=VALUE",
        help="a pair for every batch's metadata (repeatable); batchdrop-* keys are options",
    )
    sub.add_argument("--timeout", type=float, default=None, help="give up waiting after seconds")
    sub.set_defaults(run=submit)

    stat = commands.add_parser("status", help="list jobs, or show one")
    stat.add_argument("job", nargs="?", metavar="JOB")
    stat.add_argument("--limit", type=int, default=20)
    stat.set_defaults(run=status)

    res = commands.add_parser("results", help="download a job's results")
    res.add_argument("job", metavar="JOB")
    res.add_argument("-o", "--output", default=".", help="directory (default: here)")
    res.add_argument("--raw", action="store_true", help="also OpenAI's raw output and error files")
    res.set_defaults(run=results)

    can = commands.add_parser("cancel", help="cancel a job's batches")
    can.add_argument("job", metavar="JOB")
    can.set_defaults(run=cancel)

    ret = commands.add_parser("retry", help="finish a job set aside as needs_attention")
    ret.add_argument("job", metavar="JOB")
    ret.set_defaults(run=retry)
    return parser
