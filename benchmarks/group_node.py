"""Node-level group benchmark: datasets × backbones × methods × seeds → docs/results-group.md (oad.md §7-§8).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/group_node.py --seeds 0..9

Runs seed-major (every cell gets seed 0 before any gets seed 1), so a benchmark stopped early has the same number of
seeds in every cell. Each finished run is appended to docs/results-group.json and the Markdown table is rewritten
from that file, so a rerun resumes where it stopped (`--fresh` starts over). Runs call the library directly
(`gfkd.group.node.train_group`), without MLflow. Every number in the table comes from the JSON it wrote.
"""

from __future__ import annotations

if __name__ == "__main__":  # PyG's import writes compiled templates into the temp dir: a folder removed at exit
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one's
    from flows.env import private_tmp_until_exit

    private_tmp_until_exit()

import argparse
import dataclasses
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch_geometric

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gfkd.config import GroupConfig  # noqa: E402
from gfkd.data.datasets import check_available, resolve_data_root  # noqa: E402
from gfkd.errors import ConfigError, DataError  # noqa: E402
from gfkd.group.node import METHODS, GroupSettings, load_citation, settings_from_config, train_group  # noqa: E402
from gfkd.group.report import markdown_table, summarize  # noqa: E402
from gfkd.io.atomic import write_atomic, write_json  # noqa: E402
from gfkd.seed_list import parse_seeds  # noqa: E402
from gfkd.versions import cpu_model  # noqa: E402

EXTRA_ABLATIONS = ("oad_agnostic", "oad_l2")  # oad.md §7's two local-term ablations: rows only where they ran
SANITY = {("Cora", "gcn"): 81.5, ("CiteSeer", "gcn"): 70.3, ("Cora", "gat"): 83.0, ("CiteSeer", "gat"): 72.5}
LABEL = {"independent": "independent students", "dml": "DML", "kdcl": "KDCL-MinLogit", "oad": "OAD",
         "oad_global": "OAD global only (λ_adv = 0)", "oad_local": "OAD local only (λ_G = 0)",
         "oad_agnostic": "OAD, graph-agnostic D (MLP per node)", "oad_l2": "OAD, local term ‖h_{k−1} − sg h_k‖² (no D)"}


def _device_line() -> str:
    return f"CPU ({cpu_model()}), torch threads {torch.get_num_threads()}"


def _seed_counts(results: list[dict]) -> str:
    counts: dict = {}
    for r in results:
        counts.setdefault((r["dataset"], r["backbone"], r["method"]), set()).add(r["seed"])
    if not counts:
        return "none"
    n = sorted(len(v) for v in counts.values())
    seeds = sorted(set().union(*counts.values()))
    return f"{n[0]}–{n[-1]} (seeds {seeds[0]}..{seeds[-1]} present)" if n[0] != n[-1] else f"{n[0]} (seeds {seeds[0]}..{seeds[-1]})"


SWEEPS = {"lambda_global": ("oad_lg", "λ_G"), "lambda_adv": ("oad_la", "λ_adv")}  # key → (method prefix, symbol)


def sweep_name(lam: float, key: str = "lambda_global") -> str:
    """The method key of an OAD run at λ_G = lam (oad.md §2's re-tuning sweep), or at λ_adv = lam."""
    return f"{SWEEPS[key][0]}{lam:g}"


def sweep_of(method: str) -> tuple[str, float] | None:
    """'oad_lg0.3' → ('lambda_global', 0.3); a method that is not a sweep → None."""
    for key, (prefix, _) in SWEEPS.items():
        if method.startswith(prefix):
            return key, float(method.removeprefix(prefix))
    return None


REF = "ref_"  # method-key prefix of a run under group.parity = reference (oad.md §9)


def parity_of(method: str) -> str | None:
    """'ref_oad' → 'oad' (a run with every parity switch at the reference code's behaviour); others → None."""
    return method.removeprefix(REF) if method.startswith(REF) else None


