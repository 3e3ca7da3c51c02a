"""4. Cold start: how long each handler module takes to import, against `import boto3` alone,
and how big `sam build` makes the layer and the functions.

Each import runs in a fresh `python -X importtime -c "import …"` (one unmeasured run first, so
bytecode is compiled), alternating between the targets; the figure is the median of the runs.
A handler module is imported as Lambda does it (`app` from its code directory) with the
environment template.yaml gives it. "As deployed" sets LAMBDA_TASK_ROOT so Powertools' Tracer
starts as it does under `Tracing: Active` (it patches botocore and requests for X-Ray); "tracing
off" sets POWERTOOLS_TRACE_DISABLED, as local runs and tests do.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import TIMES, Check, Plan
from benchmarks.services import QUIET, ROOT, Services, StackInfo

SECTION = "Cold start"
RATIO_TARGET = 1.3
BUILD = ROOT / ".aws-sam" / "build"
ARTIFACTS = ("SharedLayer", "SubmitFunction", "PollFunction")
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # function and all its layers, unzipped
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


@dataclass(frozen=True)
class Target:
    label: str
    module: str
    cwd: Path
    function: str | None  # the template's function whose environment it gets
    tracing: bool


TARGETS = (
    Target("import boto3", "boto3", ROOT, None, tracing=False),
    Target("submit app (as deployed)", "app", ROOT / "functions/submit", "SubmitFunction", True),
    Target("poll app (as deployed)", "app", ROOT / "functions/poll", "PollFunction", True),
    Target("submit app (tracing off)", "app", ROOT / "functions/submit", "SubmitFunction", False),
    Target("poll app (tracing off)", "app", ROOT / "functions/poll", "PollFunction", False),
)


def run(services: Services, plan: Plan, _workdir: Path) -> dict[str, Any]:
    info = services.fresh_stack()
    envs = {target.label: _environment(target, info) for target in TARGETS}
    samples: dict[str, list[dict[str, Any]]] = {target.label: [] for target in TARGETS}
    for target in TARGETS:  # compile bytecode, warm the page cache
        import_profile(target, envs[target.label])
    for _ in range(plan.import_runs):
        for target in TARGETS:
            samples[target.label].append(import_profile(target, envs[target.label]))
    imports = []
    for target in TARGETS:
        runs = sorted(samples[target.label], key=lambda s: s["total_us"])
        median_run = runs[len(runs) // 2]
        imports.append(
            {
                "label": target.label,
                "module": target.module,
                "median_ms": statistics.median(s["total_us"] for s in runs) / 1000,
                "runs_ms": [s["total_us"] / 1000 for s in samples[target.label]],
                "contributors": median_run["contributors"],
                "body_ms": median_run["self_us"] / 1000,
            }
        )
    packages = package_sizes()
    return {
        "imports": imports,
        "packages": packages,
        "checks": [c.as_dict() for c in checks(imports, packages)],
    }


def checks(imports: list[dict[str, Any]], packages: dict[str, Any]) -> list[Check]:
    boto3_ms = imports[0]["median_ms"]
    result: list[Check] = []
    for row in imports[1:]:
        if "as deployed" not in row["label"]:
            continue
        times = row["median_ms"] / boto3_ms
        result.append(
            Check(
                SECTION,
                f"{row['label']}: import time vs `import boto3`",
                f"≤ {RATIO_TARGET}{TIMES}",
                f"{times:.2f}{TIMES} ({row['median_ms']:.0f} ms vs {boto3_ms:.0f} ms)",
                times <= RATIO_TARGET,
            )
        )
    if packages.get("built"):
        layer = packages["artifacts"]["SharedLayer"]["unzipped_bytes"]
        for name in ("SubmitFunction", "PollFunction"):
            total = layer + packages["artifacts"][name]["unzipped_bytes"]
            result.append(
                Check(
                    SECTION,
                    f"{name} + SharedLayer unzipped size (sam build)",
                    "reported (Lambda's limit: 250 MiB)",
                    f"{total / 1024 / 1024:.1f} MiB",
                    None,
                )
            )
    return result


def _environment(target: Target, info: StackInfo) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    if target.function is not None:
        env.update(info.env(target.function))
        env.update(QUIET)
        env["AWS_LAMBDA_FUNCTION_NAME"] = info.resource(target.function)
        env["OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"  # never called while importing
    if target.tracing:
        env["LAMBDA_TASK_ROOT"] = str(target.cwd)
    else:
        env["POWERTOOLS_TRACE_DISABLED"] = "1"
    return env


def import_profile(target: Target, env: dict[str, str]) -> dict[str, Any]:
    """One fresh interpreter's `-X importtime` of the target: its cumulative time, its own
    module body's time, and what its direct imports cost, by top-level package."""
    completed = subprocess.run(  # noqa: S603 - the running interpreter, fixed arguments
        [sys.executable, "-X", "importtime", "-c", f"import {target.module}"],
        cwd=target.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"importing {target.label} failed:\n{completed.stderr[-3000:]}")
    children: dict[str, int] = {}
    for line in completed.stderr.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        self_us, cumulative_us, indent, name = match.groups()
        depth = len(indent) // 2
        if depth == 0 and name == target.module:
            return {
                "total_us": int(cumulative_us),
                "self_us": int(self_us),
                "contributors": dict(sorted(children.items(), key=lambda kv: -kv[1])[:8]),
            }
        if depth == 0:
            children = {}  # imported before the target, by the interpreter's start-up
        elif depth == 1:
            root = name.split(".", 1)[0]
            children[root] = children.get(root, 0) + int(cumulative_us)
    raise RuntimeError(f"no import time for {target.module} in:\n{completed.stderr[-2000:]}")


def package_sizes() -> dict[str, Any]:
    """Sizes of what `sam build` put in .aws-sam/build, unzipped and as Lambda's zip."""
    if not all((BUILD / name).is_dir() for name in ARTIFACTS):
        return {"built": False}
    artifacts = {}
    for name in ARTIFACTS:
        root = BUILD / name
        files = [p for p in root.rglob("*") if p.is_file()]
        top: dict[str, int] = {}
        base = root / "python" if (root / "python").is_dir() else root
        for path in files:
            relative = path.relative_to(base) if path.is_relative_to(base) else path.name
            first = Path(relative).parts[0]
            first = first.split("-")[0] if first.endswith((".dist-info", ".egg-info")) else first
            top[first] = top.get(first, 0) + path.stat().st_size
        artifacts[name] = {
            "files": len(files),
            "unzipped_bytes": sum(p.stat().st_size for p in files),
            "zipped_bytes": _zipped_size(root, files),
            "largest": dict(sorted(top.items(), key=lambda kv: -kv[1])[:6]),
        }
    return {"built": True, "artifacts": artifacts}


def _zipped_size(root: Path, files: list[Path]) -> int:
    with tempfile.TemporaryFile() as target:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(files):
                archive.write(path, path.relative_to(root))
        return target.tell()
