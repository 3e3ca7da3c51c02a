"""`make soak` splits its jobs into shards with seeds of their own, each replayable alone."""

from __future__ import annotations

from tests.soak.shards import Shard, plan


def test_jobs_split_into_shards_with_consecutive_seeds() -> None:
    assert plan(11, 200, 100) == [Shard(11, 100), Shard(12, 100)]
    assert [shard.jobs for shard in plan(5, 450, 200)] == [200, 200, 50]
    assert plan(7, 200, 200) == [Shard(7, 200)]


def test_a_shard_replays_as_a_run_of_one_shard() -> None:
    shard = plan(40, 5000, 200)[3]
    assert shard.replay == "make soak SEED=43 JOBS=200 SHARD_JOBS=200"
    assert plan(43, 200, 200) == [shard]
