"""Loading TU graph-classification and Planetoid node-classification datasets from a data root, offline first.

The data root holds `<Name>/raw/` in the layout PyG expects (`TUDataset`: `Name_A.txt`, `Name_graph_indicator.txt`,
...; `Planetoid`: `ind.<name>.x`, ...). It may be read-only: PyG writes `processed/` beside `raw/`, so each dataset
is opened through a writable cache folder `<cache>/<Name>/` whose `raw` links to the root's. A dataset missing from
the root is downloaded by PyG into the cache when `allow_download` is set and the host answers within seconds;
otherwise a `DataError` names the dataset, the folders searched and the files expected.

Featureless sets (no node labels or attributes) get degree features x_i = one-hot(min(deg_i, D)) with
D = min(max degree over the dataset, `max_degree_cap`) (protocol.md §1).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from gfkd.errors import DataError
from gfkd.io.atomic import write_atomic

if TYPE_CHECKING:  # PyG is imported where a dataset is opened: importing it makes torch's inductor cache folder in
    from torch_geometric.data import Data, Dataset  # TMPDIR, which the CLI points into the run once it knows the run

log = logging.getLogger(__name__)

PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
_PLANETOID_FILES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
_TU_REQUIRED = ("A", "graph_indicator", "graph_labels")
_DOWNLOAD_HOSTS = {"tu": ("www.chrsmrrs.com", 443), "planetoid": ("github.com", 443)}
DEFAULT_ROOTS = (Path("data"), Path("../shared/datasets"))


def resolve_data_root(explicit: Path | str | None = None) -> Path:
    """The data root: `explicit` (--data-root / data.root), else $GFKD_DATA_ROOT, else the first of
    ./data and ../shared/datasets that exists (./data when neither does)."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("GFKD_DATA_ROOT")
    if env:
        return Path(env)
    return next((p for p in DEFAULT_ROOTS if p.is_dir()), DEFAULT_ROOTS[0])


def expected_files(name: str) -> list[str]:
    """Raw files that must exist for dataset `name`."""
    if name.lower() in PLANETOID:
        return [f"ind.{name.lower()}.{s}" for s in _PLANETOID_FILES]
    return [f"{name}_{s}.txt" for s in _TU_REQUIRED]


def find_raw_dir(name: str, root: Path, cache: Path) -> Path | None:
    """The first raw folder (in the root, then in the cache from an earlier download) that holds every file."""
    for base in (root, cache):
        raw = Path(base) / _folder_name(name) / "raw"
        if all((raw / f).is_file() for f in expected_files(name)):
            return raw
    return None


def _folder_name(name: str) -> str:
    return PLANETOID.get(name.lower(), name)


def _reachable(host: tuple[str, int], timeout: float = 4.0) -> bool:
    """Whether `host` accepts a TCP connection within `timeout` seconds (DNS included, never hangs)."""
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(host, timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 1.0)
    return bool(ok)


def require_graph_dataset(name: str) -> None:
    """A DataError when `name` is a node-classification set, which the graph pipeline cannot train on."""
    if name.lower() in PLANETOID:
        raise DataError(f"data.dataset={name} is a node-classification set: run it with `gfkd group --dataset "
                        f"{_folder_name(name)}`; the pipeline takes TU graph-classification sets such as MUTAG")


def _spelled_as(name: str, root: Path) -> str:
    """' (did you mean 'MUTAG'?)' when the root holds `name` in another case, else ''."""
    try:
        hits = [d.name for d in Path(root).iterdir() if d.is_dir() and d.name.lower() == name.lower() and d.name != name]
    except OSError:
        return ""
    return f" (did you mean '{hits[0]}'? names are case-sensitive)" if hits else ""


def _looked_in(name: str, root: Path, cache: Path) -> str:
    """Every raw folder tried, as absolute paths: the root's (both default roots when the root is a default one, the
    way `resolve_data_root` picks it), then the cache's."""
    roots = DEFAULT_ROOTS if Path(root) in DEFAULT_ROOTS else (Path(root),)
    raw = [os.path.abspath(Path(r) / _folder_name(name) / "raw") for r in roots]
    tried = " or ".join(raw) + (" (the default data roots ./data and ../shared/datasets)" if len(raw) > 1 else "")
    return f"{tried} (and the cache {os.path.abspath(Path(cache) / _folder_name(name) / 'raw')})"


