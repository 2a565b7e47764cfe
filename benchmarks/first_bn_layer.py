"""Where a featureless teacher's batch-norm statistics part from the pseudo-graphs': R_BN split per layer into its
mean and variance parts, along one ACGKD chunk and on real graphs rewired in known ways → a Markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/first_bn_layer.py --teacher runs/<run>/teacher/teacher.pt \
        --data-root ../shared/datasets --set '' --set generate.bn_first_weight=10

A diagnostic for docs/generate.md. Part 1 generates bank 0's first chunk (`--graphs` graphs) once per `--set` and
records, at a few steps, each BN layer's relative R_BN (acgkd.md §7) split into its mean part
mean_c((μ̂ − μ)/σ)² and its variance part mean_c(log σ̂²/σ²)², with the mean log variance ratio (negative: the
pseudo-graphs give the layer less variance than the real graphs did). Part 2 reads the teacher's real training split
(a diagnostic may; the generate stage never does) and scores the same terms on the real graphs and on graphs built
from them: degree-preserving edge swaps, Chung-Lu graphs on each graph's own degree sequence, Chung-Lu graphs on
degrees drawn from the pooled degree histogram (what the teacher start does, capped at n − 1), and G(n, m) graphs.
"""

from __future__ import annotations

if __name__ == "__main__":  # PyG's import writes compiled templates into the temp dir: a folder removed at exit
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one's
    from flows.env import private_tmp_until_exit

    private_tmp_until_exit()

import argparse
import platform
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import networkx as nx
import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import degree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import gfkd.generators.bn_stats as bn_stats  # noqa: E402
from benchmarks.generation_trace import trace  # noqa: E402
from gfkd.data.datasets import load_tu  # noqa: E402
from gfkd.data.splits import make_split  # noqa: E402
from gfkd.generators.bank import make_generator  # noqa: E402
from gfkd.generators.degree_histogram import sample_degrees  # noqa: E402
from gfkd.io.atomic import write_atomic  # noqa: E402
from gfkd.models.bn_stats import bn_input_statistics, bn_layers  # noqa: E402
from gfkd.stages.teacher import load_teacher  # noqa: E402

STEPS = (0, 10, 100, -1)  # recorded steps; -1 = the last (steps past the last are dropped)


def split_terms(mu_hat: torch.Tensor, var_hat: torch.Tensor, mu: torch.Tensor, var: torch.Tensor,
                eps: float) -> tuple[float, float, float]:
    """(mean part, variance part, mean log variance ratio) of one layer's relative R_BN term (all [C] inputs)."""
    log_ratio = torch.log((var_hat + eps) / (var + eps))
    return (float(((mu_hat - mu) / torch.sqrt(var + eps)).pow(2).mean()), float(log_ratio.pow(2).mean()),
            float(log_ratio.mean()))


@contextmanager
def tap_relative_terms(calls: list) -> Iterator[None]:
    """Record every relative R_BN layer term the generator computes (in forward order), without changing it."""
    orig = bn_stats.relative_term

    def tapped(mu_hat, var_hat, mu, var, eps):
        calls.append(split_terms(mu_hat.detach(), var_hat.detach(), mu, var, eps))
        return orig(mu_hat, var_hat, mu, var, eps)

    bn_stats.relative_term = tapped
    try:
        yield
    finally:
        bn_stats.relative_term = orig


def along_chunk(teacher_pt: Path, overrides: str, graphs: int, layers: int,
                pick: str = "first") -> tuple[dict, dict[int, list]]:
    """The trace of one override set and its per-layer split terms at STEPS (one call per layer per step)."""
    calls: list = []
    with tap_relative_terms(calls):
        r = trace(teacher_pt, overrides.split(), graphs, pick)
    per_step = [calls[i:i + layers] for i in range(0, len(calls), layers)]
    last = len(per_step) - 1
    return r, {s: per_step[s] for s in sorted({min(s, last) if s >= 0 else last for s in STEPS})}


def _edges(G: nx.Graph) -> torch.Tensor:
    ei = torch.tensor(list(G.edges()), dtype=torch.long).reshape(-1, 2).t()
    return torch.cat([ei, ei.flip(0)], 1)


