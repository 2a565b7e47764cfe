"""Pseudo-graph shards: the versioned Parquet schema, atomic writes and checked reads.

One row per graph: graph_id, bank, label, num_nodes, src/dst (int32 lists, both directions for undirected graphs),
edge_prob, x (list of fixed-size float32 rows), teacher_logits (fixed-size), difficulty, generator, gen_step. The
schema version and provenance sit in the schema metadata. Rows are sorted by difficulty (easy first) so row-group
statistics can prune a curriculum filter. A shard set is a folder of `shard-*.parquet` plus `_manifest.json`
(files, sha256, rows, schema version, config hash) written last; `read_shard_set` checks all of it and names the
file at fault.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch_geometric.data import Data

from gfkd.errors import ShardError
from gfkd.io.atomic import sha256_file, write_atomic, write_json

SCHEMA_VERSION = 1
ROW_GROUP_SIZE = 2048
SHARD_MANIFEST = "_manifest.json"


def shard_schema(num_features: int, num_classes: int, **provenance: str) -> pa.Schema:
    """The Parquet schema of a shard, with version and provenance in its metadata."""
    fields = [
        pa.field("graph_id", pa.int64()), pa.field("bank", pa.int32()), pa.field("label", pa.int32()),
        pa.field("num_nodes", pa.int32()), pa.field("src", pa.list_(pa.int32())), pa.field("dst", pa.list_(pa.int32())),
        pa.field("edge_prob", pa.list_(pa.float32())),
        pa.field("x", pa.list_(pa.list_(pa.float32(), num_features))),
        pa.field("teacher_logits", pa.list_(pa.float32(), num_classes)),
        pa.field("difficulty", pa.float32()), pa.field("generator", pa.string()), pa.field("gen_step", pa.int32()),
    ]
    meta = {"gfkd.schema_version": str(SCHEMA_VERSION), "gfkd.num_features": str(num_features),
            "gfkd.num_classes": str(num_classes), **{f"gfkd.{k}": str(v) for k, v in provenance.items()}}
    return pa.schema(fields, metadata=meta)


def _lists(values: np.ndarray, lengths: np.ndarray, typ: pa.DataType) -> pa.Array:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=typ))


def graphs_to_table(graph_ids: np.ndarray, bank: int, labels: torch.Tensor, num_nodes: torch.Tensor,
                    adj: torch.Tensor, edge_prob: torch.Tensor, x: torch.Tensor, teacher_logits: torch.Tensor,
                    difficulty: torch.Tensor, generator: str, gen_step: int, schema: pa.Schema) -> pa.Table:
    """A table of B padded graphs (adj, edge_prob: [B, N, N]; x: [B, N, F]; logits: [B, C]), sorted by difficulty."""
    adj, edge_prob, x = adj.cpu(), edge_prob.cpu(), x.cpu()
    n = num_nodes.cpu().numpy().astype(np.int64)
    b, i, j = adj.nonzero(as_tuple=True)
    counts = np.bincount(b.numpy(), minlength=len(n))
    F_ = x.size(-1)
    mask = torch.arange(x.size(1)) < torch.as_tensor(n).unsqueeze(1)
    x_rows = x[mask].numpy().astype(np.float32).reshape(-1)  # [Σn · F]
    x_nodes = pa.FixedSizeListArray.from_arrays(pa.array(x_rows, type=pa.float32()), F_)
    x_col = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(n)]).astype(np.int32)), x_nodes)
    C = teacher_logits.size(1)
    logits = pa.FixedSizeListArray.from_arrays(pa.array(teacher_logits.cpu().numpy().astype(np.float32).reshape(-1)), C)
    table = pa.table({
        "graph_id": pa.array(graph_ids.astype(np.int64)), "bank": pa.array(np.full(len(n), bank, np.int32)),
        "label": pa.array(labels.cpu().numpy().astype(np.int32)), "num_nodes": pa.array(n.astype(np.int32)),
        "src": _lists(i.numpy().astype(np.int32), counts, pa.int32()),
        "dst": _lists(j.numpy().astype(np.int32), counts, pa.int32()),
        "edge_prob": _lists(edge_prob[b, i, j].numpy().astype(np.float32), counts, pa.float32()),
        "x": x_col, "teacher_logits": logits,
        "difficulty": pa.array(difficulty.cpu().numpy().astype(np.float32)),
        "generator": pa.array([generator] * len(n)), "gen_step": pa.array(np.full(len(n), gen_step, np.int32)),
    }, schema=schema)
    order = np.lexsort((graph_ids, table["difficulty"].to_numpy()))
    return table.take(pa.array(order))


def write_shard(path: Path, table: pa.Table) -> Path:
    """Write `table` to `path` via a hidden temporary file, fsync, rename (zstd, row groups of 2048 graphs)."""
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_SIZE))


def read_shard(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read one shard after checking its schema version and columns; ShardError names the file otherwise."""
    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except Exception as exc:
        raise ShardError(f"shard {path} is unreadable ({type(exc).__name__}): delete it and rerun generate") from exc
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    version = meta.get("gfkd.schema_version")
    if version != str(SCHEMA_VERSION):
        raise ShardError(f"shard {path} has schema version {version}, expected {SCHEMA_VERSION}: "
                         f"regenerate it (gfkd run --force generate)")
    expected = shard_schema(int(meta["gfkd.num_features"]), int(meta["gfkd.num_classes"]))
    if not schema.remove_metadata().equals(expected.remove_metadata()):
        raise ShardError(f"shard {path} does not have the gfkd shard columns: regenerate it (gfkd run --force generate)")
    try:
        table = pq.read_table(path, columns=columns)
    except Exception as exc:
        raise ShardError(f"shard {path} is corrupt ({type(exc).__name__}): delete it and rerun generate") from exc
    for name in ("x", "teacher_logits"):
        if name in table.column_names and not _all_finite(table.column(name)):
            raise ShardError(f"shard {path} holds non-finite values in column '{name}': regenerate it "
                             f"(gfkd run --force generate)")
    return table