def check_available(name: str, root: Path, cache: Path, allow_download: bool) -> Path | None:
    """The raw folder of `name`, or None when it must be downloaded (and can be); else a DataError, in seconds."""
    raw = find_raw_dir(name, root, cache)
    if raw is not None:
        return raw
    where = _looked_in(name, root, cache) + _spelled_as(name, root)
    files = ", ".join(expected_files(name))
    partial = Path(root) / _folder_name(name) / "raw"
    lacking = [f for f in expected_files(name) if not (partial / f).is_file()]
    if partial.is_dir() and len(lacking) < len(expected_files(name)):  # a copy that lost files: say which
        raise DataError(f"dataset '{name}' in {os.path.abspath(partial)} lacks {', '.join(lacking)}: copy "
                        f"{'it' if len(lacking) == 1 else 'them'} there from the dataset's archive")
    if not allow_download:
        raise DataError(f"dataset '{name}' not found in {where}; expected {files}. "
                        f"Put the files there, pass --data-root/GFKD_DATA_ROOT, or allow the download (data.download=true)")
    kind = "planetoid" if name.lower() in PLANETOID else "tu"
    if not _reachable(_DOWNLOAD_HOSTS[kind]):
        raise DataError(f"dataset '{name}' not found in {where} and no network to download it; expected {files}. "
                        f"Copy the raw files there or pass --data-root/GFKD_DATA_ROOT")
    return None


def _raw_fingerprint(raw: Path) -> str:
    """What `processed/` was made from: the raw folder's real path and each file's name, size and mtime."""
    real = raw.resolve()
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in real.iterdir() if f.is_file())
    return json.dumps({"raw": str(real), "files": files})


def _prepare_cache(name: str, root: Path, cache: Path, allow_download: bool) -> Path:
    """Make `<cache>/<Folder>/raw` point at the raw files (or be ready for a download); return `<cache>`.

    `processed/` is kept only while it was made from the same raw files (`<Folder>/raw.json`, written by
    `_stamp` once PyG has read them): a cache shared by runs with another data root, or raw files edited in place,
    would otherwise give PyG's tensors of the old files under the new ones' name."""
    folder = cache / _folder_name(name)
    raw = check_available(name, root, cache, allow_download)
    if raw is None:
        (folder / "raw").mkdir(parents=True, exist_ok=True)  # PyG downloads into it
        return cache
    link = folder / "raw"
    if raw.resolve() != link.resolve():
        folder.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.is_symlink():
                link.unlink()
            else:
                raise DataError(f"cache folder {link} holds other files than {raw}: delete {folder} and retry")
        link.symlink_to(raw.resolve(), target_is_directory=True)
    stamp = folder / "raw.json"
    if (folder / "processed").exists() and (not stamp.is_file() or stamp.read_text() != _raw_fingerprint(raw)):
        log.info("%s: processed/ was made from other raw files than %s; processing again", name, raw.resolve())
        shutil.rmtree(folder / "processed")
        stamp.unlink(missing_ok=True)
    return cache


def _stamp(cache: Path, name: str) -> None:
    """Record the raw files that `<cache>/<Folder>/processed` was made from (see `_prepare_cache`), once PyG has
    read them: the link's target, or the cache's own raw folder after a download (else the next load, not finding
    the stamp, would process them again). Written only when it changed."""
    stamp, fingerprint = cache / _folder_name(name) / "raw.json", _raw_fingerprint(cache / _folder_name(name) / "raw")
    if not stamp.is_file() or stamp.read_text() != fingerprint:
        write_atomic(stamp, lambda tmp: tmp.write_text(fingerprint))


