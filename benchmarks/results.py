"""3. Results: merging a 50,000-line job's results into input order, and streaming a 500 MB
output file from OpenAI to S3, each against a raw copy of the same bytes to the same sink.

Merge: a 50,000-request job runs through the simulator (every 20th request is refused, so there
is an error file too); its output and error files are put in S3 as the finisher saves them.
The measured child runs `merge_in_input_order` fed exactly as JobFinisher feeds it (the input
re-read from S3 by byte range, the result files from S3, the merged file written by an
S3MultipartWriter); the baseline child copies the same result objects into one S3 object.

Stream: a 500 MB JSONL file on the simulator is saved to S3 by JobFinisher's own raw-file step
(GET /files/{id}/content → S3MultipartWriter); the baseline streams the same response into a
plain multipart upload with the same part size and CRC32 checksums.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import boto3
import requests

from batchdrop.adapters import aws_clients
from batchdrop.adapters.openai_api import OpenAIBatchAPI
from batchdrop.adapters.s3_multipart import (
    CHECKSUM_ALGORITHM,
    DEFAULT_PART_BYTES,
    S3MultipartWriter,
)
from batchdrop.domain.results import merge_in_input_order
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
    fmt_mib,
    fmt_seconds,
    ratio,
    reset_peak_rss,
    rss_figures,
    stopwatch,
)
from benchmarks.services import Services, StackInfo, load_function
from local.simulator import BatchSimulator, ManualClock

SECTION = "Results"
RATIO_TARGET = 2.0
RSS_TARGET_MIB = 64.0
WHOLE_LIFECYCLE_SECONDS = 60 + 600 + 60 + 1  # validating, in_progress, finalizing (simulated)
FAILED_EVERY = 20


def write_merge_input(path: Path, lines: int) -> None:
    with path.open("wb", buffering=MIB) as out:
        for n in range(lines):
            custom_id = f"fail-{n}" if n % FAILED_EVERY == FAILED_EVERY - 1 else f"req-{n}"
            request = {
                "custom_id": custom_id,
                "method": "POST",
                "url": ENDPOINT,
                "body": {
                    "model": MODEL,
                    "messages": [
                        {"role": "system", "content": "You are a concise assistant."},
                        {"role": "user", "content": f"Summarise document number {n} in a line."},
                    ],
                },
            }
            out.write(json.dumps(request).encode() + b"\n")


def write_output_file(path: Path, size: int) -> int:
    """Result lines shaped like OpenAI's chat completion output, until `size` bytes."""
    text = "The simulated model answers with a sentence of moderate length. " * 12
    line = {
        "id": "batch_req_{n:>09}",
        "custom_id": "req-{n:>09}",
        "response": {
            "status_code": 200,
            "request_id": "req_{n:>09}",
            "body": {
                "id": "chatcmpl-{n:>09}",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 31, "completion_tokens": 180, "total_tokens": 211},
            },
        },
        "error": None,
    }
    pattern = json.dumps(line).encode()
    written = lines = 0
    with path.open("wb", buffering=MIB) as out:
        while written < size:
            data = pattern.replace(b"{n:>09}", b"%09d" % lines) + b"\n"
            data = data[: size - written - 1] + b"\n" if written + len(data) > size else data
            out.write(data)
            written += len(data)
            lines += 1
    return lines


def run(services: Services, plan: Plan, workdir: Path) -> dict[str, Any]:
    info = services.fresh_stack()
    clock = ManualClock(start=time.time())
    with BatchSimulator(api_key=SIM_API_KEY, clock=clock) as sim:
        merge = _merge(services, plan, workdir, info, sim, clock)
        stream = _stream(services, plan, workdir, info, sim)
    long_line = services.run_worker(
        "results.long_line", {"workdir": str(workdir), "mb": plan.long_line_mb}
    )
    return {
        "merge": merge,
        "stream": stream,
        "long_line": long_line,
        "checks": [c.as_dict() for c in [*checks(merge, stream), long_line_check(long_line)]],
    }


def long_line_check(long_line: dict[str, Any]) -> Check:
    return Check(
        SECTION,
        f"Merge a job holding one {long_line['line_bytes'] / MB:,.0f} MB embeddings result line: "
        "peak RSS growth",
        f"< {RSS_TARGET_MIB:.0f} MiB",
        f"{fmt_mib(long_line['rss_growth_mib'])} ({fmt_seconds(long_line['seconds'])})",
        long_line["rss_growth_mib"] < RSS_TARGET_MIB,
    )


