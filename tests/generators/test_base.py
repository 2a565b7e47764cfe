"""gfkd/generators/base.py: the names of the files that sit beside a shard."""

from gfkd.generators.base import sidecar_name, state_name


def test_sidecars_are_named_after_their_shard_bank_and_chunk():
    assert state_name("shard-b02-c001.parquet") == "_state-b02-c001.pt"
    assert sidecar_name("shard-b02-c001.parquet", "time", ".json") == "_time-b02-c001.json"
    assert not sidecar_name("shard-b02-c001.parquet", "time", ".json").startswith("shard-")  # never globbed as a shard
