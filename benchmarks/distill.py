"""Distill benchmark: data-free students of each generator against the real-data rows, under protocol B (10-fold CV),
plus the ACGKD recipe ablations. Writes docs/results.md and docs/results.json with the command that produced them.

    python benchmarks/distill.py --datasets MUTAG PTC_MR --folds 0-9 --generators acgkd randg gfkd \
        --ablations MUTAG --runs /tmp/distill-runs --jobs 2

Each (dataset, fold) cell runs the stages directly (teacher → generate per generator → distill) in its own process,
with the stage cache keys of the pipeline, so a rerun skips finished stages and a killed cell redoes only what is
missing. A fold's value is the mean over the student seeds; a cell of the table is the mean ± std over folds.
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
import platform
import re
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = {  # name -> distill overrides on the ACGKD banks (acgkd.md §12)
    "plain recipe": ["distill.recipe=plain"],
    "no curriculum": ["distill.curriculum.pace=off"],
    "fixed temperature": ["distill.temperature.mode=fixed"],
    "no classifier reuse": ["distill.head=own", "distill.feat_weight=0"],
    # screening variants (docs/distill.md)
    "augment": ["distill.augment.edge_flip=0.1", "distill.augment.node_noise=0.1"],
    "augment strong": ["distill.augment.edge_flip=0.25", "distill.augment.node_noise=0.25"],
    "densify": ["distill.augment.edge_add=0.35"],  # IMDB-BINARY's banks sit at 0.74 of the metadata density
    "densify strong": ["distill.augment.edge_add=0.7"],
    "ego hub": ["distill.augment.hub=1"],  # every IMDB-BINARY graph has a node joined to all others, 35-51 % of its
    # pseudo-graphs do (docs/benchmarks/lean-imdb.md)
    "teacher-sized student": ["distill.student.layers=5", "distill.width_mult=teacher"],  # GIN-5-128, as protocol.md §5's teachers
    "temperature 6": ["distill.temperature.mode=fixed", "distill.temperature.value=6"],
    "balanced KD": ["distill.class_weight=balanced"],
    "prior KD weights": ["distill.class_weight=prior"],  # not in acgkd.md §12: docs/distill.md, "The class lean"
    "adversarial rounds": ["distill.adversarial.rounds=true"],
    "resample": ["distill.resample=true"],
}
GEN_ABLATIONS = {  # name -> generate overrides: new ACGKD banks, then the default distill (acgkd.md §12)
    "soft samples": ["generate.acgkd.sample=soft"],
    "no BN matching": ["generate.beta_bn=0"],
    "no one-hot prior": ["generate.acgkd.beta_oh=0"],
    "running BN targets": ["generate.bn_target=running"],
    "finalize mode": ["generate.acgkd.finalize=mode"],
    "size-coupled degrees": ["generate.acgkd.degree_coupling=0.5"],  # not in acgkd.md §12: docs/generate.md
    "prior targets": ["generate.targets=prior"],  # not in acgkd.md §12: docs/distill.md, "The class lean"
    "soft targets": ["generate.confidence_low=0.5"],  # not in acgkd.md §12: docs/generate.md, "Soft targets"
    "soft targets 0.75": ["generate.confidence_low=0.75"],  # a milder spread of the same
    "held density": ["generate.acgkd.hold_density=true"],  # not in acgkd.md §12: docs/generate.md, "Held density"
}


# A group folder's name spells the settings that differ from these fixed values (W, E, sup_weight, anchor τ: the
# defaults when the names were fixed), not from the current defaults, so a folder keeps its meaning if a default changes.
GROUP_FOLDER_BASE = (30, 120, 1.0, 2.0)


def slug(name: str) -> str:
    """An ablation's name as a folder part: "soft targets" → "soft-targets"."""
    return name.replace(" ", "-")


def ablation_folder(name: str) -> str:
    """The folder of an ablation in a cell (its banks too, for GEN_ABLATIONS): `<cell>/acgkd-<slug>`."""
    return "acgkd-" + slug(name)


def group_folder(gg, banks: str = "") -> str:
    """The folder of a group run on a cell's banks, named by its settings (group.graph) that differ from the base,
    and by the generate ablation whose banks it trained on (`-on-<name>`; none: the default ACGKD banks)."""
    return f"acgkd-group-{gg.method}" + ("-widened" if gg.student == "widened" else "") + (
        f"-w{gg.warmup_epochs}e{gg.epochs}" if (gg.warmup_epochs, gg.epochs) != GROUP_FOLDER_BASE[:2] else "") + (
        f"-sup{gg.sup_weight:g}" if gg.sup_weight != GROUP_FOLDER_BASE[2] else "") + (
        "-curriculum" if gg.curriculum == "inherit" else "") + ("-real" if gg.data == "real" else "") + (
        "-tau" if gg.anchor_temperature == "inherit" else "") + (
        f"-anchor{gg.anchor_tau:g}" if gg.anchor_temperature == "fixed" and gg.anchor_tau != GROUP_FOLDER_BASE[3]
        else "") + (f"-calibrated{gg.anchor_confidence:g}" + (
            f"-from{gg.anchor_tau:g}" if gg.anchor_tau != GROUP_FOLDER_BASE[3] else "")
        if gg.anchor_temperature == "calibrated" else "") + ("-dunit" if gg.d_input == "unit" else "") + (
        f"-on-{slug(banks)}" if banks else "")


