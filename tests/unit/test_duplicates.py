"""Duplicate custom_id detection that spills sorted runs to disk instead of growing in memory."""

import random
from pathlib import Path

import pytest

from batchdrop.domain.duplicate_ids import Duplicate, DuplicateFinder, custom_id_digest


def expected_duplicates(ids: list[str]) -> list[Duplicate]:
    """What a dict of every custom_id seen (the obvious, unbounded way) reports."""
    first: dict[str, int] = {}
    found = []
    for line, custom_id in enumerate(ids, start=1):
        if custom_id in first:
            found.append(Duplicate(line, first[custom_id], custom_id[:61]))
        else:
            first[custom_id] = line
    return found


def find(ids: list[str], spill_dir: Path, **options: int) -> list[Duplicate]:
    with DuplicateFinder(spill_dir, **options) as finder:
        for line, custom_id in enumerate(ids, start=1):
            finder.add(custom_id_digest(custom_id), line, custom_id)
        return sorted(finder.duplicates(), key=lambda d: d.line)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("run_bytes", [1, 500, 1 << 20])
def test_spilled_runs_find_the_same_duplicates_as_a_dict(
    seed: int, run_bytes: int, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    alphabet = ["a", "b", "é", "\ud800", "💥", "x" * 70]
    ids = ["".join(rng.choices(alphabet, k=rng.randint(1, 3))) for _ in range(400)]
    assert find(ids, tmp_path, run_bytes=run_bytes) == expected_duplicates(ids)
    assert list(tmp_path.iterdir()) == []  # every spill file is gone


def test_many_runs_are_merged_in_rounds_of_bounded_fan_in(tmp_path: Path) -> None:
    ids = [f"id-{n % 97}" for n in range(1_000)]
    found = find(ids, tmp_path, run_bytes=1, fan_in=3)
    assert found == expected_duplicates(ids)
    assert list(tmp_path.iterdir()) == []


def test_a_full_run_goes_to_disk_and_a_small_file_never_does(tmp_path: Path) -> None:
    with DuplicateFinder(tmp_path, run_bytes=1 << 20) as finder:
        finder.add(custom_id_digest("a"), 1, "a")
        assert list(tmp_path.iterdir()) == []
    with DuplicateFinder(tmp_path, run_bytes=200) as finder:
        for line in range(1, 10):
            finder.add(custom_id_digest(str(line)), line, str(line))
        (spill_dir,) = tmp_path.iterdir()
        assert len(list(spill_dir.iterdir())) > 1
    assert list(tmp_path.iterdir()) == []


def test_spill_files_are_removed_when_the_caller_fails_midway(tmp_path: Path) -> None:
    def fail_midway() -> None:
        with DuplicateFinder(tmp_path, run_bytes=1) as finder:
            for line in range(1, 10):
                finder.add(custom_id_digest("same"), line, "same")
            raise RuntimeError("the S3 read failed")

    with pytest.raises(RuntimeError, match="S3"):
        fail_midway()
    assert list(tmp_path.iterdir()) == []


def test_the_first_use_is_the_lowest_line_whatever_run_it_is_in(tmp_path: Path) -> None:
    ids = ["z", "a", "b", "a", "c", "a"]
    assert find(ids, tmp_path, run_bytes=1) == [Duplicate(4, 2, "a"), Duplicate(6, 2, "a")]


def test_digests_must_be_sixteen_bytes(tmp_path: Path) -> None:
    with DuplicateFinder(tmp_path) as finder, pytest.raises(ValueError, match="16"):
        finder.add(b"short", 1, "x")
