"""Evaluate stage: every model of the run scored on the real held-out graphs by the same code; table, figures, report.

Models: the teacher, the distill stage's students (data-free, KD and CE on real graphs; every seed), the group's
students and their ensemble. Outputs in `<run>/evaluate/`: `results.json` (rows, per-model accuracies, confusion
matrices), `report.md`, `table.md`, `confusion.png`, `acc_vs_time.png`, `degrees.png`, `graphs.png`,
`manifest.json` last.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch_geometric.loader import DataLoader

from gfkd.config import RunConfig, stages_hash
from gfkd.data.splits import make_split
from gfkd.io.atomic import write_atomic, write_json
from gfkd.io.checkpoint import load_checkpoint
from gfkd.io.manifest import Manifest, load_manifest
from gfkd.io.shards import read_shard_set
from gfkd.layout import MANIFEST, RunLayout
from gfkd.models.widened import build_student
from gfkd.plots import accuracy_vs_time, confusion_matrices, degree_comparison, pseudo_graph_grid
from gfkd.report import Row, markdown_report, markdown_table
from gfkd.stages.common import StageOutcome, cached, fresh_staging, prepare_runtime, publish, save_figure
from gfkd.stages.teacher import load_dataset, load_teacher
from gfkd.tracking import NullLogger
from gfkd.train import COLLAPSED_SHARE, logits_of, seed_agreement, top_class_share
from gfkd.versions import command_line, device_line, runtime_line

STAGE = "evaluate"
REPORT_GENERATORS = {  # protocol.md §6's generator rows, in its order: key → (row, the settings whose run fills it);
    # the baselines are the plain KD recipe (gfkd.md §9, §10), the ACGKD rows the default distill recipe (acgkd.md)
    "randg": ("RandG", "generate.method=randg distill.recipe=plain"),
    "deepinvg": ("DeepInvG", "generate.method=deepinvg generate.gfkd.fair=false distill.recipe=plain"),
    "gfkd": ("GFKD", "generate.method=gfkd generate.gfkd.fair=false distill.recipe=plain"),
    "gfkd_fair": ("GFKD (fair)", "generate.method=gfkd generate.gfkd.fair=true distill.recipe=plain"),
    "acgkd": ("ACGKD", "generate.method=acgkd generate.bn_target=auto distill.recipe=acgkd"),
    "acgkd_teacher_alone": ("ACGKD (teacher alone)",
                            "generate.method=acgkd generate.bn_target=running distill.recipe=acgkd")}
GENERATOR_ROWS = {gen: row for gen, (row, _) in REPORT_GENERATORS.items()  # generate.method → its row
                  if gen not in ("gfkd_fair", "acgkd_teacher_alone")}
FIGURES = ["confusion.png", "acc_vs_time.png", "degrees.png", "graphs.png"]
TIMED = ("results.json", "report.md", "table.md", "acc_vs_time.png")  # carry wall times: left out of the digest


def _confusion(pred: torch.Tensor, y: torch.Tensor, c: int) -> list[list[int]]:
    return torch.bincount(y * c + pred, minlength=c * c).view(c, c).tolist()


def _generator_row(cfg: RunConfig, used: str) -> str:
    """The generator row of protocol.md §6 that this run's students fill (a REPORT_GENERATORS key)."""
    if used == "gfkd" and cfg.generate.gfkd.fair:
        return "gfkd_fair"
    if used == "acgkd" and cfg.generate.bn_target == "running":
        return "acgkd_teacher_alone"
    return used


def data_free_reads(cfg: RunConfig, method: str) -> str:
    """The report's line on what the data-free rows' generation read besides the teacher's weights (protocol.md §1:
    a data-free stage may read the training split's summaries in the teacher's metadata, nothing else)."""
    summaries = "the training split's node-count histogram, density and degree from the teacher's metadata"
    # the class counts of the metadata, read only by two diagnostic settings (docs/config.md: not data-free)
    readers = [k for k, on in (("generate.targets=prior", cfg.generate.targets == "prior"),
                               ("distill.class_weight=prior", cfg.distill.effective().class_weight == "prior")) if on]
    if readers:
        summaries += f", and its training class counts ({' and '.join(readers)}: not data-free, protocol.md §1)"
    if method == "randg":
        return f"{summaries}; no BN statistics, no training graph"
    if method in ("gfkd", "deepinvg", "deepinv"):  # the GFKD family's own key; its shared fixes match `auto`
        fair = cfg.generate.gfkd.fair
        target = "auto" if fair else cfg.generate.gfkd.bn_target
        setting = "generate.gfkd.fair=true" if fair else f"generate.gfkd.bn_target={target}"
        alone = "generate.gfkd.bn_target=running" + (" with generate.gfkd.fair=false" if fair else "")
    else:
        target = cfg.generate.bn_target
        setting, alone = f"generate.bn_target={target}", "generate.bn_target=running"
    if target == "running":
        return f"{summaries} and the teacher's own BN running statistics (teacher alone); no training graph"
    return (f"{summaries} and BN statistics the teacher stage computed over the training graphs ({setting}); no "
            f"training graph itself. The teacher-alone setting is {alone}")