def _merge(
    services: Services,
    plan: Plan,
    workdir: Path,
    info: StackInfo,
    sim: BatchSimulator,
    clock: ManualClock,
) -> dict[str, Any]:
    bucket = info.resource("BatchBucket")
    prefix = info.env("PollFunction")["INPUT_PREFIX"]
    s3 = boto3.client("s3")
    api = OpenAIBatchAPI(sim.base_url, lambda: SIM_API_KEY)
    path = workdir / "merge-input.jsonl"
    write_merge_input(path, plan.merge_lines)
    size = path.stat().st_size
    source_key = f"{prefix}merge.jsonl"
    s3.upload_file(str(path), bucket, source_key)
    version = s3.head_object(Bucket=bucket, Key=source_key).get("VersionId")
    uploaded = api.upload_file("merge.jsonl", size, lambda: _file_chunks(path))
    path.unlink()
    batch = api.create_batch(str(uploaded["id"]), ENDPOINT, {})
    clock.advance(WHOLE_LIFECYCLE_SECONDS)
    batch = api.retrieve_batch(batch["id"])  # the simulator writes the result files now
    result_keys, result_bytes, result_lines = [], 0, 0
    for kind in ("output", "error"):
        file_id = batch.get(f"{kind}_file_id")
        if not file_id:
            continue
        key = f"results/merge/raw/{batch['id']}.{kind}.jsonl"
        local = workdir / f"merge-{kind}.jsonl"
        with api.file_content(str(file_id)) as response, local.open("wb") as out:
            for chunk in response.iter_content(MIB):
                out.write(chunk)
        result_bytes += local.stat().st_size
        result_lines += sum(1 for _ in local.open("rb"))
        s3.upload_file(str(local), bucket, key)
        local.unlink()
        result_keys.append(key)
    params = {
        "stack": info.to_dict(),
        "openai_base_url": sim.base_url,
        "bucket": bucket,
        "job": {
            "job_id": "merge",
            "source_bucket": bucket,
            "source_key": source_key,
            "source_version": version,
        },
        "part": {"index": 0, "kind": "part", "start": 0, "end": size},
        "result_keys": result_keys,
    }
    raw, merged = best_of(
        plan.repeats,
        lambda _: services.run_worker("results.merge_raw", params),
        lambda _: services.run_worker("results.merge", params),
    )
    return {
        "lines": plan.merge_lines,
        "input_bytes": size,
        "result_files": len(result_keys),
        "result_bytes": result_bytes,
        "result_lines": result_lines,
        "raw": raw,
        "merge": merged,
        "ratio": ratio(merged["seconds"], raw["seconds"]),
    }


def _stream(
    services: Services, plan: Plan, workdir: Path, info: StackInfo, sim: BatchSimulator
) -> dict[str, Any]:
    api = OpenAIBatchAPI(sim.base_url, lambda: SIM_API_KEY)
    path = workdir / "output.jsonl"
    lines = write_output_file(path, plan.stream_mb * MB)
    size = path.stat().st_size
    uploaded = api.upload_file("output.jsonl", size, lambda: _file_chunks(path))
    path.unlink()
    params = {
        "stack": info.to_dict(),
        "openai_base_url": sim.base_url,
        "bucket": info.resource("BatchBucket"),
        "file_id": uploaded["id"],
    }
    raw, streamed = best_of(
        plan.repeats,
        lambda n: services.run_worker("results.stream_raw", {**params, "run": n}),
        lambda n: services.run_worker("results.stream", {**params, "run": n}),
    )
    if streamed["bytes"] != size or raw["bytes"] != size:
        raise RuntimeError(f"copied {streamed['bytes']} and {raw['bytes']} bytes, not {size}")
    return {
        "bytes": size,
        "lines": lines,
        "raw": raw,
        "stream": streamed,
        "ratio": ratio(streamed["seconds"], raw["seconds"]),
    }


def checks(merge: dict[str, Any], stream: dict[str, Any]) -> list[Check]:
    rows = (
        (f"Merge {merge['lines']:,} lines into input order", merge["merge"], merge["raw"]),
        (f"Stream a {stream['bytes'] / MB:,.0f} MB output to S3", stream["stream"], stream["raw"]),
    )
    result: list[Check] = []
    for name, measured, raw in rows:
        speed = ratio(measured["seconds"], raw["seconds"])
        result.append(
            Check(
                SECTION,
                f"{name}: time vs raw copy",
                f"≤ {RATIO_TARGET:.0f}{TIMES}",
                f"{speed:.2f}{TIMES} ({fmt_seconds(measured['seconds'])} vs "
                f"{fmt_seconds(raw['seconds'])})",
                speed <= RATIO_TARGET,
            )
        )
        result.append(
            Check(
                SECTION,
                f"{name}: peak RSS growth",
                f"< {RSS_TARGET_MIB:.0f} MiB",
                fmt_mib(measured["rss_growth_mib"]),
                measured["rss_growth_mib"] < RSS_TARGET_MIB,
            )
        )
    return result


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(MIB):
            yield chunk