def group_label(folder: str) -> str:
    """The row label of a group folder (after "group "): `acgkd-group-oad_global-widened-sup0` → "oad_global,
    widened students, CE to ŷ × 0"; a group on a generate ablation's banks ends ", on the <name> banks"."""
    folder, _, banks = folder.partition("-on-")
    on = ""
    if banks:
        names = {slug(n): n for n in GEN_ABLATIONS}
        on = f", on the {names.get(banks, banks)} banks"
    label = folder.removeprefix("acgkd-group-").replace("-widened", ", widened students")
    label = re.sub(r"-w(\d+)e(\d+)", r", W \1 + E \2 epochs", label)
    label = re.sub(r"-sup([\d.]+)", r", CE to ŷ × \1", label)
    label = re.sub(r"-anchor([\d.]+)", r", anchor τ \1", label)
    label = re.sub(r"-calibrated([\d.]+)", r", anchor τ calibrated to top-class probability \1", label)
    label = re.sub(r"-from([\d.]+)", r" from τ \1", label)
    return label.replace("-curriculum", ", curriculum inherited").replace(
        "-real", ", on the real training graphs (with data, val-selected)").replace(
        "-tau", ", anchor temperature inherited").replace("-dunit", ", D on unit-length embeddings") + on


def single_student(group_row: str) -> str:
    """The single distilled student a group row is held against (issue 5): the one trained on the same banks."""
    m = re.search(r", on the (.+) banks", group_row)
    return f"ACGKD, {m.group(1)}" if m else "ACGKD"


def _folds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(t) for t in text.split(",")]


def plain_folder(gen: str) -> str:
    """The folder of a baseline generator's students under protocol.md §6's plain KD recipe: `<cell>/<gen>-plain`."""
    return f"{gen}-plain"


