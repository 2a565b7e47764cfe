"""Which ops of the node-level students repeat bit for bit: each op's output and gradients, computed again and again on
the same inputs under torch's deterministic kernels, as `run.deterministic` sets them (docs/benchmarks/determinism.md).

    python benchmarks/determinism.py --device cuda --dataset Cora --out /tmp/cuda.json
    python benchmarks/determinism.py --report /tmp/cpu.json /tmp/cuda.json --out docs/benchmarks/determinism.md

The rows "sparse x · W" and "sparse adj · h" are the products gfkd's students compute (`gfkd.models.spmm`: since
the first CUDA run, a gather and an index_add_ on CUDA; before it, torch.sparse.mm, which the cuSPARSE rows measure).
Each probe runs `--repeats` times; a probe repeats when every tensor it returns (outputs, then gradients) is equal to
the first run's, bit for bit. The strict check runs one GAT student's forward and backward with
`torch.use_deterministic_algorithms(True)` (no warn_only): an op without a deterministic kernel raises there, by name.
"""

from __future__ import annotations

if __name__ == "__main__":  # PyG's import writes compiled templates into the temp dir: a folder removed at exit
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one's
    from flows.env import private_tmp_until_exit

    private_tmp_until_exit()

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def probes(g, device):
    """name → a function returning the tensors to compare (outputs, then gradients), from fixed inputs on `device`."""
    import torch
    from torch_geometric import seed_everything
    from torch_geometric.utils import scatter, softmax

    from gfkd.config import GroupConfig
    from gfkd.group.node import build_models, settings_from_config, train_group
    from gfkd.models.node_students import GATLayer, NodeStudent, _mm
    from gfkd.models.spmm import spmm

    cpu = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=cpu).to(device)

    n, f = g.x.shape
    src, dst = g.edge_index_loops
    e, heads, out = src.numel(), 8, 8
    fixed = {"w": rand(f, heads * out), "a": rand(n, heads), "att": rand(e, heads), "msg": rand(e, heads, out),
             "h": rand(n, 16), "up_nw": rand(n, heads * out), "up_e": rand(e, heads), "up_eh": rand(e, heads),
             "up_n": rand(n, heads, out), "up_h": rand(n, 16)}

    def leaf(name):
        return fixed[name].clone().requires_grad_(True)

    def with_grad(fn, inputs, up):
        y = fn(*inputs)
        (y * up).sum().backward()
        return [y.detach(), *(t.grad for t in inputs)]

    def student(backbone):
        def run():
            seed_everything(0)
            model = NodeStudent(backbone, f, g.num_classes).to(device).train()
            z, h = model(g)
            (z.square().sum() + h.square().sum()).backward()
            return [z.detach(), h.detach(), *(p.grad for p in model.parameters())]
        return run

    def gat_layer():
        torch.manual_seed(0)
        layer = GATLayer(f, out, heads, concat=True, attn_dropout=0.0).to(device)
        y = layer(g.x, g.edge_index_loops)
        (y * fixed["up_nw"]).sum().backward()
        return [y.detach(), *(p.grad for p in layer.parameters())]

    def group(backbone):
        def run():
            s = settings_from_config(GroupConfig(backbone=backbone, method="oad", warmup_epochs=3, epochs=3))
            models = build_models(s, f, g.num_classes, 0)
            train_group(g, s, 0, models=models)
            return [p.detach() for p in models.students.parameters()]
        return run

    return {
        "torch.sparse.mm(x, W) (cuSPARSE)": lambda: with_grad(lambda w: torch.sparse.mm(g.x, w), [leaf("w")],
                                                               fixed["up_nw"]),
        "torch.sparse.mm(adj, h) (cuSPARSE)": lambda: with_grad(lambda h: torch.sparse.mm(g.adj, h), [leaf("h")],
                                                                 fixed["up_h"]),
        "sparse x · W (GAT and GCN input layer)": lambda: with_grad(lambda w: _mm(g.x, w), [leaf("w")], fixed["up_nw"]),
        "gather a[src] (GAT attention scores)": lambda: with_grad(lambda a: a[src], [leaf("a")], fixed["up_e"]),
        "PyG softmax over dst (GAT attention)": lambda: with_grad(lambda t: softmax(t, dst, num_nodes=n),
                                                                   [leaf("att")], fixed["up_eh"]),
        "PyG scatter sum over dst (GAT messages)": lambda: with_grad(
            lambda m: scatter(m, dst, dim=0, dim_size=n, reduce="sum"), [leaf("msg")], fixed["up_n"]),
        "dense x · W (the same product, x dense)": lambda: with_grad(lambda w: g.x.to_dense() @ w, [leaf("w")],
                                                                      fixed["up_nw"]),
        "index_add_ over dst (the same sum)": lambda: with_grad(
            lambda m: m.new_zeros(n, heads, out).index_add_(0, dst, m), [leaf("msg")], fixed["up_n"]),
        "sparse adj · h (GCN, SAGE, discriminator)": lambda: with_grad(lambda h: spmm(g.adj, h), [leaf("h")],
                                                                        fixed["up_h"]),
        "GAT layer (no dropout)": gat_layer,
        "GAT student (train mode)": student("gat"),
        "GCN student (train mode)": student("gcn"),
        "SAGE student (train mode)": student("sage"),
        "OAD group, GAT, 3 + 3 epochs (students' weights)": group("gat"),
        "OAD group, GCN, 3 + 3 epochs (students' weights)": group("gcn"),
    }


