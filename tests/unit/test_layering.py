"""The layer's import contracts (pyproject.toml, run by `make lint`) hold, and catch what they
are there to catch: each case breaks a copy of the package the way a careless change would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path("layers/batchdrop/batchdrop")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the package and the contracts, on its own import path."""
    shutil.copytree(
        ROOT / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path: the editable install would find the checkout's own.
    env = {**os.environ, "PYTHONPATH": str(project / PACKAGE.parent)}
    return subprocess.run(  # noqa: S603 - our own tool, from our own venv
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def add_line(project: Path, module: str, line: str) -> None:
    path = project / PACKAGE / module
    path.write_text(path.read_text() + f"\n{line}\n")


# What a careless change would add, and the import the contracts' report must then name.
FORBIDDEN = {
    "domain/model.py": ("import boto3", "batchdrop.domain.model -> boto3"),
    "jobs/poll.py": ("import requests", "batchdrop.jobs.poll -> requests"),
    "jobs/finish.py": (
        "from batchdrop.adapters import s3_objects",
        "batchdrop.jobs.finish -> batchdrop.adapters.s3_objects",
    ),
    "adapters/sns.py": (
        "from batchdrop.domain import emails",
        "batchdrop.adapters.sns -> batchdrop.domain.emails",
    ),
    "domain/emails.py": (
        "from batchdrop.jobs import outbox",
        "batchdrop.domain.emails -> batchdrop.jobs.outbox",
    ),
}


@pytest.mark.slow  # lint-imports in a process of its own, about a second
def test_each_forbidden_import_breaks_a_contract_naming_the_module(project: Path) -> None:
    """boto3 in the domain among them. One run for all: lint-imports reports every broken
    import, not just the first, and each run costs most of a second."""
    for module, (line, _) in FORBIDDEN.items():
        add_line(project, module, line)
    result = lint_imports(project)
    assert result.returncode != 0
    missing = [named for _, named in FORBIDDEN.values() if named not in result.stdout]
    assert not missing, result.stdout