@contextmanager
def cache_lock(cache: Path, name: str) -> Iterator[None]:
    """Hold an exclusive lock on `<cache>/<Folder>.lock` while a process links, downloads or processes the dataset:
    PyG writes `processed/` in place, so two runs sharing a cache (the distill benchmark's parallel cells) would read
    each other's half-written files."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{_folder_name(name)}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_SAID: set[str] = set()


def _once(message: str) -> None:
    """Log `message` at INFO the first time in this process: every stage of a run loads the dataset."""
    if message not in _SAID:
        _SAID.add(message)
        log.info(message)


class _Prepare:
    """Drop edge attributes and self-loops; add degree one-hot features to featureless graphs."""

    def __init__(self, max_degree: int | None):
        self.max_degree = max_degree

    def __call__(self, data: Data) -> Data:
        from torch_geometric.utils import degree, remove_self_loops

        data = data.clone()
        data.edge_attr = None
        data.edge_index, _ = remove_self_loops(data.edge_index)
        if self.max_degree is not None:
            deg = degree(data.edge_index[0], data.num_nodes, dtype=torch.long).clamp(max=self.max_degree)
            data.x = torch.nn.functional.one_hot(deg, self.max_degree + 1).float()
        return data


@dataclass
class GraphDataset:
    """A loaded graph-classification dataset with the facts later stages need."""

    name: str
    dataset: Dataset  # PyG dataset; items carry x: [n, F], edge_index: [2, 2|E|], y: [1]
    labels: np.ndarray  # [num_graphs]
    num_features: int
    num_classes: int
    feature_kind: str  # "node_labels" | "degree"
    max_degree: int | None  # D of the degree one-hot (width D + 1), None for featureful sets
    _graphs: list[Data] | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def subset(self, idx: np.ndarray) -> list[Data]:
        """The graphs at `idx`, transformed once and kept in memory (cheaper than a transform per access)."""
        if self._graphs is None:
            self._graphs = [self.dataset[i] for i in range(len(self.dataset))]
        return [self._graphs[int(i)] for i in idx]


def load_tu(name: str, root: Path | str | None = None, cache: Path | str = Path("runs/_cache/datasets"),
            max_degree_cap: int = 1000, allow_download: bool = True) -> GraphDataset:
    """Load TU dataset `name` (any TU-format folder) through PyG's `TUDataset`.

    Args:
        name: folder name, e.g. "MUTAG", "IMDB-BINARY".
        root: data root holding `<name>/raw/`; see `resolve_data_root`.
        cache: writable folder for PyG's `processed/` and downloads.
        max_degree_cap: cap D of the degree one-hot for featureless sets.
        allow_download: let PyG download a missing dataset when the network answers.
    """
    from torch_geometric.datasets import TUDataset
    from torch_geometric.utils import degree

    require_graph_dataset(name)
    root, cache = resolve_data_root(root), Path(cache)
    try:
        with cache_lock(cache, name):
            cache = _prepare_cache(name, root, cache, allow_download)
            ds = TUDataset(str(cache), name)
            _stamp(cache, name)
    except DataError:
        raise
    except Exception as exc:  # malformed raw files surface from PyG's parser
        raw = (cache / name / "raw").resolve()
        raise DataError(f"dataset '{name}' in {raw} could not be read ({type(exc).__name__}: {exc}); "
                        f"check the raw files or delete {cache / name / 'processed'} and retry") from exc
    labels = ds.y.numpy() if ds.y is not None else None
    if labels is None or len(labels) != len(ds):
        raise DataError(f"dataset '{name}': {name}_graph_labels.txt must hold one label per graph")
    labels = np.unique(labels, return_inverse=True)[1]  # labels -> 0..C-1 (TU files use {-1, 1} or {1, 2})
    ds._data.y = torch.as_tensor(labels, dtype=torch.long)
    featureless = ds.num_node_features == 0
    max_degree = None
    if featureless:
        max_deg = int(max(degree(g.edge_index[0], g.num_nodes).max().item() if g.num_edges else 0 for g in ds))
        max_degree = min(max_deg, max_degree_cap)
        _once(f"{name}: no node features; degree one-hot with D = {max_degree} (max degree {max_deg})")
    else:
        _once(f"{name}: {ds.num_node_features} node-label features")
    ds.transform = _Prepare(max_degree)
    return GraphDataset(name=name, dataset=ds, labels=labels.astype(np.int64),
                        num_features=(max_degree + 1) if featureless else ds.num_node_features,
                        num_classes=int(labels.max()) + 1,
                        feature_kind="degree" if featureless else "node_labels", max_degree=max_degree)


def load_planetoid(name: str, root: Path | str | None = None, cache: Path | str = Path("runs/_cache/datasets"),
                   allow_download: bool = True) -> Data:
    """Load Cora, CiteSeer or PubMed (public split, row-normalised features) through PyG's `Planetoid`."""
    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures

    if name.lower() not in PLANETOID:
        raise DataError(f"'{name}' is not a Planetoid dataset: choose one of {', '.join(PLANETOID.values())}")
    root = resolve_data_root(root)
    with cache_lock(Path(cache), name):
        cache = _prepare_cache(name, root, Path(cache), allow_download)
        data = Planetoid(str(cache), PLANETOID[name.lower()], transform=NormalizeFeatures())[0]
        _stamp(cache, name)
        return data
