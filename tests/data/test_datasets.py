import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gfkd.data import datasets as D
from gfkd.data.datasets import load_planetoid, load_tu, resolve_data_root
from gfkd.errors import DataError


def _check_undirected_no_loops(g):
    ei = g.edge_index
    assert not (ei[0] == ei[1]).any()
    pairs = set(map(tuple, ei.t().tolist()))
    assert all((v, u) in pairs for u, v in pairs)


def test_tiny_tu_loads_with_node_label_features(tiny_root, tmp_path):
    ds = load_tu("TINY", tiny_root, tmp_path / "cache", allow_download=False)
    assert len(ds) == 40 and ds.num_classes == 2 and ds.feature_kind == "node_labels"
    assert ds.num_features == 3 and ds.max_degree is None
    assert sorted(np.bincount(ds.labels).tolist()) == [20, 20]
    g = ds.subset([1])[0]  # a star
    assert g.x.shape == (g.num_nodes, 3) and torch.equal(g.x.sum(1), torch.ones(g.num_nodes))
    assert g.edge_attr is None
    _check_undirected_no_loops(g)
    assert not list(tiny_root.rglob("processed")), "nothing may be written into the data root"


def test_featureless_set_gets_degree_one_hot(tiny_root, tmp_path):
    ds = load_tu("TINYDEG", tiny_root, tmp_path / "cache", allow_download=False)
    assert ds.feature_kind == "degree" and ds.max_degree == 6  # stars of 7 nodes have a hub of degree 6
    assert ds.num_features == 7
    for g in ds.subset(range(len(ds))):
        deg = torch.bincount(g.edge_index[0], minlength=g.num_nodes)
        assert torch.equal(g.x.argmax(1), deg) and torch.equal(g.x.sum(1), torch.ones(g.num_nodes))


def test_degree_cap_puts_high_degrees_in_last_bin(tiny_root, tmp_path):
    ds = load_tu("TINYDEG", tiny_root, tmp_path / "cache", max_degree_cap=3, allow_download=False)
    assert ds.max_degree == 3 and ds.num_features == 4
    star = ds.subset([1])[0]
    assert star.x[0].tolist() == [0, 0, 0, 1]  # hub degree >= 4 lands in the last bin