# --- in the measured children -------------------------------------------------------------------


def merge_task(params: dict[str, Any]) -> dict[str, Any]:
    """JobFinisher's merge step: its own input and result streams, its own S3 sink."""
    info = StackInfo.from_dict(params["stack"])
    finisher = load_function(
        info, "PollFunction", params["openai_base_url"]
    ).module.poller._finisher
    bucket = params["bucket"]
    baseline = reset_peak_rss()
    with stopwatch() as watch, tempfile.TemporaryDirectory(prefix="merge-bench-") as scratch:
        inputs = [finisher._input_stream(params["job"], params["part"])]
        results = [finisher._s3_stream(bucket, key) for key in params["result_keys"]]
        with (
            S3MultipartWriter(
                finisher._objects.client, bucket, "results/merge/results.jsonl"
            ) as out,
            (Path(scratch) / "unfinished.jsonl").open("wb") as unfinished,
        ):
            summary = merge_in_input_order(inputs, results, out, unfinished, workdir=Path(scratch))
    memory = rss_figures(baseline)
    # Not part of the measurement: one pass over the input as the merge reads it (normalised
    # lines through an IterableReader, read in iter_lines' 1 MiB reads), against the same range
    # read straight from S3. The merge makes two such passes.
    with stopwatch() as input_pass:
        stream = finisher._input_stream(params["job"], params["part"])()
        while stream.read(MIB):
            pass
    with stopwatch() as input_raw:
        job, part = params["job"], params["part"]
        body = finisher._objects.open(
            job["source_bucket"], job["source_key"], job["source_version"],
            start=part["start"], end=part["end"],
        )  # fmt: skip
        while body.read(MIB):
            pass
    return {
        "seconds": watch.seconds,
        **memory,
        "bytes": out.bytes_written,
        "summary": asdict(summary),
        "input_pass_seconds": input_pass.seconds,
        "input_raw_read_seconds": input_raw.seconds,
    }


def write_long_line_job(workdir: Path, mb: int) -> tuple[Path, Path]:
    """A job of three embeddings requests whose first result is one line of about `mb` MB
    (2,048 inputs of 3,072 dimensions make about 90 MB), written a vector at a time."""
    requests_path, results_path = workdir / "long-requests.jsonl", workdir / "long-results.jsonl"
    with requests_path.open("wb") as out:
        for n in range(3):
            body = {"model": "text-embedding-3-large", "input": [f"text {n}"]}
            line = {
                "custom_id": f"emb-{n}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": body,
            }
            out.write(json.dumps(line).encode() + b"\n")
    vector = json.dumps([round(0.0123456 * ((i % 97) - 48), 7) for i in range(3072)]).encode()
    item = b'{"object":"embedding","index":%d,"embedding":' + vector + b"}"
    with results_path.open("wb", buffering=MIB) as out:
        out.write(b'{"id":"batch_req_0","custom_id":"emb-0","response":{"status_code":200,')
        out.write(b'"request_id":"r0","body":{"object":"list","data":[')
        count = 0
        while out.tell() < mb * MB:
            out.write((b"," if count else b"") + item % count)
            count += 1
        out.write(b'],"model":"text-embedding-3-large","usage":{"prompt_tokens":9,')
        out.write(b'"total_tokens":9}}},"error":null}\n')
        for n in (1, 2):
            small = {"custom_id": f"emb-{n}", "response": {"status_code": 200, "body": {}}}
            out.write(json.dumps(small | {"error": None}).encode() + b"\n")
    return requests_path, results_path


