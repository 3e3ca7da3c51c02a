"""1. Submit streaming: the submit handler against a raw stream copy of the same bytes.

For each size a request file is put in the bucket, then two fresh children run back to back:
the raw copy (S3 GetObject streamed into the simulator's Files API, or its Uploads API in 64 MiB
parts above 64 MiB, exactly the routes the handler takes; nothing parsed), and the submit
handler invoked with the S3 event (validation, upload, batch creation, records). Each reports
its wall time and its peak RSS growth over its own baseline taken after imports and cold start.
Both first handle a one-line file the same way, unmeasured, so that neither measurement holds
first-call costs (botocore's endpoint rules, connections, the API key from Secrets Manager);
import and cold-start costs are section 4's. The raw child then times, outside its measured
copy, a validation-only pass over the object and the simulator's create-batch call; both
children count the CPU seconds spent in themselves, in moto and in the simulator. Last, the
largest file runs again with the simulator pacing request bodies to an assumed link to OpenAI.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3

from batchdrop.adapters import aws_clients
from batchdrop.adapters.openai_api import OpenAIBatchAPI
from batchdrop.adapters.s3_objects import S3Objects
from batchdrop.domain.limits import MAX_UPLOAD_PART_BYTES
from batchdrop.domain.validation import validate_stream
from benchmarks.common import (
    ENDPOINT,
    MB,
    MIB,
    MODEL,
    SIM_API_KEY,
    TIMES,
    Check,
    Plan,
    best_of,
    cpu_meter,
    fmt_mib,
    fmt_seconds,
    ratio,
    reset_peak_rss,
    rss_figures,
    stopwatch,
)
from benchmarks.services import Services, StackInfo, load_function
from local.s3_events import object_created
from local.simulator import BatchSimulator

SECTION = "Submit streaming"
RATIO_TARGET = 1.5
RSS_TARGET_MIB = 64.0
FLATNESS_TARGET_MIB = 16.0
# An assumed link from Lambda to OpenAI (400 Mbit/s); the simulator paces request bodies to it.
LINK_MB_PER_SECOND = 50


def write_request_file(path: Path, lines: int, line_bytes: int) -> None:
    """`lines` chat requests of exactly `line_bytes` bytes each (newline included)."""
    template = {
        "custom_id": "req-{:07d}",
        "method": "POST",
        "url": ENDPOINT,
        "body": {"model": MODEL, "messages": [{"role": "user", "content": ""}]},
    }
    empty = json.dumps(template).replace("{:07d}", "0000000")
    pad = line_bytes - len(empty) - 1
    if pad < 0:
        raise ValueError(f"lines of {line_bytes} bytes cannot hold a request")
    words = ("summarise this paragraph about batch processing and streaming uploads " * 80)[:pad]
    template["body"]["messages"][0]["content"] = words  # type: ignore[index]
    pattern = json.dumps(template).encode()
    with path.open("wb", buffering=MIB) as out:
        for n in range(lines):
            out.write(pattern.replace(b"{:07d}", b"%07d" % n) + b"\n")


def run(services: Services, plan: Plan, workdir: Path) -> dict[str, Any]:
    info = services.fresh_stack()
    rows: list[dict[str, Any]] = []
    with BatchSimulator(api_key=SIM_API_KEY) as sim:
        for size_mb in plan.submit_sizes_mb:
            rows.append(_measure(services, info, sim, plan, workdir, size_mb))
        # The same largest file again, with OpenAI at the far end of a link rather than on
        # loopback: the wait for the link costs no CPU, so validation can run during it.
        sim.link_bytes_per_second = LINK_MB_PER_SECOND * MB
        linked = _measure(services, info, sim, plan, workdir, plan.submit_sizes_mb[-1])
        sim.link_bytes_per_second = None
    return {
        "rows": rows,
        "link": {**linked, "link_mb_per_second": LINK_MB_PER_SECOND},
        "checks": [c.as_dict() for c in checks(rows, linked)],
    }


def _measure(
    services: Services,
    info: StackInfo,
    sim: BatchSimulator,
    plan: Plan,
    workdir: Path,
    size_mb: int,
) -> dict[str, Any]:
    """Raw copy and handler, alternately, each on an object of its own (a job per object)."""
    bucket = info.resource("BatchBucket")
    prefix = info.env("SubmitFunction")["INPUT_PREFIX"]
    lines = size_mb * MB // plan.submit_line_bytes
    path = workdir / f"requests-{size_mb}mb.jsonl"
    write_request_file(path, lines, plan.submit_line_bytes)
    tag = f"{size_mb}mb-{uuid.uuid4().hex[:8]}"
    sources = [_put(path, bucket, f"{prefix}bench-{tag}-{n}.jsonl") for n in range(plan.repeats)]
    write_request_file(path, 1, plan.submit_line_bytes)
    warmups = [
        _put(path, bucket, f"{prefix}bench-{tag}-{n}-warmup.jsonl") for n in range(plan.repeats)
    ]
    path.unlink()

    def params(n: int) -> dict[str, Any]:
        return {
            "stack": info.to_dict(),
            "openai_base_url": sim.base_url,
            "moto_pid": services.moto_pid,
            "source": sources[n],
            "warmup": warmups[n],
        }

    def run_worker(name: str, n: int) -> dict[str, Any]:
        sim.finish_reading_inputs()  # the previous run's batch is read in the simulator
        return services.run_worker(name, params(n))

    raw, handler = best_of(
        plan.repeats,
        lambda n: run_worker("submit.raw", n),
        lambda n: run_worker("submit.handler", n),
    )
    return {
        "size_mb": size_mb,
        "bytes": sources[0]["size"],
        "lines": lines,
        "raw": raw,
        "handler": handler,
        "ratio": ratio(handler["seconds"], raw["seconds"]),
    }


def _put(path: Path, bucket: str, key: str) -> dict[str, Any]:
    s3 = boto3.client("s3")
    s3.upload_file(str(path), bucket, key)
    head = s3.head_object(Bucket=bucket, Key=key)
    return {
        "bucket": bucket,
        "key": key,
        "size": head["ContentLength"],
        "etag": head["ETag"],
        "version_id": head.get("VersionId"),
    }


def checks(rows: list[dict[str, Any]], linked: dict[str, Any]) -> list[Check]:
    result: list[Check] = []
    for row in rows:
        handler, raw = row["handler"], row["raw"]
        result.append(
            Check(
                SECTION,
                f"{row['size_mb']} MB ({row['lines']:,} lines): submit handler vs raw copy",
                f"≤ {RATIO_TARGET}{TIMES}",
                f"{row['ratio']:.2f}{TIMES} ({fmt_seconds(handler['seconds'])} vs "
                f"{fmt_seconds(raw['seconds'])})",
                row["ratio"] <= RATIO_TARGET,
            )
        )
    for row in rows:
        growth = row["handler"]["rss_growth_mib"]
        result.append(
            Check(
                SECTION,
                f"{row['size_mb']} MB: submit handler peak RSS growth",
                f"< {RSS_TARGET_MIB:.0f} MiB",
                fmt_mib(growth),
                growth < RSS_TARGET_MIB,
            )
        )
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        spread = large["handler"]["rss_growth_mib"] - small["handler"]["rss_growth_mib"]
        result.append(
            Check(
                SECTION,
                f"RSS growth flat: {large['size_mb']} MB vs {small['size_mb']} MB",
                f"within {FLATNESS_TARGET_MIB:.0f} MiB",
                f"{spread:+.1f} MiB",
                abs(spread) <= FLATNESS_TARGET_MIB,
            )
        )
    result.append(
        Check(
            SECTION,
            f"{linked['size_mb']} MB over a {LINK_MB_PER_SECOND} MB/s link to OpenAI: "
            "submit handler vs raw copy",
            "reported",
            f"{linked['ratio']:.2f}{TIMES} ({fmt_seconds(linked['handler']['seconds'])} vs "
            f"{fmt_seconds(linked['raw']['seconds'])})",
            None,
        )
    )
    return result


# --- in the measured children -------------------------------------------------------------------


def handler_task(params: dict[str, Any]) -> dict[str, Any]:
    """The submit function, cold-started as template.yaml wires it, invoked with S3 events:
    first for a one-line file (so first-call costs stay out of the measurement), then the file."""
    info = StackInfo.from_dict(params["stack"])
    function = load_function(info, "SubmitFunction", params["openai_base_url"])
    baseline = reset_peak_rss()
    with stopwatch() as first:
        _submitted(function.invoke(_event(params["warmup"], info.region)))
    with cpu_meter(params["moto_pid"], here="handler") as cpu, stopwatch() as watch:
        outcome = _submitted(function.invoke(_event(params["source"], info.region)))
    memory = rss_figures(baseline)
    return {
        "seconds": watch.seconds,
        "cpu_seconds": cpu,
        "warmup_seconds": first.seconds,
        **memory,
        "batches": len(outcome["batch_ids"]),
        "requests": outcome["request_count"],
    }


def _event(source: dict[str, Any], region: str) -> dict[str, Any]:
    return object_created(
        bucket=source["bucket"],
        key=source["key"],
        size=source["size"],
        etag=source["etag"],
        sequencer="0055AED6DCD90281E5",
        version_id=source["version_id"],
        region=region,
    )


def _submitted(result: dict[str, Any]) -> dict[str, Any]:
    (outcome,) = result["outcomes"]
    if outcome["status"] != "submitted":
        raise RuntimeError(f"the submission was not accepted: {outcome}")
    submitted: dict[str, Any] = outcome
    return submitted


def raw_task(params: dict[str, Any]) -> dict[str, Any]:
    """The same bytes from the same S3 object to the same simulator routes, nothing parsed."""
    source = params["source"]
    s3 = aws_clients.client("s3")  # the handler's client configuration
    api = OpenAIBatchAPI(params["openai_base_url"], lambda: SIM_API_KEY)
    baseline = reset_peak_rss()
    with stopwatch() as first:
        raw_copy(s3, api, params["warmup"])
    with cpu_meter(params["moto_pid"], here="copy") as cpu, stopwatch() as watch:
        file_id = raw_copy(s3, api, source)
    memory = rss_figures(baseline)
    # Not part of the raw copy: where the handler's extra time goes.
    with stopwatch() as validation:
        body = S3Objects(s3).open(source["bucket"], source["key"], source["version_id"])
        report = validate_stream(body)
    if not report.ok:
        raise RuntimeError(f"the generated file is invalid: {report.summary()}")
    with stopwatch() as create:
        api.create_batch(file_id, ENDPOINT, {"bench": "raw"})
    return {
        "seconds": watch.seconds,
        "cpu_seconds": cpu,
        "warmup_seconds": first.seconds,
        **memory,
        "validation_seconds": validation.seconds,
        "create_batch_seconds": create.seconds,
    }


def raw_copy(s3: Any, api: OpenAIBatchAPI, source: dict[str, Any]) -> str:
    """Stream the object to the simulator in 1 MiB chunks: Files API up to 64 MiB, else the
    Uploads API with one ranged GetObject per 64 MiB part. Returns the file id."""
    size = int(source["size"])
    name = Path(source["key"]).name
    if size <= MAX_UPLOAD_PART_BYTES:
        return str(api.upload_file(name, size, _ranged(s3, source, 0, size))["id"])
    upload = api.create_upload(name, size)
    part_ids = [
        api.add_upload_part(
            upload["id"],
            min(MAX_UPLOAD_PART_BYTES, size - start),
            _ranged(s3, source, start, min(start + MAX_UPLOAD_PART_BYTES, size)),
        )["id"]
        for start in range(0, size, MAX_UPLOAD_PART_BYTES)
    ]
    return str(api.complete_upload(upload["id"], part_ids)["file"]["id"])


def _ranged(s3: Any, source: dict[str, Any], start: int, end: int) -> Callable[[], Iterator[bytes]]:
    def open_range() -> Iterator[bytes]:
        request = {
            "Bucket": source["bucket"],
            "Key": source["key"],
            "Range": f"bytes={start}-{end - 1}",
        }
        if source["version_id"]:
            request["VersionId"] = source["version_id"]
        body = s3.get_object(**request)["Body"]
        return iter(body.iter_chunks(MIB))

    return open_range
