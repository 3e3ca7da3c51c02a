"""A measured child process: `python -m benchmarks.worker REQUEST.json RESULT.json`.

The request names a task ("module:function" in TASKS) and its parameters; the task's JSON-able
result is written to RESULT.json. A fresh process per task keeps ru_maxrss a per-task figure.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Task = Callable[[dict[str, Any]], dict[str, Any]]

TASKS = {
    "submit.handler": "benchmarks.submit_stream:handler_task",
    "submit.raw": "benchmarks.submit_stream:raw_task",
    "poll.tick": "benchmarks.poll_fanout:tick_task",
    "poll.history": "benchmarks.poll_fanout:history_task",
    "results.merge": "benchmarks.results:merge_task",
    "results.merge_raw": "benchmarks.results:merge_raw_task",
    "results.stream": "benchmarks.results:stream_task",
    "results.stream_raw": "benchmarks.results:stream_raw_task",
    "results.long_line": "benchmarks.results:long_line_task",
    "cost.lifecycle": "benchmarks.cost_model:lifecycle_task",
    "validation.stream": "benchmarks.validation_memory:stream_task",
    "validation.dict": "benchmarks.validation_memory:dict_task",
}


def resolve(task: str) -> Task:
    module_name, _, function_name = TASKS[task].partition(":")
    function: Task = getattr(importlib.import_module(module_name), function_name)
    return function


def main(argv: list[str]) -> None:
    request_path, result_path = (Path(arg) for arg in argv)
    request = json.loads(request_path.read_text())
    result = resolve(request["task"])(request["params"])
    result_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