def long_line_task(params: dict[str, Any]) -> dict[str, Any]:
    """merge_in_input_order over a job holding one ~100 MB result line, files on local disk."""
    workdir = Path(tempfile.mkdtemp(prefix="long-line-", dir=params["workdir"]))
    requests_path, results_path = write_long_line_job(workdir, int(params["mb"]))
    merged_path = workdir / "merged.jsonl"
    baseline = reset_peak_rss()
    with (
        stopwatch() as watch,
        merged_path.open("wb") as merged,
        (workdir / "unfinished.jsonl").open("wb") as unfinished,
    ):
        summary = merge_in_input_order(
            [lambda: requests_path.open("rb")], [lambda: results_path.open("rb")],
            merged, unfinished, workdir=workdir,
        )  # fmt: skip
    memory = rss_figures(baseline)
    line_bytes = results_path.stat().st_size
    merged_bytes = merged_path.stat().st_size
    shutil.rmtree(workdir)
    if summary.succeeded != 3:
        raise RuntimeError(f"the long line was not merged: {asdict(summary)}")
    return {
        "seconds": watch.seconds,
        **memory,
        "line_bytes": line_bytes,
        "merged_bytes": merged_bytes,
    }


def merge_raw_task(params: dict[str, Any]) -> dict[str, Any]:
    """The result objects, byte for byte, into one S3 object."""
    s3 = aws_clients.client("s3")
    bucket = params["bucket"]
    baseline = reset_peak_rss()
    with stopwatch() as watch:
        chunks = (
            chunk
            for key in params["result_keys"]
            for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(MIB)
        )
        copied = raw_multipart_copy(s3, bucket, "results/merge/raw-copy.jsonl", chunks)
    memory = rss_figures(baseline)
    return {
        "seconds": watch.seconds,
        **memory,
        "bytes": copied,
    }


def stream_task(params: dict[str, Any]) -> dict[str, Any]:
    """JobFinisher's raw-file step, as it saves a batch's output file."""
    info = StackInfo.from_dict(params["stack"])
    finisher = load_function(
        info, "PollFunction", params["openai_base_url"]
    ).module.poller._finisher
    # A key per run: the finisher skips a raw file already saved whole.
    part = {
        "batch_id": f"batch_bench{params['run']}",
        "openai": {"output_file_id": params["file_id"]},
    }
    baseline = reset_peak_rss()
    with stopwatch() as watch:
        key = finisher._save_raw(params["bucket"], "results/stream/", part, "output")
    memory = rss_figures(baseline)
    size = aws_clients.client("s3").head_object(Bucket=params["bucket"], Key=key)["ContentLength"]
    return {
        "seconds": watch.seconds,
        **memory,
        "bytes": size,
    }


def stream_raw_task(params: dict[str, Any]) -> dict[str, Any]:
    """The same response, read the same way, into a plain multipart upload."""
    s3 = aws_clients.client("s3")
    session = requests.Session()
    url = f"{params['openai_base_url']}/files/{params['file_id']}/content"
    baseline = reset_peak_rss()
    with (
        stopwatch() as watch,
        session.get(
            url, headers={"Authorization": f"Bearer {SIM_API_KEY}"}, stream=True, timeout=120
        ) as response,
    ):
        response.raise_for_status()
        response.raw.decode_content = True
        chunks = iter(lambda: response.raw.read(MIB), b"")
        key = f"results/stream/raw-copy-{params['run']}.jsonl"
        copied = raw_multipart_copy(s3, params["bucket"], key, chunks)
    memory = rss_figures(baseline)
    return {
        "seconds": watch.seconds,
        **memory,
        "bytes": copied,
    }


def raw_multipart_copy(
    s3: Any, bucket: str, key: str, chunks: Iterable[bytes], part_size: int = DEFAULT_PART_BYTES
) -> int:
    """Bytes into one object in parts of `part_size`, one put_object when there is less; the
    same requests, checksum included, as S3MultipartWriter makes, without its bookkeeping."""
    buffer = bytearray()
    parts: list[dict[str, Any]] = []
    upload_id: str | None = None
    copied = 0

    def flush() -> None:
        nonlocal upload_id
        if upload_id is None:
            upload_id = s3.create_multipart_upload(
                Bucket=bucket, Key=key, ChecksumAlgorithm=CHECKSUM_ALGORITHM
            )["UploadId"]
        number = len(parts) + 1
        uploaded = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=bytes(buffer),
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
        )
        parts.append(
            {
                "PartNumber": number,
                "ETag": uploaded["ETag"],
                "ChecksumCRC32": uploaded["ChecksumCRC32"],
            }
        )
        buffer.clear()

    for chunk in chunks:
        buffer += chunk
        copied += len(chunk)
        if len(buffer) >= part_size:
            flush()
    if upload_id is None:
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(buffer))
        return copied
    if buffer:
        flush()
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    return copied