def _graph(n: int, edge_index: torch.Tensor, max_degree: int) -> Data:
    d = degree(edge_index[0], n).long().clamp(max=max_degree)
    return Data(x=torch.nn.functional.one_hot(d, max_degree + 1).float(), edge_index=edge_index, num_nodes=n)


def _nx(g: Data) -> nx.Graph:
    G = nx.Graph()
    G.add_nodes_from(range(g.num_nodes))
    G.add_edges_from(g.edge_index.t().tolist())
    return G


def variants(train: list[Data], max_degree: int, rng: np.random.Generator,
             couplings: tuple[float, ...] = ()) -> dict[str, list[Data]]:
    """The real graphs and four rebuilt versions of each (same node counts), and per coupling ρ Chung-Lu graphs on
    pooled-histogram degrees drawn by the generator's size-coupled `sample_degrees` (the split as one chunk)."""
    seed = lambda: int(rng.integers(1 << 30))  # noqa: E731
    degs = [degree(g.edge_index[0], g.num_nodes).long().numpy() for g in train]
    pooled = np.bincount(np.concatenate(degs), minlength=max_degree + 1).astype(float)
    pooled /= pooled.sum()
    out: dict[str, list[Data]] = {"real graphs": [], "degree-preserving swaps": [], "Chung-Lu, own degrees": [],
                                  "Chung-Lu, pooled histogram": [], "G(n, m)": []}
    for g, d in zip(train, degs):
        n, G = g.num_nodes, _nx(g)
        m = G.number_of_edges()
        out["real graphs"].append(_graph(n, g.edge_index, max_degree))
        S = G.copy()
        if m >= 2:
            try:
                nx.double_edge_swap(S, nswap=10 * m, max_tries=1000 * m, seed=seed())
            except nx.NetworkXAlgorithmError:  # a graph too dense to swap stays as it is
                pass
        out["degree-preserving swaps"].append(_graph(n, _edges(S), max_degree))
        own = nx.expected_degree_graph(d.astype(float).tolist(), seed=seed(), selfloops=False)
        out["Chung-Lu, own degrees"].append(_graph(n, _edges(own), max_degree))
        drawn = np.minimum(rng.choice(len(pooled), size=n, p=pooled), n - 1)
        cl = nx.expected_degree_graph(drawn.astype(float).tolist(), seed=seed(), selfloops=False)
        out["Chung-Lu, pooled histogram"].append(_graph(n, _edges(cl), max_degree))
        out["G(n, m)"].append(_graph(n, _edges(nx.gnm_random_graph(n, m, seed=seed())), max_degree))
    sizes = torch.tensor([g.num_nodes for g in train])
    for rho in couplings:
        drawn = sample_degrees(torch.as_tensor(pooled, dtype=torch.float32), sizes, make_generator(seed()), rho)
        out[f"Chung-Lu, pooled histogram, size-coupled ρ = {rho:g}"] = [
            _graph(n, _edges(nx.expected_degree_graph(d[:n].tolist(), seed=seed(), selfloops=False)), max_degree)
            for n, d in zip(sizes.tolist(), drawn)]
    return out


def score(teacher: torch.nn.Module, bn_eval: dict, graphs: list[Data]) -> list[tuple[float, float, float]]:
    """Per BN layer: split_terms of the graphs' BN input statistics against the teacher's stored eval targets."""
    st = bn_input_statistics(teacher, DataLoader(graphs, batch_size=256), torch.device("cpu"))
    return [split_terms(st[f"{n}.mean"].float(), st[f"{n}.var"].float(), bn_eval[f"{n}.mean"], bn_eval[f"{n}.var"],
                        m.eps) for n, m in bn_layers(teacher).items()]


def teacher_split(meta: dict, data_root: Path | str | None, cache: Path):
    """The real dataset and the split a teacher was trained on, from its metadata: (GraphDataset, Split).

    Raises:
        ValueError: the rebuilt split's fold hash is not the one the teacher recorded."""
    dm, sp = meta["data"], meta["split"]
    ds = load_tu(dm["dataset"], data_root, cache)
    split = make_split(ds.labels, sp["protocol"], fold=sp.get("fold") or 0, seed=sp["seed"],
                       val=sp.get("sizes", {}).get("val", 1) > 0)
    if sp.get("fold_hash") and split.fold_hash != sp["fold_hash"]:
        raise ValueError(f"the {dm['dataset']} split rebuilt from the teacher's metadata is not the one it was trained "
                         "on (fold hash differs): is the data root the same dataset?")
    return ds, split