# oad.md §7's other OAD ablations, key → (row label, method, settings changed from the defaults). Without warm-up the
# students train E = 100 epochs in all instead of W + E = 200, so independent students get the same 100 as a control.
SCHEDULES = {"oad_w0": ("OAD, no warm-up (W = 0)", "oad", {"warmup_epochs": 0}),
             "independent_w0": ("independent students, W = 0 (100 epochs in all)", "independent", {"warmup_epochs": 0}),
             "oad_k2": ("OAD, K = 2", "oad", {"students": 2}), "oad_k3": ("OAD, K = 3", "oad", {"students": 3}),
             "oad_k6": ("OAD, K = 6", "oad", {"students": 6}),
             "oad_unit": ("OAD, D on unit-length embeddings h/‖h‖ (not in oad.md)", "oad", {"d_input": "unit"})}

ALL = "all_"  # method-key prefix of a run with the KL terms on every node (group.global_on = all, oad.md §2)
ALL_METHODS = ("oad", "oad_global", "dml")  # the methods whose KL term global_on moves (KDCL's needs labels)


def all_of(method: str) -> str | None:
    """'all_oad' → 'oad' (a run with group.global_on = all); others → None."""
    return method.removeprefix(ALL) if method.startswith(ALL) else None


def settings_of(method: str, clean: GroupSettings, reference: GroupSettings) -> GroupSettings:
    """The settings a method key runs with: a λ sweep, a parity-reference run, a run with the KL on all nodes, an OAD
    schedule ablation, or a plain method of gfkd.group.node."""
    if sweep := sweep_of(method):
        return dataclasses.replace(clean, method="oad", **{sweep[0]: sweep[1]})
    if parity_of(method):
        return dataclasses.replace(reference, method=parity_of(method))
    if all_of(method):
        return dataclasses.replace(clean, method=all_of(method), global_on="all")
    if method in SCHEDULES:
        return dataclasses.replace(clean, method=SCHEDULES[method][1], **SCHEDULES[method][2])
    return dataclasses.replace(clean, method=method)


def label(method: str) -> str:
    if method in SCHEDULES:
        return SCHEDULES[method][0]
    if all_of(method):
        return f"{label(all_of(method))}, KL on all nodes"
    if parity_of(method):
        return f"{label(parity_of(method))}, parity reference"
    if method in LABEL or sweep_of(method) is None:
        return LABEL.get(method, method)
    key, lam = sweep_of(method)
    return f"OAD, {SWEEPS[key][1]} = {lam:g}"


def tuned(avail: list[dict], lambdas: list[float], key: str = "lambda_global") -> tuple[float, dict, list[int]] | None:
    """OAD with λ_G (or λ_adv) chosen on validation (oad.md §2): among λ ∈ lambdas ∪ {1} run on the same seeds, the
    one whose mean over seeds of the validation accuracy at ê (mean over students) is highest; its runs' summary and
    those seeds."""
    runs = {1.0: {r["seed"]: r["report"] for r in avail if r["method"] == "oad"}}
    for lam in lambdas:
        runs[lam] = {r["seed"]: r["report"] for r in avail if r["method"] == sweep_name(lam, key)}
    seeds = set.intersection(*(set(v) for v in runs.values()))
    if not lambdas or not seeds:
        return None
    best, _ = on_validation(runs, seeds)
    return best, summarize([runs[best][s] for s in sorted(seeds)]), sorted(seeds)


def on_validation(runs: dict[float, dict[int, dict]], seeds) -> tuple[float, dict[float, float]]:
    """The setting (a key of `runs`, each seed → report) with the highest mean over `seeds` of the validation accuracy
    at ê (mean over students), ties: the smallest; and every setting's mean. Test accuracy never enters."""
    val = {k: np.mean([runs[k][s]["val_mean_students"] for s in seeds]) for k in runs}
    return max(sorted(runs), key=lambda k: val[k]), val


def _seed_list(seeds: list[int]) -> str:
    """[0, 1, 2, 3, 4] → '0..4'; other sets comma-separated."""
    return f"{seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))


