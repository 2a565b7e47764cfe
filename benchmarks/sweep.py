"""Generator sweep under protocol.md §4: one generate key over a few values, chosen on a data-free criterion.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep.py --dataset MUTAG --folds 0-3 \
        --key generate.bn_first_weight --values 1 3 10 --runs /tmp/sweep --jobs 2 \
        --extra data.root=../shared/datasets --out docs/benchmarks/sweep-mutag-bn-first-weight.md

Per fold, the fold's teacher (`<runs>/<dataset>-fold<k>/teacher`, the folder `benchmarks/distill.py` uses, so a
sweep can share its teachers); per (fold, value), the banks under `key=value` and the default data-free students
on them (`distill.seeds`, `distill.baselines=[]`), in `<cell>/sweep-<key>=<value>`. Then, per setting:

- bank agreement: the teacher's agreement with the generation targets (`generate/quality/teacher_agreement`);
  ≥ 0.99 rejects the setting as over-fitted;
- the shared pool: the pseudo-graphs of the fold's other settings (none of them trained these students);
- collapse on the pool: a student that puts ≥ 95 % of the pool in one class rejects the setting;
- seed agreement, the criterion (`sweep_criterion = seed_agreement`): the mean pairwise agreement of the student
  seeds' predictions on the pool;
- student–teacher agreement on the pool, logged beside it (protocol.md §4: it changed sign between datasets);
- after the fact, never read by the choice: the last-epoch students' accuracy on the fold's validation graphs and
  the Spearman correlation of each criterion with it over the settings, and their test accuracy.

The choice per fold is the unrejected value of highest seed agreement; over the folds, the value of highest mean
seed agreement (over the folds where it was not rejected) among those rejected on no fold (if every value is rejected
somewhere: on the fewest folds; on every fold: none). Nothing here reads a real graph to choose: the validation and
test columns are read from the students' records afterwards. Rejected settings are flagged in the table, never
regenerated. The Markdown and a JSON of every figure go to --out; --report-only reads finished settings (an
unfinished one is a one-line error naming it), --render-only rewrites the Markdown from the JSON.

The teacher folder is shared with `benchmarks/distill.py`'s cells of the same runs folder: a `teacher.*` override in
--extra retrains it there. A setting's folder is named by key=value alone; its stages' cache keys redo it when
--extra changes.
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
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.distill import _folds, _shown, _write, run_gen_ablation, without_ran_with  # noqa: E402

OVER_FITTED = 0.99  # bank agreement at or above it rejects a setting (protocol.md §4)
CRITERIA = {"seed_agreement": "seed agreement on the pool (the criterion)",
            "pool_teacher_agreement": "student–teacher agreement on the pool",
            "bank_agreement": "bank agreement (teacher vs targets)"}


def setting_folder(key: str, value: str) -> str:
    """A setting's folder in its fold's cell: `sweep-generate.bn_first_weight=3`."""
    return f"sweep-{key}={value}"


def _base(dataset: str, fold: int, runs: str, extra: list[str]) -> list[str]:
    return [f"data.dataset='{dataset}'", f"protocol.fold={fold}", f"run.runs_dir='{runs}'", *extra,
            "distill.baselines=[]"]


def run_teacher(dataset: str, fold: int, runs: str, extra: list[str]) -> str:
    """The fold's teacher, trained unless its manifest is valid; returns the cell folder."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from gfkd.config import resolve_config
    from gfkd.layout import RunLayout
    from gfkd.stages import teacher
    from tasks.cache import stage_key

    cfg = resolve_config(None, _base(dataset, fold, runs, extra))
    root = Path(runs) / f"{dataset.lower()}-fold{fold}"
    teacher.run(cfg, RunLayout(root), stage_key(cfg, "teacher"))
    return str(root)