def run_cell(dataset: str, fold: int, generators: list[str], ablations: list[str], runs: str, extra: list[str],
             plain_baselines: bool = False, plain_only: bool = False) -> str:
    """All stages of one (dataset, fold); returns the cell's folder. `plain_baselines`: the students of every
    generator but ACGKD are also trained with the plain KD recipe (protocol.md §6 defines RandG, DeepInvG and GFKD
    that way), on the same banks, into `<cell>/<gen>-plain`; `plain_only`: only that way (their banks are still
    generated, their ACGKD-recipe students are not trained: those rows stay as an earlier run stored them)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from gfkd.config import resolve_config
    from gfkd.layout import RunLayout
    from gfkd.stages import distill, generate, teacher
    from tasks.cache import stage_key

    root = Path(runs) / f"{dataset.lower()}-fold{fold}"
    base = [f"data.dataset='{dataset}'", f"protocol.fold={fold}", f"run.runs_dir='{runs}'", *extra]
    cfg = resolve_config(None, base)
    t_layout = RunLayout(root)
    t_out = teacher.run(cfg, t_layout, stage_key(cfg, "teacher"))
    for i, gen in enumerate(generators):
        gcfg = resolve_config(None, [*base, f"generate.method={gen}"] + ([] if i == 0 else ["distill.baselines=[]"]))
        layout = RunLayout(root / gen)
        g_out = generate.run(gcfg, layout, stage_key(gcfg, "generate", (t_out.manifest.digest,)),
                             teacher_dir=t_layout.stage_dir("teacher"))
        if not (plain_only and gen != "acgkd"):
            distill.run(gcfg, layout, stage_key(gcfg, "distill", (t_out.manifest.digest, g_out.manifest.digest)),
                        teacher_dir=t_layout.stage_dir("teacher"), generate_dir=layout.stage_dir("generate"))
        if (plain_baselines or plain_only) and gen != "acgkd":
            pcfg = resolve_config(None, [*base, f"generate.method={gen}", "distill.baselines=[]",
                                         "distill.recipe=plain"])
            distill.run(pcfg, RunLayout(root / plain_folder(gen)),
                        stage_key(pcfg, "distill", (t_out.manifest.digest, g_out.manifest.digest)),
                        teacher_dir=t_layout.stage_dir("teacher"), generate_dir=layout.stage_dir("generate"))
        if ablations and gen == "acgkd":
            for name in ablations:
                own_banks = name in GEN_ABLATIONS
                over = GEN_ABLATIONS[name] if own_banks else ABLATIONS[name]
                acfg = resolve_config(None, [*base, "distill.baselines=[]", *over])
                alayout = RunLayout(root / ablation_folder(name))
                if own_banks:  # generated under the ablation's overrides, into its folder
                    run_gen_ablation(acfg, alayout, t_out.manifest.digest, t_layout.stage_dir("teacher"))
                    continue
                distill.run(acfg, alayout, stage_key(acfg, "distill", (t_out.manifest.digest, g_out.manifest.digest)),
                            teacher_dir=t_layout.stage_dir("teacher"), generate_dir=layout.stage_dir("generate"))
    return str(root)


def run_gen_ablation(cfg, layout, teacher_digest: str, teacher_dir: Path) -> None:
    """A generator ablation (`cfg` holds its overrides): its banks from the teacher, then the default distill on
    them, both into `layout`."""
    from gfkd.stages import distill, generate
    from tasks.cache import stage_key

    banks = generate.run(cfg, layout, stage_key(cfg, "generate", (teacher_digest,)), teacher_dir=teacher_dir)
    distill.run(cfg, layout, stage_key(cfg, "distill", (teacher_digest, banks.manifest.digest)),
                teacher_dir=teacher_dir, generate_dir=layout.stage_dir("generate"))


def run_on_banks(dataset: str, fold: int, runs: str, extra: list[str], what: list[str], banks: str = "") -> str:
    """Stages on a finished cell's teacher and ACGKD banks, read from disk: "group" (OAD on pseudo-graphs, into
    `<cell>/acgkd-group-…`), ablation names (distill variants, into `<cell>/acgkd-<name>`) and generate ablation
    names (new banks from the stored teacher under the ablation's overrides, then the default distill, both into
    `<cell>/acgkd-<name>`: the cell's other stages are not rerun, so a code change since they were made costs
    nothing; these need only the cell's teacher, trained here when the cell has none). `banks` names a generate
    ablation whose banks the group reads instead (`<cell>/acgkd-<banks>/generate`; group only)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from gfkd.config import DistillConfig, resolve_config
    from gfkd.io.manifest import load_manifest
    from gfkd.layout import MANIFEST, RunLayout
    from gfkd.stages import distill, group, teacher
    from tasks.cache import stage_key

    root = Path(runs) / f"{dataset.lower()}-fold{fold}"
    t_dir = root / "teacher"
    g_dir = root / (ablation_folder(banks) if banks else "acgkd") / "generate"
    t_m, g_m = load_manifest(t_dir / MANIFEST), load_manifest(g_dir / MANIFEST)
    needs_banks = banks or any(item not in GEN_ABLATIONS for item in what)  # a generate ablation makes its own
    if t_m is None and not needs_banks:  # generate ablations alone: a cell never run gets its teacher here
        tcfg = resolve_config(None, [f"data.dataset='{dataset}'", f"protocol.fold={fold}", f"run.runs_dir='{runs}'",
                                     *extra])
        t_m = teacher.run(tcfg, RunLayout(root), stage_key(tcfg, "teacher")).manifest
    if t_m is None or (g_m is None and needs_banks):
        banks_too = f" and {g_dir.parent.name} banks" if needs_banks else ""
        raise SystemExit(f"{root}: run the cell first (teacher{banks_too})")
    # the banks' own generate settings, so the group's saved config says how its banks were made
    base = [f"data.dataset='{dataset}'", f"protocol.fold={fold}", f"run.runs_dir='{runs}'",
            *(GEN_ABLATIONS[banks] if banks else []), *extra]
    up = (t_m.digest, g_m.digest) if g_m is not None else (t_m.digest,)
    for item in what:
        if item == "group":
            cfg = resolve_config(None, base)
            if cfg.group.graph.curriculum == "inherit" and cfg.distill.curriculum != DistillConfig().curriculum:
                raise SystemExit("--on-banks group: the folder names group.graph.curriculum=inherit but not the "
                                 "distill.curriculum.* it inherits; keep distill.curriculum at its defaults here, "
                                 "or run the group through gfkd run")
            group.run(cfg, RunLayout(root / group_folder(cfg.group.graph, banks)), stage_key(cfg, "group", up),
                      teacher_dir=t_dir, generate_dir=g_dir)
        elif item in GEN_ABLATIONS:
            cfg = resolve_config(None, [*base, "distill.baselines=[]", *GEN_ABLATIONS[item]])
            run_gen_ablation(cfg, RunLayout(root / ablation_folder(item)), t_m.digest, t_dir)
        else:
            cfg = resolve_config(None, [*base, "distill.baselines=[]", *ABLATIONS[item]])
            distill.run(cfg, RunLayout(root / ablation_folder(item)), stage_key(cfg, "distill", up),
                        teacher_dir=t_dir, generate_dir=g_dir)
    return str(root)


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _fold_values(records: dict, variant: str) -> tuple[float, float, float, int, int] | None:
    rs = [r for r in records.values() if r["variant"] == variant]
    if not rs:
        return None
    acc = np.array([r["test_acc"] for r in rs])
    vs = np.mean([r["test_acc_val_selected"] for r in rs])
    return float(acc.mean()), float(acc.std()), float(vs), sum(r["collapsed"] for r in rs), len(rs)


FIELDS = ("folds", "within_std", "val_sel", "collapsed", "students", "gen")  # per row, each {fold: value}


def collect(dataset: str, folds: list[int], generators: list[str], runs: Path) -> dict:
    """Per row: fold values (mean over student seeds), within-fold std, val-selected, collapsed; generator figures."""
    from gfkd.layout import MANIFEST
    rows: dict[str, dict] = {}

    def add(row: str, fold: int, vals, extra: dict | None = None):
        if vals is None:
            return
        r = rows.setdefault(row, {k: {} for k in FIELDS})
        for key, v in zip(FIELDS, vals):
            r[key][fold] = v
        if extra:
            r["gen"][fold] = extra

    for fold in folds:
        root = runs / f"{dataset.lower()}-fold{fold}"
        tm = _load(root / "teacher" / MANIFEST)
        if tm is None:
            continue
        m = tm["metrics"]
        add("majority class", fold, (m["teacher/test/majority_acc"], 0.0, float("nan"), 0, 0))
        add("teacher", fold, (m["teacher/test/acc"], 0.0, float("nan"), None, 1))  # its collapse is not measured
        for gen in generators:
            gm = _load(root / gen / "generate" / MANIFEST)
            if gm is None:
                continue
            res = _load(root / gen / "distill" / "results.json")  # absent where --plain-only skipped it
            if res is not None:
                recs = res["records"]
                if gen == generators[0]:
                    add("student (real data)", fold, _fold_values(recs, "student_real"))
                    add("KD (real data)", fold, _fold_values(recs, "kd_real"))
                add(row_name(gen), fold, _fold_values(recs, "pseudo"), _bank_figures(gm, res))
            plain = _load(root / plain_folder(gen) / "distill" / "results.json")
            if plain is not None:  # the same banks, protocol.md §6's recipe for the baselines
                add(f"{row_name(gen)}, plain recipe", fold, _fold_values(plain["records"], "pseudo"))
        for gdir in sorted(root.glob("acgkd-group-*")):
            grp = _load(gdir / "group" / "results.json")
            if grp is None:
                continue
            method = group_label(gdir.name)
            n = grp["numbers"]
            k = sum(1 for key in n if re.fullmatch(r"acc_student\d+", key))  # not `_last`, `_val_selected`
            accs = [n[f"acc_student{i}"] for i in range(k)]
            add(f"group {method}: mean over students", fold,
                (float(np.mean(accs)), float(np.std(accs)), n.get("acc_mean_val_selected", float("nan")),
                 int(n["collapsed"]), k))
            for part, key in (("picked student", "picked"), ("ensemble", "ensemble")):  # collapse: None where the
                c = n.get(f"collapsed_{key}")  # group ran before it was recorded (2026-12-06)
                add(f"group {method}: {part}", fold, (n[f"acc_{key}"], 0.0, n.get(f"acc_{key}_val_selected",
                                                                                 float("nan")),
                                                      None if c is None else int(c), 1))
        for name in [*ABLATIONS, *GEN_ABLATIONS]:
            folder = root / ablation_folder(name)
            res = _load(folder / "distill" / "results.json")
            if res is not None:
                gm = _load(folder / "generate" / MANIFEST)  # GEN_ABLATIONS: its own banks
                add(row_name(folder.name), fold, _fold_values(res["records"], "pseudo"), gm and _bank_figures(gm, res))
    return rows


def row_name(folder: str) -> str:
    """The row of a cell folder's students: a generator's, as the evaluate report names it ("randg" → "RandG",
    "deepinvg" → "DeepInvG"), or an ablation's ("acgkd-held-density" → "ACGKD, held density"); an unknown folder
    keeps its name."""
    from gfkd.stages.evaluate import GENERATOR_ROWS

    names = {**GENERATOR_ROWS, "deepinv": GENERATOR_ROWS["deepinvg"],  # the alias of gfkd/stages/chunks.py
             **{ablation_folder(n): f"ACGKD, {n}" for n in [*ABLATIONS, *GEN_ABLATIONS]}}
    return names.get(folder, folder)


def _bank_figures(gm: dict, res: dict) -> dict:
    """A generator row's bank figures for one fold, from its generate manifest and distill results."""
    g = gm["metrics"]
    return {"wall_s": g["generate/time/wall_s"], "agreement": g.get("generate/quality/teacher_agreement"),
            "density": g["generate/quality/edge_density_mean"],
            "real_density": g["generate/quality/real_edge_density_mean"],
            "graphs": g["generate/quality/num_graphs"], "params": g["generate/params/pseudo_graph"],
            "seed_agreement": res["summary"].get("distill/test/seed_agreement")}


def _fold_keys(row: dict) -> dict:
    """A stored row with int fold keys (JSON made them strings) and `source` as a list of run indices."""
    row = {k: ({int(f): v for f, v in row[k].items()} if k in FIELDS else row[k]) for k in row}
    row["source"] = row["source"] if isinstance(row.get("source"), list) else [row.get("source", 0)]
    return row


TIE = 1e-6  # fold accuracies are float32 fractions: two that differ by less are the same number


def runs_dir(cmd: str) -> str | None:
    """The `--runs` folder named in a recorded command (its first one: the collecting command's), else None."""
    m = re.search(r"--runs\s+([^\s`]+)", cmd)
    return m.group(1) if m else None


def cmd_folds(cmd: str) -> set[int] | None:
    """The folds a recorded command collected (its first `--folds`), or None when it names none (every fold)."""
    m = re.search(r"--folds\s+([\d,-]+)", cmd)
    return set(_folds(m.group(1))) if m else None


def note_folds(note: dict) -> set[int]:
    """The folds a stored rerun note is about ("folds 0-9 rerun: ...", "folds 1,2 rerun: ...")."""
    m = re.match(r"folds ([\d,-]+) rerun", note["text"])
    return set(_folds(m.group(1))) if m else set()


def merge_rows(stored: dict, fresh: dict, source: int, commands: list[str] = (),
               reruns: list[dict] = ()) -> tuple[dict, list[dict]]:
    """Rows of one dataset: those stored in docs/results.json (`source`: indices into the section's commands) and
    those just collected (run `source`), merged fold by fold. A fold the new run also has takes the new value; when
    the run repeats folds already stored, a note says whether their values came out the same. A new row that only
    repeats stored folds with the same values changes nothing but the note. Collecting again, with the same values,
    folds that a row's run or its stored rerun notes (`reruns`) already collected from the same runs folder is not a
    rerun: no note (`commands` names the folders and folds). Returns the rows and the notes."""
    rows = {name: _fold_keys(r) for name, r in stored.items()}
    notes = []
    for name, r in fresh.items():
        old = rows.get(name)
        if old is None:
            rows[name] = dict(r, source=[source])
            continue
        common = sorted(set(old["folds"]) & set(r["folds"]))
        diff = [abs(r["folds"][f] - old["folds"][f]) for f in common]
        same = max(diff, default=1) <= TIE
        folder = runs_dir(commands[source]) if len(commands) > source else None
        seen = [*old["source"], *(n["source"] for n in reruns if n["row"] == name)]
        collected = [cmd_folds(commands[i]) for i in seen if folder is not None and runs_dir(commands[i]) == folder]
        recollected = same and bool(collected) and (
            None in collected or set(common) <= set().union(*collected))  # the same folds of the same folder
        if common and not recollected:
            changed = [d for d in diff if d > TIE]
            notes.append({"row": name, "source": source, "old": old["source"], "text": (
                f"folds {_span(common)} rerun: " + ("the same value on every fold" if not changed else
                f"{len(changed)} of {len(common)} folds changed, by up to {max(diff):.3f} (mean "
                f"{np.mean(diff):.3f}); the table has the new values"))})
        if set(r["folds"]) <= set(old["folds"]) and same:
            old["gen"] = {**r["gen"], **old["gen"]}  # bank figures a row stored before it kept them: filled in
            continue
        merged = {k: {**old[k], **r[k]} for k in FIELDS}
        kept = set(old["folds"]) - set(r["folds"])  # folds only the stored runs made; recollected ones are theirs too
        rows[name] = dict(merged, source=sorted(({*old["source"]} if kept or recollected else set()) | {source}))
    return rows, notes


def _collapsed(row: dict) -> str:
    """`collapsed / students` over the folds that recorded it (the teacher's is not measured, and a group's picked
    student and ensemble were not recorded before 2026-12-06: None); "—" for the majority class."""
    if not any(row["students"].values()):  # the majority class: one class by definition
        return "—"
    known = [f for f, c in row["collapsed"].items() if c is not None]
    if not known:
        return "not recorded"
    text = f"{sum(row['collapsed'][f] for f in known)} / {sum(row['students'][f] for f in known)}"
    missing = len(row["collapsed"]) - len(known)
    return text + (f" (not recorded on {missing} fold{'s' if missing > 1 else ''})" if missing else "")


def _span(folds: list[int]) -> str:
    return f"{folds[0]}-{folds[-1]}" if folds == list(range(folds[0], folds[-1] + 1)) and len(folds) > 2 else \
        ",".join(map(str, folds))


def add_run(section: dict | None, fresh: dict, cmd: str) -> dict:
    """A dataset's stored section with the rows of run `cmd` merged in; commands that no row or note refers to any
    more are dropped and the rest renumbered."""
    section = section or {"commands": [], "rows": {}, "reruns": []}
    commands = list(section["commands"])
    if cmd not in commands:
        commands.append(cmd)
    rows, notes = merge_rows(section["rows"], fresh, commands.index(cmd), commands,
                             section.get("reruns", []))
    # a new note replaces a row's old notes on folds it all covers; notes on other folds too (a rerun of folds 0-9
    # when folds 0,1 are rerun again), and a re-collected row's, stay
    notes = [n for n in section.get("reruns", [])
             if not any(m["row"] == n["row"] and note_folds(n) <= note_folds(m) for m in notes)] + notes
    used = sorted({i for r in rows.values() for i in r["source"]} | {n["source"] for n in notes}
                  | {i for n in notes for i in n.get("old", [])})
    index = {old: new for new, old in enumerate(used)}
    for r in rows.values():
        r["source"] = [index[i] for i in r["source"]]
    for n in notes:
        n["source"], n["old"] = index[n["source"]], [index[i] for i in n.get("old", [])]
    return {"commands": [commands[i] for i in used], "rows": rows, "reruns": notes}


def _pm(values: list[float]) -> str:
    v = np.array(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else "—"


def paired(rows: dict, a: str, b: str) -> str:
    if a not in rows or b not in rows:
        return "—"
    common = sorted(set(rows[a]["folds"]) & set(rows[b]["folds"]))
    d = np.array([rows[a]["folds"][f] - rows[b]["folds"][f] for f in common])
    if not len(d):
        return "—"
    ties = int((abs(d) <= TIE).sum())
    return (f"{d.mean():+.3f} ± {d.std():.3f} ({int((d > TIE).sum())} of {len(d)} folds positive"
            + (f", {ties} level)" if ties else ")"))


def _mean(rows: dict, name: str) -> float | None:
    return float(np.mean(list(rows[name]["folds"].values()))) if name in rows and rows[name]["folds"] else None


def _paired_mean(rows: dict, a: str, b: str, key: str = "folds") -> float | None:
    """Mean over the folds both rows ran of a − b: the primary numbers (`folds`) or the val-selected ones
    (`val_sel`, folds without one left out)."""
    if a not in rows or b not in rows:
        return None
    va, vb = rows[a][key], rows[b][key]
    common = sorted(f for f in set(va) & set(vb) if not (np.isnan(va[f]) or np.isnan(vb[f])))
    return float(np.mean([va[f] - vb[f] for f in common])) if common else None


def _reading(d: float, least: float) -> str:
    """'met (+4.2 points)' or 'missed (…)': a paired difference `d` (a fraction) against the least that meets it."""
    return f"{'met' if d >= least else 'missed'} ({d * 100:+.1f} points)"


def data_free_group(row: str) -> bool:
    """A group row trained on pseudo-graphs (`group_label`'s "-real" groups say "with data")."""
    return row.startswith("group ") and "with data" not in row


def targets(rows: dict) -> list[str]:
    """Each target with the measured figure and met / missed (by how much), on the folds both rows ran."""
    out = []
    d = _paired_mean(rows, "ACGKD", "RandG")
    out.append("- ACGKD ≥ RandG + 5 points: " + ("not run" if d is None else _reading(d, 0.05)))
    d = _paired_mean(rows, "ACGKD", "RandG, plain recipe")
    if d is not None:  # protocol.md §6's RandG: the plain KD recipe on the same random graphs
        out.append(f"- ACGKD ≥ RandG + 5 points, RandG with the plain KD recipe (protocol.md §6): {_reading(d, 0.05)}")
    d = _paired_mean(rows, "ACGKD", "GFKD")
    out.append("- ACGKD not below GFKD: " + ("not run (GFKD was not generated in this benchmark)" if d is None else
                                             _reading(d, 0.0)))
    d = _paired_mean(rows, "ACGKD", "GFKD, plain recipe")
    if d is not None:  # protocol.md §6's GFKD: the plain KD recipe on the same GFKD banks
        out.append(f"- ACGKD not below GFKD, GFKD with the plain KD recipe (protocol.md §6): {_reading(d, 0.0)}")
    d = _paired_mean(rows, "ACGKD", "KD (real data)")
    out.append("- ACGKD within 3 points of KD (real data): " + ("not run" if d is None else _reading(d, -0.03)))
    d = _paired_mean(rows, "ACGKD", "ACGKD, plain recipe", "val_sel")  # acgkd.md §8 judges on val-selected
    last = _paired_mean(rows, "ACGKD", "ACGKD, plain recipe")
    out.append("- distill.recipe = acgkd stays the default while level with plain (val-selected paired mean ≥ −1 "
               "point): " + ("not run" if d is None else
                             f"{'level or better, default kept' if d >= -0.01 else 'below: the default should become plain'}"
                             f" ({d * 100:+.1f} points val-selected; {last * 100:+.1f} at the last epoch)"))
    for name in [n for n in rows if data_free_group(n) and n.endswith(": ensemble")]:
        d = _paired_mean(rows, name, single_student(name))
        out.append(f"- {name.removesuffix(': ensemble')} ensemble ≥ the single distilled student (issue 5): "
                   + ("not run" if d is None else _reading(d, 0.0)))
    return out


def without_ran_with(argv: list[str]) -> list[str]:
    """argv less `--ran-with X` and `--ran-with=X`, which a report names on its own."""
    out, skip = [], False
    for a in argv:
        if skip or a.startswith("--ran-with="):
            skip = False
            continue
        skip = a == "--ran-with"
        if not skip:
            out.append(a)
    return out


def command_line(args, wall: float | None) -> str:
    """This invocation as it is recorded beside the rows it produced."""
    argv = without_ran_with(sys.argv[1:])  # the producing command is printed on its own line
    cmd = "`python benchmarks/distill.py " + shlex.join(argv) + "`"  # quoted: a name with spaces stays one argument
    if args.ran_with:
        cmd += f", cells produced by: `{args.ran_with}`"
    if wall is not None:  # the cells were made here: say where, so a cell that moves on another machine can be told
        from gfkd.versions import cpu_kernels, cpu_model, versions_line

        cmd += (f" (wall time {wall / 60:.1f} min, {args.jobs} cell{'s' if args.jobs > 1 else ''} at a time; "
                f"{versions_line()}, CPU {cpu_model()}, kernels {cpu_kernels()})")
    return cmd


def _shown(path: Path) -> str:
    """A path as the docs name it: relative to the repository where it lies inside, else as given."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


PROTOCOL_ROWS = [  # protocol.md §6's rows: (its name, this table's row that holds it, how to run it)
    ("student (real data)", "student (real data)", "without `distill.baselines=[]`"),
    ("KD (real data)", "KD (real data)", "without `distill.baselines=[]`"),
    ("RandG", "RandG, plain recipe", "`--generators randg --plain-baselines`"),
    ("DeepInvG", "DeepInvG, plain recipe", "`--generators deepinvg --plain-baselines`"),
    ("GFKD", "GFKD, plain recipe", "`--generators gfkd --plain-baselines`"),
    ("GFKD (fair)", None, "not in this script: `gfkd run generate.method=gfkd generate.gfkd.fair=true` per fold"),
    ("ACGKD", "ACGKD", "`--generators acgkd`"),
    ("ACGKD (teacher alone)", "ACGKD, running BN targets", "`--on-banks 'running BN targets'`"),
    ("OAD group", "group ", "`--on-banks group`"),
]


def missing_rows(rows: dict) -> list[str]:
    """protocol.md §6's rows this table lacks, each with how to run it (§6: no row is dropped silently)."""
    def have(row: str | None) -> bool:  # "group ": a data-free group on the default banks (no ", on the ... banks")
        if row == "group ":
            return any(data_free_group(n) and ", on the " not in n for n in rows)
        return row is not None and row in rows

    return [f"{name} ({how})" for name, row, how in PROTOCOL_ROWS if not have(row)]


def render(sections: dict, store: Path = REPO / "docs" / "results.json") -> str:
    """docs/results.md from {dataset: {"commands": [...], "rows": {...}, "reruns": [...]}} stored in `store`."""
    import torch
    import torch_geometric

    out = ["# Distill results: data-free students against the real-data rows", "",
           f"Written by `benchmarks/distill.py` from {_shown(store)}; do not edit by hand. Each dataset's runs are "
           "listed under its heading and each row names the runs its folds come from: a new run adds or replaces "
           "folds and keeps the rest.", "",
           f"CPU ({platform.machine()}, {os.cpu_count()} cores, one thread per cell), float32, torch "
           f"{torch.__version__}, PyG {torch_geometric.__version__}. "
           "Protocol B (10-fold stratified CV, protocol.md §3) on the folds listed per row. A fold's value is the mean "
           "over its student seeds (distill.seeds); a cell is the mean ± std over folds, with the mean within-fold "
           "(student-seed) std beside it. Data-free rows: last epoch (primary; no real label used), and the "
           "val-selected number (secondary, uses real validation labels). Real-data rows: val-selected. Collapsed = a "
           "student (a group's picked student, its ensemble) predicting one class for ≥ 95 % of the test fold; "
           "\"not recorded\" where that was not measured (the teacher; a group's picked student and ensemble before "
           "2026-12-06).", ""]
    for ds, sec in sections.items():
        rows = sec["rows"]
        out += [f"## {ds}", "", "Runs:", ""] + [f"{i + 1}. {c}" for i, c in enumerate(sec["commands"])] + [""]
        out += ["| row | test acc | folds | within-fold std | val-selected | collapsed / students | run |",
                "|---|---|---|---|---|---|---|"]
        for name, r in rows.items():
            vals = list(r["folds"].values())
            vs = [v for v in r["val_sel"].values() if not np.isnan(v)]
            runs = ", ".join(str(i + 1) for i in r["source"])
            out.append(f"| {name} | {_pm(vals)} | {len(vals)} | {np.mean(list(r['within_std'].values())):.3f} | "
                       f"{_pm(vs) if vs else '—'} | {_collapsed(r)} | "
                       f"[{runs}] |")
        out += ["", "protocol.md §6's RandG, DeepInvG and GFKD rows are the plain-recipe rows; the rows named RandG and "
                "GFKD alone are the ACGKD recipe on the same banks. Not run in this table: "
                + ("; ".join(missing_rows(rows)) or "none") + "."]
        if sec.get("reruns"):
            out += ["", "Reruns of stored rows (same code path, seeds and folds):", ""]
            out += [f"- {n['row']} (stored from run [{', '.join(str(i + 1) for i in n['old'])}]): {n['text']} "
                    f"(run [{n['source'] + 1}])" for n in sec["reruns"]]
        out += ["", "Paired per-fold differences (mean ± std over the folds both rows ran):", ""]
        pairs = [(a, single_student(a)) for a in rows if a.startswith("group ") and a.endswith(": ensemble")]
        pairs += [("ACGKD", "RandG"), ("ACGKD", "RandG, plain recipe"), ("ACGKD", "GFKD"),
                  ("ACGKD", "GFKD, plain recipe"), ("ACGKD", "KD (real data)")]
        pairs += [("ACGKD", a) for a in rows if a.startswith("ACGKD, ")]
        for a, b in pairs:
            if a in rows and b in rows:
                out.append(f"- {a} − {b}: {paired(rows, a, b)}")
        out += ["", "Targets (issue 4; acgkd.md §8), read off the rows above:", ""] + targets(rows)
        gens = [(n, dict(r, gen=list(r["gen"].values()))) for n, r in rows.items() if r["gen"]]
        if gens:
            out += ["", "| generator | pseudo-graphs | generation wall s (mean over folds) | teacher agreement | "
                    "density (real; both means over folds) | pseudo-graph params | student seed agreement |",
                    "|---|---|---|---|---|---|---|"]
            for n, r in gens:
                g = r["gen"]
                agree = [x["agreement"] for x in g if x["agreement"] is not None]
                out.append(f"| {n} | {int(g[0]['graphs'])} | {np.mean([x['wall_s'] for x in g]):.1f} | "
                           f"{f'{np.mean(agree):.3f}' if agree else '— (labels are teacher argmax)'} | "
                           f"{np.mean([x['density'] for x in g]):.3f} ({np.mean([x['real_density'] for x in g]):.3f}) | "
                           f"{int(np.mean([x['params'] for x in g]))} | "
                           f"{np.mean([x['seed_agreement'] for x in g]):.3f} |")
        out.append("")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["MUTAG"])
    p.add_argument("--folds", default="0-9", help="e.g. 0-9 or 0,3,5")
    p.add_argument("--generators", nargs="+", default=["acgkd", "randg", "gfkd"])
    p.add_argument("--ablations", nargs="*", default=[], help="datasets that also run the recipe ablations")
    p.add_argument("--ablation-set", nargs="*", default=list(ABLATIONS), choices=[*ABLATIONS, *GEN_ABLATIONS],
                   help="which ablations (names of ABLATIONS, distill only; or of GEN_ABLATIONS, new banks too)")
    p.add_argument("--runs", type=Path, default=Path("/tmp/distill-runs"))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--extra", nargs="*", default=[], help="key=value overrides for every run")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results.md")
    p.add_argument("--report-only", action="store_true", help="only aggregate what is on disk")
    p.add_argument("--plain-baselines", action="store_true",
                   help="also train every generator's students but ACGKD's with the plain KD recipe (protocol.md §6) "
                        "on the same banks: rows '<generator>, plain recipe'")
    p.add_argument("--plain-only", action="store_true",
                   help="as --plain-baselines, but skip those generators' ACGKD-recipe students (their banks are "
                        "still made): for adding the plain rows beside stored ones (check that the teachers' row repeats)")
    p.add_argument("--on-banks", nargs="*", default=[], choices=["group", *ABLATIONS, *GEN_ABLATIONS],
                   help="run the group stage and/or ablations on the finished cells' teacher and ACGKD banks (read "
                   "from disk; a generate ablation makes its own banks from that teacher)")
    p.add_argument("--banks", default="", choices=["", *GEN_ABLATIONS],
                   help="with --on-banks group: train the group on this generate ablation's banks instead")
    p.add_argument("--ran-with", default="", help="with --report-only: the command that produced the cells")
    p.add_argument("--render-only", action="store_true", help="rewrite the Markdown from the JSON; collect nothing")
    args = p.parse_args()
    if args.banks and args.on_banks != ["group"]:
        p.error("--banks reads a generate ablation's banks for the group stage only: use it with --on-banks group")
    if args.render_only:
        store = args.out.with_suffix(".json")
        _write(args.out, render(json.loads(store.read_text()), store))
        print(args.out)
        return
    _run(args)  # temp files (PyG's templates, the workers') go to the private folder set up at the top