def training_graphs(meta: dict, data_root: Path, cache: Path) -> tuple[list[Data], int]:
    """The teacher's real training split (from its metadata) and the degree one-hot's D."""
    ds, split = teacher_split(meta, data_root, cache)
    return ds.subset(split.train), ds.max_degree


def _density(gs: list[Data], min_nodes: int = 0) -> float:
    return float(np.mean([g.edge_index.size(1) / (g.num_nodes * (g.num_nodes - 1)) for g in gs
                          if g.num_nodes >= min_nodes]))


def _cells(t: tuple[float, float, float]) -> str:
    return f"{t[0]:.2f} | {t[1]:.2f} | {t[2]:+.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, required=True, help="a teacher.pt of a featureless set")
    ap.add_argument("--data-root", type=Path, required=True, help="data root with <dataset>/raw/ (part 2)")
    ap.add_argument("--cache", type=Path, default=Path("runs/_cache/datasets"), help="writable dataset cache")
    ap.add_argument("--graphs", type=int, default=64, help="graphs of bank 0's first chunk (part 1)")
    ap.add_argument("--set", action="append", default=None, help="override set of part 1 ('' = defaults)")
    ap.add_argument("--pick", choices=["first", "spread"], default="first",
                    help="part 1: the chunk's first (smallest) graphs, or graphs evenly spaced through it")
    ap.add_argument("--coupling", type=float, nargs="*", default=[], help="part 2: ρ of size-coupled pooled degrees")
    ap.add_argument("--big", type=int, default=30, help="node count from which a graph counts as large")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "first-bn-layer.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    teacher, meta, bn_eval = load_teacher(args.teacher)
    layers = len(bn_layers(teacher))
    dm = meta["data"]
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/first_bn_layer.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    out = [f"# The first batch-norm layer on pseudo-graphs and rebuilt real graphs ({dm['dataset']})", "",
           f"Command: `{cmd}`; {platform.machine()} CPU, one torch thread. Teacher: {meta['model']['arch']}, "
           f"{meta['split']['protocol']} fold {meta['split'].get('fold')}.", "",
           "Each layer's relative R_BN term split into its mean part mean_c((μ̂ − μ)/σ)², its variance part "
           "mean_c(log σ̂²/σ²)² and the mean log variance ratio (negative: less variance than the real graphs gave "
           "the layer); L0 is the first BN layer (the one that sees the degree one-hot), L1 the next.", "",
           f"## Along one chunk (bank 0's first chunk, {args.graphs} graphs: "
           f"{'its first, so its smallest' if args.pick == 'first' else 'evenly spaced through it'})", "",
           "| overrides | step | L0 mean | L0 var | L0 log ratio | L1 mean | L1 var | L1 log ratio | later layers "
           "(mean + var) | density (finalised) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in args.set or [""]:
        r, steps = along_chunk(args.teacher, s, args.graphs, layers, args.pick)
        for k, terms in steps.items():
            rest = sum(a + b for a, b, _ in terms[2:])
            out.append(f"| {s or 'defaults'} | {k} | {_cells(terms[0])} | {_cells(terms[1])} "
                       f"| {rest:.2f} | {r['density']:.3f} |")
    train, max_degree = training_graphs(meta, args.data_root, args.cache)
    out += ["", f"## Real training graphs ({len(train)}) and graphs rebuilt from them (same node counts)", "",
            f"| graphs | density | density, n ≥ {args.big} | L0 mean | L0 var | L0 log ratio | L1 mean | L1 var "
            "| L1 log ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for name, gs in variants(train, max_degree, np.random.default_rng(0), tuple(args.coupling)).items():
        t = score(teacher, bn_eval, gs)
        out.append(f"| {name} | {_density(gs):.3f} | {_density(gs, args.big):.3f} | {_cells(t[0])} | {_cells(t[1])} |")
    write_atomic(args.out, lambda tmp: tmp.write_text("\n".join(out) + "\n"))
    print(args.out)


if __name__ == "__main__":
    main()