def _mb(x: float) -> str:
    return f"{x / 2**20:,.0f} MB"


def pseudo_graph_table(metrics: dict[str, float], info: dict) -> dict[str, str]:
    """protocol.md §6's generator columns from the generate manifest, measure → value (§7's cost figures)."""
    m = lambda k: metrics.get(f"generate/{k}")  # noqa: E731
    q = lambda k: m(f"quality/{k}")  # noqa: E731
    out = {"generator": f"{info['method']}: {info['banks']} bank(s) of {info['graphs_per_bank']} graphs",
           "generation wall time s (first step to finalised graphs, summed over shards)": f"{m('time/wall_s'):.1f}"}
    if m("mem/peak_bytes") is not None:
        out["peak memory (GPU: peak allocated)"] = _mb(m("mem/peak_bytes"))
    peak = f"{_mb(m('mem/peak_rss_bytes'))} (this process)"
    if m("mem/worker_peak_rss_bytes") is not None:
        peak += f"; {_mb(m('mem/worker_peak_rss_bytes'))} (the largest of {m('time/workers'):.0f} workers)"
    beside = " (measured beside other stages of the process: counts theirs too)" if m("mem/measured_alone") == 0 else ""
    out["peak memory (CPU: peak RSS)"] = peak + beside
    out["working set (peak RSS minus the RSS before the loop)"] = _mb(m("mem/rss_growth_bytes")) + beside
    out["pseudo-graph parameters (real nodes only)"] = f"{m('params/pseudo_graph'):,.0f}"
    out["shard-set bytes"] = f"{m('size/shard_bytes'):,.0f}"
    out["pseudo-graphs"] = f"{q('num_graphs'):,.0f}"
    out["mean nodes (real training graphs)"] = f"{q('nodes_mean'):.2f} ({q('real_nodes_mean'):.2f})"
    out["edge density (real training graphs)"] = f"{q('edge_density_mean'):.3f} ({q('real_edge_density_mean'):.3f})"
    out["symmetric-pair fraction"] = f"{q('symmetric_fraction'):.3f}"
    agree = q("teacher_agreement")
    out["teacher agreement with the targets"] = (
        "— (labels are teacher argmax)" if agree is None else f"{agree:.3f}" + (
            ": ≥ 0.99, the bank over-fits the teacher (protocol.md §4)" if q("over_fitted") else ""))
    return out


def _metric(dirs: dict[str, Path], stage: str, key: str) -> float | None:
    if stage not in dirs:
        return None
    m = load_manifest(dirs[stage] / MANIFEST)
    return m.metrics.get(key) if m is not None else None