def _write(path: Path, text: str) -> None:
    from gfkd.io.atomic import write_atomic

    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def _run(args: argparse.Namespace) -> None:
    """Run the cells (unless --report-only), collect them and merge them into the store and its Markdown."""
    store = args.out.with_suffix(".json")
    folds = _folds(args.folds)
    t0 = time.perf_counter()
    if args.on_banks and not args.report_only:
        with ProcessPoolExecutor(args.jobs) as pool:
            cells = [(ds, f, str(args.runs), args.extra, args.on_banks, args.banks)
                     for f in folds for ds in args.datasets]
            for root in pool.map(run_on_banks, *zip(*cells)):
                print("done on banks", root, flush=True)
    elif not args.report_only:
        cells = [(ds, f) for f in folds for ds in args.datasets]
        with ProcessPoolExecutor(args.jobs) as pool:
            futs = [pool.submit(run_cell, ds, f, args.generators, args.ablation_set if ds in args.ablations else [],
                                 str(args.runs), args.extra, args.plain_baselines, args.plain_only)
                    for ds, f in cells]
            for fut in futs:
                print("done", fut.result(), flush=True)
    sections = json.loads(store.read_text()) if store.is_file() else {}
    cmd = command_line(args, None if args.report_only else time.perf_counter() - t0)
    for ds in args.datasets:
        fresh = collect(ds, folds, args.generators, args.runs)
        if args.on_banks and not args.report_only:  # only the rows this run made, not the cells it read
            fresh = {n: r for n, r in fresh.items() if (n.startswith("group ") and "group" in args.on_banks)
                     or n.removeprefix("ACGKD, ") in args.on_banks}
        if fresh:
            sections[ds] = add_run(sections.get(ds), fresh, cmd)
    _write(store, json.dumps(sections, indent=1, default=float))
    _write(args.out, render(sections, store))
    print(args.out)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