def render(results: list[dict], meta: dict, datasets: list[str], backbones: list[str], methods: list[str],
           lambdas: list[float] = (), adv_lambdas: list[float] = (), ref_methods: list[str] = (),
           all_methods: list[str] = (), schedules: list[str] = ()) -> str:
    """The Markdown page; lambdas and adv_lambdas are the λ_G and λ_adv sweeps to show, each with its tuned row;
    ref_methods are the methods also shown under group.parity = reference, all_methods those also shown with
    group.global_on = all, schedules the OAD ablations of SCHEDULES to show."""
    out = ["# Node-level group distillation: OAD and baselines on citation graphs", "",
           "Generated by `benchmarks/group_node.py`; every number below is from its JSON "
           "(`docs/results-group.json`). Do not edit by hand.", "",
           *[f"- command{'' if i == 0 else ', then'}: `{c}`" for i, c in enumerate(meta.get("commands", [meta.get("command")]))],
           f"- device: {meta['device']}",
           f"- torch {torch.__version__}, torch_geometric {torch_geometric.__version__}, Python {platform.python_version()}",
           f"- settings: {meta['settings']}",
           "- test accuracy (%) at the selection epoch ê (the distillation epoch with the highest mean validation "
           "accuracy over the K students); mean ± std (population std) over seeds; per seed: mean over students, the "
           "student with the best validation accuracy at ê, and the ensemble (argmax of the mean softmax). "
           "The student best on test is never reported (oad.md §8).",
           "- every method uses the same students, seeds, W + E schedule and selection; baselines add their term "
           "after the same warm-up.",
           f"- seeds per cell: {_seed_counts(results)} (the `seeds` column gives each row's count; the run is "
           "seed-major, so a stopped benchmark leaves every cell with the same seeds, give or take the seed in "
           "progress).",
           "- wall times were measured on a shared 2-core machine with other jobs running; they are indicative, "
           "not a cost comparison.", ""]
    for ds in datasets:
        for bb in backbones:
            out.append(f"## {ds} · {bb.upper()}\n")
            avail = [r for r in results if r["dataset"] == ds and r["backbone"] == bb]
            if ds == "PubMed" and not avail:
                out.append(markdown_table([(LABEL[m], None) for m in methods if m not in EXTRA_ABLATIONS],
                                          note="—, not available offline"))
                continue
            shown = [*methods, *[sweep_name(lam) for lam in lambdas],
                     *[sweep_name(lam, "lambda_adv") for lam in adv_lambdas], *[REF + m for m in ref_methods],
                     *[ALL + m for m in all_methods], *schedules]
            shown = [m for m in shown if m not in EXTRA_ABLATIONS or any(r["method"] == m for r in avail)]
            stats = {m: summarize([r["report"] for r in avail if r["method"] == m]) if any(
                r["method"] == m for r in avail) else None for m in shown}
            rows = [(label(m), stats[m]) for m in shown]
            tunes = {key: tuned(avail, list(lams), key)
                     for key, lams in (("lambda_global", lambdas), ("lambda_adv", adv_lambdas))}
            for key, tune in tunes.items():
                if tune:
                    rows.append((f"OAD, {SWEEPS[key][1]} tuned on validation (chose {tune[0]:g})", tune[1]))
            out.append(markdown_table(rows))
            wall = {m: np.mean([r["report"]["wall_s"] for r in avail if r["method"] == m]) for m in shown if stats[m]}
            out.append("wall time per group run (s, mean over seeds): "
                       + ", ".join(f"{m} {w:.1f}" for m, w in wall.items()) + "\n")
            lines = []
            ind, oad, dmls = stats.get("independent"), stats.get("oad"), stats.get("dml")
            if ind and oad:
                d = 100 * (oad["mean_students"]["mean"] - ind["mean_students"]["mean"])
                lines.append(f"- target OAD mean over students ≥ independent + 1.0: {d:+.2f} points → "
                             + ("met" if d >= 1.0 else f"missed by {1.0 - d:.2f} points"))
            if dmls and oad:
                d = 100 * (oad["mean_students"]["mean"] - dmls["mean_students"]["mean"])
                lines.append(f"- target OAD not below DML (mean over students): {d:+.2f} points → "
                             + ("met" if d >= 0 else f"missed by {-d:.2f} points"))
            for key, tune in tunes.items():
                if tune and ind:  # against the independent students of the same seeds
                    sym, seeds = SWEEPS[key][1], tune[2]
                    ind_same = summarize([r["report"] for r in avail if r["method"] == "independent"
                                          and r["seed"] in seeds])
                    d = 100 * (tune[1]["mean_students"]["mean"] - ind_same["mean_students"]["mean"])
                    lines.append(f"- OAD with {sym} tuned on validation ({sym} = {tune[0]:g}) against independent, "
                                 f"both on seeds {_seed_list(seeds)}: {d:+.2f} points → "
                                 + ("met" if d >= 1.0 else f"missed by {1.0 - d:.2f} points"))
            ref_oad, ref_ind = stats.get(REF + "oad"), stats.get(REF + "independent")
            if ref_oad and ref_ind:  # the reference code's behaviour on both sides, on the seeds both ran
                runs = {m: {r["seed"]: r["report"] for r in avail if r["method"] == REF + m}
                        for m in ("oad", "independent")}
                seeds = sorted(set(runs["oad"]) & set(runs["independent"]))
                d = 100 * np.mean([runs["oad"][s]["mean_students"] - runs["independent"][s]["mean_students"]
                                   for s in seeds])
                lines.append(f"- parity reference (oad.md §9, every switch as in the reference code, the students "
                             f"included): OAD − independent, mean over students, seeds {_seed_list(seeds)}: "
                             f"{d:+.2f} points → " + ("met" if d >= 1.0 else f"missed by {1.0 - d:.2f} points"))
            for mine_m, other, target in (*[(m, o, None) for m in EXTRA_ABLATIONS for o in ("oad", "oad_global")],
                                          (ALL + "oad", "independent", 1.0), (ALL + "oad", ALL + "dml", 0.0),
                                          (ALL + "oad", "oad", None), (ALL + "dml", "dml", None),
                                          *[(v, other, None) for v in schedules if SCHEDULES[v][1] == "oad"
                                            for other in ("oad", "independent")], ("oad_w0", "independent_w0", None)):
                pair = [{r["seed"]: r["report"]["mean_students"] for r in avail if r["method"] == m}
                        for m in (mine_m, other)]
                seeds = sorted(set(pair[0]) & set(pair[1]))
                if seeds:  # a variant or oad.md §7 ablation against its baselines, paired by seed
                    d = 100 * np.mean([pair[0][s] - pair[1][s] for s in seeds])
                    verdict = "" if target is None else " → " + ("met" if d >= target else
                                                                  f"missed by {target - d:.2f} points")
                    lines.append(f"- {label(mine_m)} − {label(other)}, mean over students, paired on seeds "
                                 f"{_seed_list(seeds)}: {d:+.2f} points{verdict}")
            if ind and (ds, bb) in SANITY:
                lines.append(f"- sanity: independent {bb.upper()} mean over students "
                             f"{100 * ind['mean_students']['mean']:.2f} vs the literature's single model "
                             f"{SANITY[(ds, bb)]} (larger standard configurations; a sanity range, not a target)")
            out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["Cora", "CiteSeer", "PubMed"])
    ap.add_argument("--backbones", nargs="+", default=["gcn", "gat", "sage"])
    ap.add_argument("--methods", nargs="+", default=[m for m in METHODS if m not in EXTRA_ABLATIONS], choices=METHODS,
                    help="default: all but the local-term ablations (name them to run them; rows only where they ran)")
    ap.add_argument("--seeds", default="0..9")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results-group.md")
    ap.add_argument("--fresh", action="store_true", help="ignore earlier results in the JSON")
    ap.add_argument("--render-only", action="store_true", help="rewrite the Markdown from the JSON; train nothing")
    ap.add_argument("--lambda-global", nargs="*", type=float, default=[],
                    help="also run OAD at these λ_G and add the row with λ_G chosen on validation (oad.md §2)")
    ap.add_argument("--lambda-adv", nargs="*", type=float, default=[],
                    help="also run OAD at these λ_adv and add the row with λ_adv chosen on validation")
    ap.add_argument("--parity-reference", nargs="*", default=[], choices=METHODS,
                    help="also run these methods with group.parity = reference (oad.md §9), as extra rows")
    ap.add_argument("--global-all", nargs="*", default=[], choices=ALL_METHODS,
                    help="also run these methods with their KL term on every node (group.global_on = all), as "
                         "extra rows")
    ap.add_argument("--schedules", nargs="*", default=[], choices=list(SCHEDULES),
                    help="also run these OAD ablations of oad.md §7 (no warm-up, with its control; K = 2, 3, 6), as "
                         "extra rows")
    args = ap.parse_args()
    try:
        seeds = parse_seeds(args.seeds)
    except ConfigError as exc:
        ap.error(str(exc))
    json_path = args.out.with_suffix(".json")
    settings = settings_from_config(GroupConfig())
    meta = {"command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/group_node.py "
                       + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "device": _device_line(), "settings": "gfkd defaults (group.* in docs/config.md): K = 4, W = E = 100, "
            "Adam 5e-3, wd 5e-4, T = 3, λ_G = λ_adv = 1, d_D = 16, parity clean"}
    saved = None if args.fresh or not json_path.is_file() else json.loads(json_path.read_text())
    results = saved["runs"] if saved else []
    if saved:  # a resumed benchmark lists every command that added runs, in order (this one once it adds a run)
        earlier = saved["meta"].get("commands", [saved["meta"].get("command")])
        meta["commands"] = earlier + [meta.pop("command")]
    swept = [sweep_of(r["method"]) for r in results]
    lambdas, adv_lambdas = (sorted({lam for lam in asked if lam != 1.0} | {s[1] for s in swept if s and s[0] == key})
                            for key, asked in (("lambda_global", args.lambda_global), ("lambda_adv", args.lambda_adv)))
    ref_methods = [m for m in METHODS if m in args.parity_reference or any(parity_of(r["method"]) == m
                                                                           for r in results)]
    all_methods = [m for m in ALL_METHODS if m in args.global_all or any(all_of(r["method"]) == m for r in results)]
    schedules = [v for v in SCHEDULES if v in args.schedules or any(r["method"] == v for r in results)]

    def page(runs: list[dict], run_meta: dict) -> str:
        shown = [*args.methods, *[m for m in EXTRA_ABLATIONS if m not in args.methods]]  # the ablations where they ran
        return render(runs, run_meta, args.datasets, args.backbones, shown, lambdas, adv_lambdas, ref_methods,
                      all_methods, schedules)

    if args.render_only:
        saved = saved or json.loads(json_path.read_text())
        write_text(args.out, page(saved["runs"], saved["meta"]))
        return
    reference = settings_from_config(GroupConfig(parity="reference"))
    done = {(r["dataset"], r["backbone"], r["method"], r["seed"]) for r in results}
    root = resolve_data_root(args.data_root)
    graphs = {}
    for ds in args.datasets:
        try:
            if check_available(ds, root, REPO / "runs" / "_cache" / "datasets", allow_download=False):
                graphs[ds] = load_citation(ds, root, REPO / "runs" / "_cache" / "datasets", allow_download=False)
        except DataError as exc:
            print(f"{ds}: skipped ({exc})", file=sys.stderr)
    for seed in seeds:
        for ds, g in graphs.items():
            for bb in args.backbones:
                for m in [*args.methods, *[sweep_name(lam) for lam in args.lambda_global if lam != 1.0],
                          *[sweep_name(lam, "lambda_adv") for lam in args.lambda_adv if lam != 1.0],
                          *[REF + m for m in args.parity_reference], *[ALL + m for m in args.global_all],
                          *args.schedules]:
                    if (ds, bb, m, seed) in done:
                        continue
                    t0 = time.perf_counter()
                    run = train_group(g, dataclasses.replace(settings_of(m, settings, reference), backbone=bb), seed)
                    results.append({"dataset": ds, "backbone": bb, "method": m, "seed": seed, "report": run.report})
                    print(f"seed {seed} {ds} {bb} {m}: mean {run.report['mean_students']:.4f} "
                          f"val-best {run.report['val_best_student']:.4f} ens {run.report['ensemble']:.4f} "
                          f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True)
                    write_json(json_path, {"meta": meta, "runs": results})
                    write_text(args.out, page(results, meta))
    if saved and len(results) == len(saved["runs"]):
        meta = saved["meta"]  # nothing added: this command is not listed
    write_text(args.out, page(results, meta))


if __name__ == "__main__":
    main()