def run_setting(dataset: str, fold: int, key: str, value: str, runs: str, extra: list[str]) -> str:
    """One setting: banks under key=value from the fold's teacher, then the data-free students on them."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from gfkd.config import resolve_config
    from gfkd.io.manifest import load_manifest
    from gfkd.layout import MANIFEST, RunLayout

    root = Path(runs) / f"{dataset.lower()}-fold{fold}"
    t_dir = root / "teacher"
    t_m = load_manifest(t_dir / MANIFEST)
    if t_m is None:
        raise SweepError(f"{t_dir}: no valid teacher (the sweep trains each fold's teacher before its settings)")
    cfg = resolve_config(None, [*_base(dataset, fold, runs, extra), f"{key}={value}"])
    layout = RunLayout(root / setting_folder(key, value))
    run_gen_ablation(cfg, layout, t_m.digest, t_dir)
    return str(layout.root)


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's ρ with average ranks for ties; None where either side is constant or has < 3 points."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for u in np.unique(v):  # ties share their mean rank
            r[v == u] = r[v == u].mean()
        return r

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


class SweepError(Exception):
    """A sweep that cannot be read or run as asked; main prints it as one line (exit code 2)."""


def _mean_or_none(xs: list[float | None]) -> float | None:
    """The mean, or None where any is missing (a protocol without a validation split)."""
    return None if any(x is None for x in xs) else float(np.mean(xs))


def fold_figures(cell: Path, key: str, values: list[str]) -> dict[str, dict]:
    """Per value of one fold: the selection criteria (data-free: the teacher, the banks and the students' checkpoints
    on the pool) and, read from the students' records afterwards, validation and test accuracy."""
    import torch
    from torch_geometric.loader import DataLoader

    from gfkd.io.checkpoint import load_checkpoint
    from gfkd.io.manifest import load_manifest
    from gfkd.layout import MANIFEST
    from gfkd.models.widened import build_student
    from gfkd.stages.distill import load_pseudo_graphs
    from gfkd.train import seed_agreement
    from gfkd.stages.teacher import load_teacher
    from gfkd.train import COLLAPSED_SHARE, logits_of, top_class_share

    folders = {v: cell / setting_folder(key, v) for v in values}
    for stage in [cell / "teacher", *(f / s for f in folders.values() for s in ("generate", "distill"))]:
        if load_manifest(stage / MANIFEST) is None:  # killed, or never run: not a setting to score
            raise SweepError(f"{stage}: no finished stage; run the sweep without --report-only to make it")
    teacher, _, _ = load_teacher(cell / "teacher" / "teacher.pt")
    banks = {v: load_pseudo_graphs(f / "generate" / "shards") for v, f in folders.items()}
    out = {}
    for v, folder in folders.items():
        pool = [g for u in values if u != v for g in banks[u]]
        loader = DataLoader(pool, batch_size=256)
        t_pred = torch.cat([g.teacher_logits.view(1, -1) for g in pool]).argmax(-1).numpy()
        preds, shares = [], []
        for ckpt in sorted((folder / "distill" / "students").glob("pseudo-s*.pt")):
            state, meta, _ = load_checkpoint(ckpt)
            student = build_student(meta["spec"], teacher)
            student.load_state_dict(state)
            pred = logits_of(student, loader, torch.device("cpu"))[0].argmax(-1)
            preds.append(pred.numpy())
            shares.append(top_class_share(pred))
        if len(preds) < 2:
            raise SweepError(f"{folder}: {len(preds)} student seed(s); seed agreement needs at least 2 "
                             "(distill.seeds, 3 by protocol.md §4)")
        quality = json.loads((folder / "generate" / "quality.json").read_text())
        pseudo = [json.loads(p.read_text()) for p in sorted((folder / "distill" / "students").glob(
            "pseudo-s*.result.json"))]  # with each student's history: its last epoch's validation accuracy
        bank_agreement = quality.get("teacher_agreement")
        out[v] = {
            "bank_agreement": bank_agreement,
            "over_fitted": bank_agreement is not None and bank_agreement >= OVER_FITTED,
            "pool_graphs": len(pool), "pool_top_share": shares,
            "pool_collapsed": sum(s >= COLLAPSED_SHARE for s in shares), "students": len(preds),
            "seed_agreement": seed_agreement(preds),
            "pool_teacher_agreement": float(np.mean([(p == t_pred).mean() for p in preds])),
            "bank_density": quality["edge_density_mean"], "real_density": quality["real_edge_density_mean"],
            "teacher_pool_top_share": float(np.bincount(t_pred).max() / len(t_pred)),
            "val_acc": _mean_or_none([r["history"][-1].get("distill/val/acc") for r in pseudo]),
            "test_acc": float(np.mean([r["test_acc"] for r in pseudo])),
            "test_collapsed": sum(r["collapsed"] for r in pseudo),
        }
        out[v]["rejected"] = bool(out[v]["over_fitted"] or out[v]["pool_collapsed"])
    return out