def run(cfg: RunConfig, layout: RunLayout, cache_key: str, logger: NullLogger = NullLogger(), force: bool = False,
        stage_dirs: dict[str, Path] | None = None) -> StageOutcome:
    """Score (or find scored) every model of this run; `stage_dirs` maps upstream stages to their folders."""
    if (done := cached(layout, STAGE, cache_key, force)) is not None:
        return done
    t0 = time.perf_counter()
    dirs = {k: Path(v) for k, v in (stage_dirs or {}).items()}
    dirs.setdefault("teacher", layout.stage_dir("teacher"))
    device = prepare_runtime(cfg.run, flush_denormal=True)  # as generate leaves it: a fresh run's arithmetic
    teacher, meta, _ = load_teacher(dirs["teacher"] / "teacher.pt")
    teacher = teacher.to(device)
    C = teacher.num_classes
    ds = load_dataset(cfg)
    split = make_split(ds.labels, cfg.protocol.name, cfg.protocol.fold, cfg.protocol.seed, cfg.protocol.val)
    test_graphs = ds.subset(split.test)
    loader = DataLoader(test_graphs, batch_size=256)

    accs: dict[str, float] = {}
    confusion: dict[str, list[list[int]]] = {}
    preds: dict[str, torch.Tensor] = {}

    def score(name: str, model: nn.Module) -> tuple[float, torch.Tensor]:
        z, y = logits_of(model.to(device), loader, device)
        pred = preds[name] = z.argmax(-1)
        accs[name] = float((pred == y).float().mean())
        confusion[name] = _confusion(pred, y, C)
        return accs[name], z

    rows: list[Row] = []
    majority = _metric(dirs, "teacher", "teacher/test/majority_acc")
    rows.append(Row("majority class", "majority", [majority] if majority is not None else []))
    t_acc, _ = score("teacher", teacher)
    rows.append(Row("teacher", "teacher", [t_acc], sum(p.numel() for p in teacher.parameters()),
                    _metric(dirs, "teacher", "teacher/time/wall_s")))

    # distill students, every seed
    method = cfg.generate.method
    by_variant: dict[str, list[str]] = {}  # variant → its students' names, in seed order
    parts: dict[str, dict[str, int]] = {}
    val_selected: dict[str, float] = {}
    if "distill" in dirs:
        records = json.loads((dirs["distill"] / "results.json").read_text())["records"]
        for ckpt in sorted((dirs["distill"] / "students").glob("*.pt")):
            state, cmeta, _ = load_checkpoint(ckpt)
            student = build_student(cmeta["spec"], teacher)
            student.load_state_dict(state)
            score(ckpt.stem, student)
            by_variant.setdefault(cmeta["variant"], []).append(ckpt.stem)
            parts[cmeta["variant"]] = student.param_counts()
            if len(split.val):  # without a validation split the "selected" epoch is the last: no second number
                val_selected[ckpt.stem] = records[ckpt.stem]["test_acc_val_selected"]

    def models_row(name: str, key: str, models: list[str], wall_s: float | None, note: str = "",
                   val: list[float] | None = None, part: dict[str, int] | None = None,
                   params: int | None = None) -> Row:
        """A row of the models `models` (names scored above): accuracy, agreement, collapsed; a note only when empty."""
        return Row(name, key, [accs[m] for m in models], params if params is not None else
                   (sum(part.values()) if part else None), wall_s, "" if models else note, val or [],
                   seed_agreement([preds[m].numpy() for m in models]) if len(models) > 1 else None,
                   sum(top_class_share(preds[m]) >= COLLAPSED_SHARE for m in models) if models else None, part)

    dwall = lambda v: _metric(dirs, "distill", f"distill/time/wall_s{'' if v == 'pseudo' else '_' + v}")  # noqa: E731
    why_real = "not in distill.baselines" if "distill" in dirs else "no distill stage"
    for name, v in (("student (real data)", "student_real"), ("KD (real data)", "kd_real")):
        rows.append(models_row(name, v, by_variant.get(v, []), dwall(v), why_real, part=parts.get(v)))
    gen_wall = _metric(dirs, "generate", "generate/time/wall_s")
    used = "deepinvg" if method == "deepinv" else method
    filled = _generator_row(cfg, used)
    shared_fixes = used == "deepinvg" and cfg.generate.gfkd.fair  # DeepInvG under gfkd.md §6's fixes: said so
    filled_name = REPORT_GENERATORS[filled][0] + (", shared fixes" if shared_fixes else "")
    for gen, (label, settings) in REPORT_GENERATORS.items():
        if gen == filled:
            wall = (gen_wall or 0.0) + (dwall("pseudo") or 0.0)
            students = by_variant.get("pseudo", [])
            rows.append(models_row(f"{filled_name} ({cfg.distill.recipe} recipe)", "pseudo", students, wall,
                                   "no distill stage", [val_selected[m] for m in students if m in val_selected],
                                   parts.get("pseudo")))
        else:
            rows.append(Row(label, gen, [], note=f"this run's students are the {filled_name} row; run {settings}"))

    # the group: each student, the picked one, the ensemble
    if "group" in dirs:
        res = json.loads((dirs["group"] / "results.json").read_text())
        numbers = res["numbers"]
        zs, members = [], []
        for ckpt in sorted((dirs["group"] / "students").glob("student-*.pt"), key=lambda p: int(p.stem.split("-")[1])):
            state, cmeta, _ = load_checkpoint(ckpt)
            student = build_student(cmeta["spec"], teacher)
            student.load_state_dict(state)
            _, z = score(f"group-{ckpt.stem}", student)
            zs.append(z)
            members.append(f"group-{ckpt.stem}")
        y = torch.cat([g.y.view(-1) for g in test_graphs])
        ens = preds["group-ensemble"] = torch.stack(zs).softmax(-1).mean(0).argmax(-1)
        accs["group-ensemble"] = float((ens == y).float().mean())
        confusion["group-ensemble"] = _confusion(ens, y, C)
        gpart = student.param_counts()
        gparams = sum(gpart.values())
        pick = int(numbers.get("picked_student", 0))
        gm = load_manifest(dirs["group"] / MANIFEST)
        info = gm.info if gm else {"method": cfg.group.graph.method, "data": cfg.group.graph.data}
        gwall = _metric(dirs, "group", "group/time/wall_s")
        if gwall is not None and info.get("data", cfg.group.graph.data) != "real":  # a data-free row: with generation
            gwall += gen_wall or 0.0
        label = f"group ({info.get('method', cfg.group.graph.method)}" + (
            f", anchor τ {info['anchor_tau']:.1f} calibrated" if info.get("anchor_tau") is not None else "") + (
            ", on the real training graphs, with data; val-selected)" if info.get("data") == "real" else ")")
        at_val = lambda key: [numbers[key]] if key in numbers else []  # noqa: E731  the group's val-selected epoch
        rows += [models_row(f"{label}: mean over students", "group_mean", members, gwall,
                            val=[numbers[f"acc_student{k}_val_selected"] for k in range(len(members))
                                 if f"acc_student{k}_val_selected" in numbers], part=gpart),
                 models_row(f"{label}: picked student", "group_picked", [members[pick]], gwall,
                            val=at_val("acc_picked_val_selected"), part=gpart),
                 models_row(f"{label}: ensemble", "group_ensemble", ["group-ensemble"], gwall,
                            val=at_val("acc_ensemble_val_selected"), params=gparams * len(members))]
    else:
        rows.append(Row("group", "group_mean", [], note="no group stage in this run"))

    # figures
    shown = {k: v for k, v in confusion.items() if k in ("teacher", "group-ensemble") or k.endswith("-s0")}
    figs = {"confusion.png": confusion_matrices(shown),
            "acc_vs_time.png": accuracy_vs_time([(r.name, r.wall_s, r.mean) for r in rows
                                                 if r.accs and r.wall_s and r.wall_s > 0])}
    real_deg = [int(d) for g in test_graphs for d in torch.bincount(g.edge_index[1], minlength=g.num_nodes)]
    pseudo_deg, examples = [], []
    if "generate" in dirs:
        for table in read_shard_set(dirs["generate"] / "shards"):
            cols = table.to_pydict()
            for k in range(table.num_rows):
                n = cols["num_nodes"][k]
                pseudo_deg += np.bincount(np.asarray(cols["dst"][k], dtype=np.int64), minlength=n).tolist()
                if len(examples) < 8 and k % 11 == 0:
                    examples.append((n, cols["src"][k], cols["dst"][k], [int(np.argmax(r)) % 10 for r in cols["x"][k]]))
    figs["degrees.png"] = degree_comparison(real_deg, pseudo_deg)
    figs["graphs.png"] = pseudo_graph_grid(examples, f"pseudo-graphs ({method})")

    staging = fresh_staging(layout, STAGE)
    for name, fig in figs.items():
        save_figure(fig, staging / name, logger, STAGE, dpi=100)
    facts = {"dataset": f"{cfg.data.dataset}, protocol {cfg.protocol.name}, "
                        f"{'fold ' + str(cfg.protocol.fold) if cfg.protocol.name == 'cv10' else 'seed ' + str(cfg.protocol.seed)}"
                        f" ({len(test_graphs)} test graphs), fold hash {split.fold_hash[:12]}",
             "device": device_line(device.type),
             "runtime": runtime_line(cfg.run.threads, cfg.run.deterministic),
             "config hash": stages_hash(cfg),
             "generator": f"{method}, distill recipe {cfg.distill.recipe}",
             "data-free rows read": data_free_reads(cfg, method),
             "command": (f"`{command_line()}`" if command_line() else
                         "not recorded (the stages were called from Python, not the gfkd command)")
                        + f"; every setting the run used, overrides included, is in {layout.config.name}"}
    gm = load_manifest(dirs["generate"] / MANIFEST) if "generate" in dirs else None
    pseudo = pseudo_graph_table(gm.metrics, gm.info) if gm is not None else None
    report = markdown_report(f"gfkd report: {cfg.run_name}", facts, rows, FIGURES, pseudo,
                             "Pseudo-graphs of the generate stage")
    write_atomic(staging / "report.md", lambda tmp: Path(tmp).write_text(report))
    write_atomic(staging / "table.md", lambda tmp: Path(tmp).write_text(markdown_table(rows)))
    write_json(staging / "results.json", {"rows": [r.__dict__ | {"mean": r.mean if r.accs else None,
                                                                 "std": r.std if r.accs else None} for r in rows],
                                          "accuracy": accs, "confusion": confusion, "facts": facts,
                                          "pseudo_graphs": pseudo})
    metrics = {}
    for r in rows:
        if r.accs:
            metrics[f"{STAGE}/test/acc_{r.key}"] = r.mean
            metrics[f"{STAGE}/test/acc_{r.key}_std"] = r.std
    metrics[f"{STAGE}/time/wall_s"] = time.perf_counter() - t0
    logger.metrics(metrics)
    for f in ("report.md", "results.json"):
        logger.artifact(staging / f, "evaluate")
    logger.flush()
    manifest = Manifest.build(STAGE, cache_key, staging, ["results.json", "report.md", "table.md", *FIGURES],
                              volatile=TIMED, metrics=metrics, info={"rows": [r.name for r in rows]},
                              mlflow_run_id=logger.run_id)
    return publish(layout, STAGE, staging, manifest)