def _all_finite(column: pa.ChunkedArray) -> bool:
    """Whether every float in a (nested) list column is finite."""
    for chunk in column.chunks:
        while pa.types.is_list(chunk.type) or pa.types.is_fixed_size_list(chunk.type):
            chunk = chunk.flatten()
        if not np.isfinite(chunk.to_numpy(zero_copy_only=False)).all():
            return False
    return True


def write_shard_manifest(folder: Path, files: list[str], config_hash: str, **info) -> dict:
    """`_manifest.json`: every shard with sha256 and rows, the schema version and config hash (written last)."""
    entries = {f: {"sha256": sha256_file(folder / f), "rows": pq.read_metadata(folder / f).num_rows} for f in files}
    doc = {"schema_version": SCHEMA_VERSION, "config_hash": config_hash, "files": entries,
           "rows": sum(e["rows"] for e in entries.values()), **info}
    write_json(folder / SHARD_MANIFEST, doc)
    return doc


def read_shard_set(folder: Path) -> Iterator[pa.Table]:
    """Yield each shard's table after checking the manifest, the checksum and the schema of every file."""
    folder = Path(folder)
    mpath = folder / SHARD_MANIFEST
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise ShardError(f"shard manifest {mpath} is missing or unreadable: rerun generate") from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ShardError(f"shard manifest {mpath} has schema version {manifest.get('schema_version')}, expected "
                         f"{SCHEMA_VERSION}: regenerate (gfkd run --force generate)")
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ShardError(f"shard {path} listed in {mpath} is missing: rerun generate")
        if sha256_file(path) != entry["sha256"]:
            raise ShardError(f"shard {path} does not match its checksum in {mpath}: rerun generate (--force generate)")
        yield read_shard(path)


def table_to_graphs(table: pa.Table) -> list[Data]:
    """PyG graphs from a shard table: x [n, F], edge_index [2, E], y, edge_prob, teacher_logits, difficulty."""
    cols = table.to_pydict()
    graphs = []
    for k in range(table.num_rows):
        graphs.append(Data(
            x=torch.tensor(cols["x"][k], dtype=torch.float32),
            edge_index=torch.tensor([cols["src"][k], cols["dst"][k]], dtype=torch.long).view(2, -1),
            y=torch.tensor([cols["label"][k]]), num_nodes=cols["num_nodes"][k],
            edge_prob=torch.tensor(cols["edge_prob"][k], dtype=torch.float32),
            teacher_logits=torch.tensor([cols["teacher_logits"][k]], dtype=torch.float32),
            difficulty=torch.tensor([cols["difficulty"][k]]), graph_id=torch.tensor([cols["graph_id"][k]])))
    return graphs
