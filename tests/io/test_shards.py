"""Shard round trip, schema versioning and corrupt-shard detection."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gfkd.errors import ShardError
from gfkd.io import shards as S


def _table(F=3, C=2):
    # two padded graphs: a triangle (3 nodes) and a single edge (2 of 3 nodes)
    adj = torch.zeros(2, 3, 3)
    for i, j in [(0, 1), (1, 2), (0, 2)]:
        adj[0, i, j] = adj[0, j, i] = 1
    adj[1, 0, 1] = adj[1, 1, 0] = 1
    x = torch.zeros(2, 3, F)
    x[0, :, 0] = 1
    x[1, :2, 2] = 1
    schema = S.shard_schema(F, C, generator="test")
    return S.graphs_to_table(np.array([10, 11]), 0, torch.tensor([1, 0]), torch.tensor([3, 2]), adj, adj * 0.7, x,
                             torch.tensor([[0.0, 2.0], [1.0, -1.0]]), torch.tensor([0.9, 0.1]), "test", 7, schema)


def test_round_trip_sorted_by_difficulty(tmp_path):
    S.write_shard(tmp_path / "shard-0.parquet", _table())
    S.write_shard_manifest(tmp_path, ["shard-0.parquet"], "hash")
    tables = list(S.read_shard_set(tmp_path))
    graphs = S.table_to_graphs(tables[0])
    assert [int(g.graph_id) for g in graphs] == [11, 10]  # easy (low difficulty) first
    edge, tri = graphs
    assert tri.num_nodes == 3 and tri.edge_index.size(1) == 6 and tri.x.shape == (3, 3)
    assert edge.num_nodes == 2 and sorted(edge.edge_index.t().tolist()) == [[0, 1], [1, 0]]
    assert torch.allclose(tri.edge_prob, torch.full((6,), 0.7)) and int(tri.y) == 1
    assert tri.teacher_logits.tolist() == [[0.0, 2.0]]
    assert pq.read_metadata(tmp_path / "shard-0.parquet").row_group(0).column(0).compression == "ZSTD"
    assert not list(tmp_path.glob(".*"))


def test_corrupt_shard_is_named(tmp_path):
    S.write_shard(tmp_path / "shard-0.parquet", _table())
    S.write_shard_manifest(tmp_path, ["shard-0.parquet"], "hash")
    data = bytearray((tmp_path / "shard-0.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "shard-0.parquet").write_bytes(bytes(data))
    with pytest.raises(ShardError, match="shard-0.parquet.*checksum"):
        list(S.read_shard_set(tmp_path))


def test_truncated_and_missing_shards(tmp_path):
    S.write_shard(tmp_path / "shard-0.parquet", _table())
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "shard-0.parquet").read_bytes()[:200])
    with pytest.raises(ShardError, match="cut.parquet"):
        S.read_shard(tmp_path / "cut.parquet")
    with pytest.raises(ShardError, match="_manifest.json"):
        list(S.read_shard_set(tmp_path))
    S.write_shard_manifest(tmp_path, ["shard-0.parquet"], "hash")
    (tmp_path / "shard-0.parquet").unlink()
    with pytest.raises(ShardError, match="missing"):
        list(S.read_shard_set(tmp_path))


def test_other_schema_version_is_rejected(tmp_path):
    t = _table()
    meta = dict(t.schema.metadata)
    meta[b"gfkd.schema_version"] = b"0"
    pq.write_table(t.replace_schema_metadata(meta), tmp_path / "old.parquet")
    with pytest.raises(ShardError, match="schema version 0"):
        S.read_shard(tmp_path / "old.parquet")
    pq.write_table(pa.table({"a": [1]}), tmp_path / "alien.parquet")
    with pytest.raises(ShardError, match="alien.parquet"):
        S.read_shard(tmp_path / "alien.parquet")