def choose(folds: dict[int, dict[str, dict]], values: list[str]) -> dict:
    """The seed-agreement choice per fold and over the folds, and, after the fact, the values of best mean validation
    accuracy and the criteria's Spearman ρ with validation accuracy (pooled over every setting; per fold, averaged)."""
    per_fold = {}
    for f, rows in folds.items():
        ok = [v for v in values if not rows[v]["rejected"]]
        per_fold[f] = max(ok, key=lambda v: rows[v]["seed_agreement"]) if ok else None
    rejected = {v: sum(rows[v]["rejected"] for rows in folds.values()) for v in values}
    least = min(rejected.values())
    # over the folds where the value was admissible: a collapsed student's seeds agree, and must not count
    kept = {v: [rows[v]["seed_agreement"] for rows in folds.values() if not rows[v]["rejected"]] for v in values}
    mean = {v: float(np.mean(a)) if a else None for v, a in kept.items()}
    val = {v: _mean_or_none([rows[v]["val_acc"] for rows in folds.values()]) for v in values}
    admissible = [v for v in values if rejected[v] == least and mean[v] is not None]
    rho = {}
    for c in CRITERIA:
        has = lambda r: r[c] is not None and r["val_acc"] is not None  # noqa: E731
        pts = [(rows[v][c], rows[v]["val_acc"]) for rows in folds.values() for v in values if has(rows[v])]
        per = [spearman([rows[v][c] for v in values], [rows[v]["val_acc"] for v in values]) for rows in folds.values()
               if all(has(rows[v]) for v in values)]
        per = [r for r in per if r is not None]
        rho[c] = {"pooled": spearman(*zip(*pts)) if pts else None,
                  "per_fold_mean": float(np.mean(per)) if per else None, "per_fold_n": len(per)}
    return {"per_fold": per_fold, "rejected_folds": rejected,
            "choice": max(admissible, key=mean.get) if admissible else None,
            "seed_agreement_mean": mean, "val_acc_mean": val,
            "val_best": [v for v in values if val[v] >= max(val.values()) - 1e-9]  # ties up to float sums
            if None not in val.values() else None,
            "spearman": rho}


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def render(store: dict) -> str:
    """The Markdown page of a sweep's JSON."""
    from gfkd.train import COLLAPSED_SHARE

    key, values, folds = store["key"], store["values"], {int(f): r for f, r in store["folds"].items()}
    pick = choose(folds, values)
    lines = [f"# Generator sweep: `{key}` on {store['dataset']}", "",
             "Generated by `benchmarks/sweep.py` (protocol.md §4's generator sweep); every number is from its JSON, "
             f"`{store['json']}`. Do not edit by hand.", "",
             f"- command: `{store['command']}`" + (f" ({store['made']})" if store["made"] else ""),
             f"- {store['machine']}",
             f"- folds {', '.join(map(str, sorted(folds)))} (protocol B: test fold i, validation fold i − 1), one "
             f"teacher per fold shared by every value; {store['seeds']} student seeds per setting; "
             "the rest of the config at its defaults",
             f"- criterion in use: `sweep_criterion = seed_agreement`. Rejected: bank agreement ≥ {OVER_FITTED} "
             f"(over-fitted) or a student with ≥ {COLLAPSED_SHARE:.0%} of the pool in one class. The pool of a "
             "setting is the pseudo-graphs of the fold's other settings.",
             "- validation and test accuracy (last epoch, mean over the student seeds) are read after the choice, "
             "from the students' records; neither enters it.", ""]
    chosen = (f"**seed agreement chooses `{key}={pick['choice']}`** (highest mean over the folds where it was "
              "admissible, among the values rejected on the fewest folds)" if pick["choice"] is not None else
              "**no admissible setting**: every value was rejected on every fold")
    lines += ["## Choice", "", f"- {chosen}; per fold: " + ", ".join(
                  f"fold {f} → {pick['per_fold'][f] or 'none (all rejected)'}" for f in sorted(folds))]
    if pick["choice"] is not None:  # how far ahead: paired over the folds where both were admissible
        for v in values:
            both = [f for f in folds if v != pick["choice"] and not folds[f][v]["rejected"]
                    and not folds[f][pick["choice"]]["rejected"]]
            if both:
                d = np.array([folds[f][pick["choice"]]["seed_agreement"] - folds[f][v]["seed_agreement"] for f in both])
                lines.append(f"- seed agreement, {pick['choice']} − {v}: {d.mean():+.4f} ± {d.std():.4f} over "
                             f"{len(both)} fold{'s' if len(both) != 1 else ''} (ahead on {int((d > 0).sum())})")
    if pick["val_best"] is not None:
        best = " and ".join(f"`{key}={v}`" for v in pick["val_best"])
        lines += [f"- after the fact, the best mean validation accuracy is at {best}"
                  + (" (tied)" if len(pick["val_best"]) > 1 else ""),
                  "- the same choice: " + ("yes" if pick["choice"] in pick["val_best"] else "no")]
    lines += ["", "| value | mean seed agreement (admissible folds) | folds rejected | mean validation acc | "
              "mean test acc (never read) |", "|---|---|---|---|---|"]
    for v in values:
        test = np.mean([folds[f][v]["test_acc"] for f in folds])
        lines.append(f"| {v} | {_f(pick['seed_agreement_mean'][v])} | {pick['rejected_folds'][v]} of {len(folds)} | "
                     f"{_f(pick['val_acc_mean'][v])} | {test:.3f} |")
    lines += ["", "## The criteria against validation accuracy", "",
              "Spearman ρ of each criterion with the settings' validation accuracy: pooled over every (fold, value) "
              "setting, and within each fold (over the values) averaged over the folds.", "",
              "| criterion | ρ pooled | ρ within folds (mean) |", "|---|---|---|"]
    for c, label in CRITERIA.items():
        r = pick["spearman"][c]
        lines.append(f"| {label} | {_f(r['pooled'], 2)} | {_f(r['per_fold_mean'], 2)} "
                     f"({r['per_fold_n']} fold{'s' if r['per_fold_n'] != 1 else ''}) |")
    lines += ["", "## Per setting", "",
              "| fold | value | bank agreement | bank density (real) | pool graphs | pool top-class share: teacher; "
              "per student | seed agreement | student–teacher agreement on the pool | rejected | validation acc | "
              "test acc | collapsed on test |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in sorted(folds):
        for v in values:
            r = folds[f][v]
            why = ", ".join(w for w, on in (("over-fitted", r["over_fitted"]),
                                             (f"{r['pool_collapsed']} collapsed on the pool", r["pool_collapsed"]))
                            if on) or "no"
            bank = "— (labels are teacher argmax)" if r["bank_agreement"] is None else f"{r['bank_agreement']:.3f}"
            lines.append(f"| {f} | {v} | {bank} | {r['bank_density']:.3f} ({r['real_density']:.3f})"
                         f" | {r['pool_graphs']} | {r['teacher_pool_top_share']:.2f}; "
                         f"{', '.join(f'{s:.2f}' for s in r['pool_top_share'])} | "
                         f"{r['seed_agreement']:.3f} | {r['pool_teacher_agreement']:.3f} | {why} | {_f(r['val_acc'])} "
                         f"| {r['test_acc']:.3f} | {r['test_collapsed']} of {r['students']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="MUTAG")
    p.add_argument("--folds", default="0-3", help="e.g. 0-3 or 0,2,5")
    p.add_argument("--key", help="a generate.* key, e.g. generate.bn_first_weight")
    p.add_argument("--values", nargs="+", default=[], help="at least 2 values, as key=value would take them (3 or "
                   "more give every setting a pool from two others)")
    p.add_argument("--runs", type=Path, default=Path("/tmp/sweep-runs"))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--extra", nargs="*", default=[], help="key=value overrides for every setting")
    p.add_argument("--out", type=Path, required=True, help="the Markdown page; its JSON goes beside it")
    p.add_argument("--report-only", action="store_true", help="only read what is on disk")
    p.add_argument("--ran-with", default="", help="with --report-only: the command that produced the settings")
    p.add_argument("--render-only", action="store_true", help="rewrite the Markdown from the JSON; read no run")
    args = p.parse_args()
    if args.render_only:
        _write(args.out, render(json.loads(args.out.with_suffix(".json").read_text())))
        print(args.out)
        return
    if not (args.key or "").startswith("generate.") or len(args.values) < 2:
        p.error("--key must be a generate.* key and --values at least 2 values (a generator sweep)")
    if len(set(args.values)) < len(args.values):
        p.error(f"--values repeats a value: {' '.join(args.values)}")
    try:
        folds = _folds(args.folds)
    except ValueError:
        p.error(f"--folds {args.folds!r}: give a range like 0-3 or a list like 0,2,5")
    try:
        _run(args, folds)
    except SweepError as e:  # a one-line error naming the key or folder, exit code 2 as for any bad input
        print(f"benchmarks/sweep.py: {e}", file=sys.stderr)
        sys.exit(2)


def _run(args: argparse.Namespace, folds: list[int]) -> None:
    """Check every setting's config, run what is missing (unless --report-only), read the figures, write the page."""
    from gfkd.config import resolve_config
    from gfkd.errors import ConfigError
    from tasks.cache import stage_key

    try:  # every override is type-checked before any run starts
        cfgs = {v: resolve_config(None, [*_base(args.dataset, folds[0], str(args.runs), args.extra),
                                         f"{args.key}={v}"]) for v in args.values}
    except ConfigError as e:
        raise SweepError(str(e)) from None
    keys = {}
    for v, cfg in cfgs.items():  # 1 and 1.0: the same banks, so each would sit in the other's pool
        keys.setdefault(stage_key(cfg, "generate", ("teacher",)), []).append(v)
    if same := [vs for vs in keys.values() if len(vs) > 1]:
        raise SweepError(f"--values {' and '.join(same[0])} give the same banks (the same generate config); keep one")
    t0 = time.perf_counter()
    if not args.report_only:
        with ProcessPoolExecutor(args.jobs) as pool:
            for root in pool.map(run_teacher, *zip(*[(args.dataset, f, str(args.runs), args.extra) for f in folds])):
                print("teacher", root, flush=True)
            jobs = [(args.dataset, f, args.key, v, str(args.runs), args.extra) for f in folds for v in args.values]
            for folder in pool.map(run_setting, *zip(*jobs)):
                print("done", folder, flush=True)
    root = args.runs
    figures = {f: fold_figures(root / f"{args.dataset.lower()}-fold{f}", args.key, args.values) for f in folds}
    from gfkd.versions import cpu_model, versions_line

    cmd = "python benchmarks/sweep.py " + shlex.join(without_ran_with(sys.argv[1:]))  # the producer is named apart
    made = (f"settings produced by: `{args.ran_with}`" if args.ran_with else "" if args.report_only else
            f"wall time {(time.perf_counter() - t0) / 60:.1f} min, {args.jobs} at a time")
    seeds = sorted({r["students"] for rows in figures.values() for r in rows.values()})
    store = {"dataset": args.dataset, "key": args.key, "values": args.values, "seeds": "–".join(map(str, seeds)),
             "folds": figures, "command": cmd, "made": made, "machine": f"{versions_line()}, CPU {cpu_model()}",
             "json": _shown(args.out.with_suffix(".json"))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write(args.out.with_suffix(".json"), json.dumps(store, indent=1))
    _write(args.out, render(store))
    print(args.out)


if __name__ == "__main__":
    main()