def strict_check(g, device) -> str:
    """One GAT student's forward and backward with deterministic kernels required: the error, or 'no error'."""
    import torch
    from torch_geometric import seed_everything

    from gfkd.models.node_students import NodeStudent

    torch.use_deterministic_algorithms(True)
    try:
        seed_everything(0)
        z, h = NodeStudent("gat", g.x.shape[1], g.num_classes).to(device).train()(g)
        (z.square().sum() + h.square().sum()).backward()
        return "no error"
    except RuntimeError as err:
        return str(err).split("\n")[0]
    finally:
        torch.use_deterministic_algorithms(True, warn_only=True)


def measure(args) -> dict:
    from gfkd.config import RunSection
    from gfkd.data.datasets import resolve_data_root
    from gfkd.group.node import load_citation
    from gfkd.stages.common import prepare_runtime

    sys.path.insert(0, str(REPO / "benchmarks"))
    from cuda import machine_line

    device = prepare_runtime(RunSection(device=args.device))  # as `gfkd group` does: threads, deterministic kernels
    record = {"device": device.type, "machine": machine_line(device.type), "commit": args.commit,
              "command": "python " + " ".join(sys.argv), "dataset": args.dataset, "repeats": args.repeats,
              "probes": []}
    with tempfile.TemporaryDirectory() as cache:
        g = load_citation(args.dataset, resolve_data_root(args.data_root), Path(cache), False, device)
        for name, fn in probes(g, device).items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0 = time.perf_counter()
                first = fn()
                diffs = []
                for _ in range(args.repeats - 1):
                    again = fn()
                    diffs.append(max(float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
                                     for a, b in zip(first, again)))
            wall = time.perf_counter() - t0
            msgs = sorted({str(w.message).split("\n")[0] for w in caught if "determinis" in str(w.message)})
            record["probes"].append({"probe": name, "repeats": all(d == 0.0 for d in diffs),
                                     "max_abs_diff": max(diffs, default=0.0), "warnings": msgs, "wall_s": wall})
            print(f"{name}: {'repeats' if record['probes'][-1]['repeats'] else 'DIFFERS'} "
                  f"(max |diff| {record['probes'][-1]['max_abs_diff']:.3g}) {msgs}", flush=True)
        record["strict"] = strict_check(g, device)
        print("strict:", record["strict"], flush=True)
    return record


def report(runs: list[dict]) -> str:
    """The probes as rows, the runs as columns."""
    out = ["# Do the node-level students repeat bit for bit?", "",
           "Written by `python benchmarks/determinism.py --report " + " ".join(r["_path"] for r in runs)
           + " --out docs/benchmarks/determinism.md` from these runs (each probe computed `repeats` times on the same "
           "inputs under `run.deterministic`'s settings: deterministic kernels, warn only; `repeats`: every output "
           "and gradient equal to the first run's, bit for bit):", ""]
    for i, r in enumerate(runs, 1):
        out.append(f"- **[{i}] {r['device'].upper()}**: `{r['command']}` at {r['commit']}; {r['dataset']}, "
                   f"{r['repeats']} runs per probe; {r['machine']}")
    out += ["", "| probe | " + " | ".join(f"[{i}] {r['device'].upper()}" for i, r in enumerate(runs, 1)) + " |",
            "|---|" + "---|" * len(runs)]
    for name in dict.fromkeys(p["probe"] for r in runs for p in r["probes"]):
        cells = []
        for r in runs:
            p = next((p for p in r["probes"] if p["probe"] == name), None)
            cells.append("—" if p is None else "repeats" if p["repeats"] else
                         f"**differs** (max \\|diff\\| {p['max_abs_diff']:.2g})")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out += ["", "Warnings from torch's deterministic mode, per run (an op that has no deterministic kernel runs the "
            "nondeterministic one and says so once):", ""]
    for i, r in enumerate(runs, 1):
        msgs = sorted({m for p in r["probes"] for m in p["warnings"]})
        out.append(f"- [{i}]: " + ("; ".join(f"`{m}`" for m in msgs) if msgs else "none"))
    out += ["", "Strict check (one GAT student's forward and backward with `torch.use_deterministic_algorithms(True)`, "
            "no warn_only):", ""]
    out += [f"- [{i}]: `{r['strict']}`" for i, r in enumerate(runs, 1)]
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dataset", default="Cora", choices=["Cora", "CiteSeer", "PubMed"])
    p.add_argument("--data-root", default=None)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--commit", default=None, help="the commit measured (default: git rev-parse HEAD)")
    p.add_argument("--report", nargs="+", type=Path, help="render these JSON runs side by side; measure nothing")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.report:
        runs = [json.loads(f.read_text()) | {"_path": str(f)} for f in args.report]
        args.out.write_text(report(runs))
        print(args.out)
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.commit is None:
        import subprocess
        args.commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                     text=True).stdout.strip() or "unknown"
    sys.path.insert(0, str(REPO))
    record = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print(args.out)


if __name__ == "__main__":
    main()