def test_missing_dataset_fails_fast_naming_folder_and_files(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(DataError) as err:
        load_tu("NOPE", tmp_path / "root", tmp_path / "cache", allow_download=False)
    msg = str(err.value)
    assert "'NOPE'" in msg and str(tmp_path / "root" / "NOPE" / "raw") in msg and "NOPE_A.txt" in msg
    assert "\n" not in msg and time.perf_counter() - t0 < 5


def test_missing_dataset_names_every_default_root_as_an_absolute_path(tmp_path, monkeypatch):
    """With no root given, both ./data and ../shared/datasets were tried: the error lists both, absolute."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GFKD_DATA_ROOT", raising=False)
    with pytest.raises(DataError) as err:
        D.check_available("NOPE", D.resolve_data_root(None), Path("runs/_cache"), allow_download=False)
    msg = str(err.value)
    assert f"{tmp_path / 'data' / 'NOPE' / 'raw'} or {tmp_path.parent / 'shared' / 'datasets' / 'NOPE' / 'raw'}" in msg
    assert f"the cache {tmp_path / 'runs' / '_cache' / 'NOPE' / 'raw'}" in msg


def test_missing_dataset_without_network_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_reachable", lambda host, timeout=4.0: False)  # never touch the network in tests
    with pytest.raises(DataError, match="no network"):
        load_planetoid("PubMed", tmp_path / "root", tmp_path / "cache", allow_download=True)


def test_a_node_set_is_refused_by_the_graph_loader_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_reachable", lambda host, timeout=4.0: pytest.fail("no network probe for a node set"))
    with pytest.raises(DataError, match="node-classification set: run it with `gfkd group --dataset CiteSeer`"):
        load_tu("citeseer", tmp_path / "root", tmp_path / "cache", allow_download=True)


def test_a_name_in_the_wrong_case_gets_the_right_spelling(tiny_root, tmp_path):
    with pytest.raises(DataError, match="did you mean 'TINY'"):
        load_tu("Tiny", tiny_root, tmp_path / "cache", allow_download=False)


def test_malformed_raw_file_is_a_data_error(tmp_path):
    raw = tmp_path / "root" / "BAD" / "raw"
    raw.mkdir(parents=True)
    (raw / "BAD_A.txt").write_text("1, 2\nnot numbers\n")
    (raw / "BAD_graph_indicator.txt").write_text("1\n1\n")
    (raw / "BAD_graph_labels.txt").write_text("1\n")
    with pytest.raises(DataError, match=f"in {raw.resolve()} could not be read"):  # the real folder, not the cache's link
        load_tu("BAD", tmp_path / "root", tmp_path / "cache", allow_download=False)


def test_data_root_resolution(monkeypatch, tmp_path):
    assert resolve_data_root(tmp_path) == tmp_path
    monkeypatch.setenv("GFKD_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_data_root(None) == tmp_path / "env"


# protocol.md §1 / §8.6: graph and class counts exactly, average nodes and edges within 1 %
TU_STATS = {"MUTAG": (188, 2, 17.93, 19.79, 7), "PTC_MR": (344, 2, 14.29, 14.69, None),
            "PROTEINS": (1113, 2, 39.06, 72.82, 3), "IMDB-BINARY": (1000, 2, 19.77, 96.53, 136)}


@pytest.mark.dataset
@pytest.mark.parametrize("name", list(TU_STATS))
def test_real_tu_statistics(shared_root, tmp_path_factory, name):
    graphs, classes, nodes, edges, width = TU_STATS[name]
    ds = load_tu(name, shared_root, tmp_path_factory.getbasetemp() / "cache", allow_download=False)
    assert len(ds) == graphs and ds.num_classes == classes
    all_graphs = ds.subset(range(len(ds)))
    assert np.mean([g.num_nodes for g in all_graphs]) == pytest.approx(nodes, rel=0.01)
    assert np.mean([g.edge_index.size(1) / 2 for g in all_graphs]) == pytest.approx(edges, rel=0.01)
    if width is not None:
        assert ds.num_features == width
    if name == "IMDB-BINARY":
        assert ds.feature_kind == "degree" and ds.max_degree == 135


@pytest.mark.dataset
@pytest.mark.parametrize("name,nodes,classes,feats", [("Cora", 2708, 7, 1433), ("CiteSeer", 3327, 6, 3703)])
def test_real_planetoid_public_split(shared_root, tmp_path_factory, name, nodes, classes, feats):
    data = load_planetoid(name, shared_root, tmp_path_factory.getbasetemp() / "cache", allow_download=False)
    assert data.num_nodes == nodes and int(data.y.max()) + 1 == classes and data.x.size(1) == feats
    assert int(data.val_mask.sum()) == 500 and int(data.test_mask.sum()) == 1000
    assert torch.allclose(data.x.sum(1)[data.x.sum(1) > 0], torch.ones(1))  # row-normalised


def test_processing_holds_the_cache_lock(tiny_root, tmp_path, monkeypatch):
    """A second run sharing the cache waits while PyG writes processed/ (seen: EOFError in a parallel benchmark)."""
    import fcntl

    import torch_geometric.datasets as pyg_datasets

    real = pyg_datasets.TUDataset
    seen = []

    def probing(root, name, *a, **kw):
        with open(tmp_path / "cache" / f"{name}.lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")
                fcntl.flock(fh, fcntl.LOCK_UN)
            except BlockingIOError:
                seen.append("held")
        return real(root, name, *a, **kw)

    monkeypatch.setattr(pyg_datasets, "TUDataset", probing)
    ds = load_tu("TINY", tiny_root, tmp_path / "cache", allow_download=False)
    assert len(ds) == 40 and seen == ["held"]
    with open(tmp_path / "cache" / "TINY.lock", "a+") as fh:  # released afterwards
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_cache_shared_by_two_data_roots_serves_each_root_its_own_graphs(tmp_path, tiny_root):
    """`processed/` is keyed by the raw files it was made from: a second root with the same name (here TINY with
    every label flipped) is processed again, not served the first root's tensors; back on the first root, again."""
    import shutil

    flipped = tmp_path / "flipped"
    shutil.copytree(tiny_root / "TINY", flipped / "TINY")
    labels = flipped / "TINY" / "raw" / "TINY_graph_labels.txt"
    labels.write_text("".join(f"{3 - int(v)}\n" for v in labels.read_text().split()))  # 1 <-> 2
    cache = tmp_path / "cache"
    first = load_tu("TINY", tiny_root, cache, allow_download=False).labels
    second = load_tu("TINY", flipped, cache, allow_download=False).labels
    assert np.array_equal(second, 1 - first)
    assert np.array_equal(load_tu("TINY", tiny_root, cache, allow_download=False).labels, first)
    stamp = (cache / "TINY" / "raw.json").read_text()
    assert str((tiny_root / "TINY" / "raw").resolve()) in stamp


def test_raw_files_edited_in_place_are_processed_again(tmp_path):
    """A raw file rewritten (another size or mtime) in the same root invalidates `processed/`."""
    from conftest import tiny_graphs, write_tu

    root = tmp_path / "root"
    write_tu(root, "TINY", tiny_graphs())
    cache = tmp_path / "cache"
    before = load_tu("TINY", root, cache, allow_download=False).labels
    labels = root / "TINY" / "raw" / "TINY_graph_labels.txt"
    labels.write_text("".join(f"{3 - int(v)}\n" for v in labels.read_text().split()))
    assert np.array_equal(load_tu("TINY", root, cache, allow_download=False).labels, 1 - before)


def test_a_raw_folder_that_lost_a_file_names_that_file(tmp_path, tiny_root):
    import shutil

    shutil.copytree(tiny_root / "TINY", tmp_path / "root" / "TINY")
    (tmp_path / "root" / "TINY" / "raw" / "TINY_graph_labels.txt").unlink()
    raw = (tmp_path / "root" / "TINY" / "raw").resolve()
    with pytest.raises(DataError, match=f"dataset 'TINY' in {raw} lacks TINY_graph_labels.txt: copy it there"):
        load_tu("TINY", tmp_path / "root", tmp_path / "cache", allow_download=True)  # no download attempt either


def test_a_downloaded_dataset_is_stamped_and_not_processed_again(tmp_path, tiny_root, monkeypatch, caplog):
    """A download (check_available: None) leaves the raw files in the cache's own folder: they are fingerprinted
    once PyG has read them, so the next stage's load keeps processed/ instead of making it again."""
    import logging
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(tiny_root / "TINY" / "raw", cache / "TINY" / "raw")  # what PyG's download leaves
    real = D.check_available
    monkeypatch.setattr(D, "check_available", lambda *a, **k: None)
    first = load_tu("TINY", tmp_path / "empty-root", cache).labels
    assert (cache / "TINY" / "raw.json").is_file()
    monkeypatch.setattr(D, "check_available", real)
    made = (cache / "TINY" / "processed").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="gfkd.data.datasets"):
        again = load_tu("TINY", tmp_path / "empty-root", cache, allow_download=False).labels
    assert np.array_equal(first, again) and "processing again" not in caplog.text
    assert (cache / "TINY" / "processed").stat().st_mtime_ns == made
