"""benchmarks/sweep.py: protocol.md §4's generator sweep, chosen on seed agreement without reading a real graph."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sweep_benchmark", REPO / "benchmarks" / "sweep.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_spearman_ranks_ties_by_their_mean_and_skips_constant_sides():
    assert bench.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert bench.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties: x ranks 0, 1.5, 1.5, 3; y ranks 0, 1, 2, 3 → ρ = corr of those
    expect = np.corrcoef([0, 1.5, 1.5, 3], [0, 1, 2, 3])[0, 1]
    assert bench.spearman([1, 2, 2, 5], [1, 2, 3, 4]) == pytest.approx(expect)
    assert bench.spearman([1, 1, 1], [1, 2, 3]) is None and bench.spearman([1, 2], [1, 2]) is None


def test_seed_agreement_averages_every_pair_of_seeds():
    from gfkd.train import seed_agreement

    a, b, c = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), np.array([1, 1, 1, 1])
    assert seed_agreement([a, b, c]) == pytest.approx((0.75 + 0.5 + 0.75) / 3)
    assert seed_agreement([a]) == 1.0


def _row(seed_agreement: float, val: float, rejected: bool = False) -> dict:
    return {"seed_agreement": seed_agreement, "val_acc": val, "rejected": rejected, "bank_agreement": 0.9,
            "pool_teacher_agreement": 0.8}


def test_choose_skips_rejected_settings_and_never_reads_validation():
    folds = {0: {"1": _row(0.9, 0.5), "10": _row(0.95, 0.8, rejected=True), "30": _row(0.8, 0.9)},
             1: {"1": _row(0.7, 0.6), "10": _row(0.99, 0.7), "30": _row(0.75, 0.95)}}
    pick = bench.choose(folds, ["1", "10", "30"])
    assert pick["per_fold"] == {0: "1", 1: "10"}  # fold 0: "10" is rejected though its agreement is highest
    assert pick["rejected_folds"] == {"1": 0, "10": 1, "30": 0}
    assert pick["choice"] == "1"  # of the never-rejected "1" (0.80) and "30" (0.775); "10" (0.97) is out
    assert pick["val_best"] == ["30"]  # after the fact; the choice did not follow it
    # the validation column moves nothing: the same criteria with other validation accuracies choose the same
    flipped = {f: {v: {**r, "val_acc": 1 - r["val_acc"]} for v, r in rows.items()} for f, rows in folds.items()}
    assert bench.choose(flipped, ["1", "10", "30"])["choice"] == "1"
    every = {0: {"1": _row(0.9, 0.5, True), "3": _row(0.8, 0.5, True)}, 1: {"1": _row(0.9, 0.5, True),
                                                                            "3": _row(0.7, 0.5)}}
    pick = bench.choose(every, ["1", "3"])
    assert pick["choice"] == "3" and pick["per_fold"][0] is None  # all rejected somewhere: the fewest folds
    assert pick["seed_agreement_mean"] == {"1": None, "3": 0.7}  # over admissible folds only: not fold 0's 0.8
    nothing = {0: {"1": _row(0.9, 0.5, True), "3": _row(0.8, 0.5, True)}}
    assert bench.choose(nothing, ["1", "3"])["choice"] is None
    assert "no admissible setting" in bench.render({"dataset": "T", "key": "generate.x", "values": ["1", "3"],
                                                    "seeds": "3", "folds": {"0": {v: _full(r) for v, r in
                                                                                  nothing[0].items()}},
                                                    "command": "c", "made": "", "machine": "m", "json": "j"})


def _full(row: dict) -> dict:
    """A per-setting record with every column render reads."""
    return {**row, "over_fitted": row["rejected"], "pool_collapsed": 0, "pool_graphs": 10, "pool_top_share": [0.5],
            "teacher_pool_top_share": 0.5, "bank_density": 0.1, "real_density": 0.1, "test_acc": 0.5,
            "test_collapsed": 0, "students": 3}


def test_choose_reports_each_criterions_spearman_with_validation():
    folds = {f: {"a": _row(0.7, 0.6), "b": _row(0.8, 0.7), "c": _row(0.9, 0.8 + 0.01 * f)} for f in range(2)}
    rho = bench.choose(folds, ["a", "b", "c"])["spearman"]
    assert rho["seed_agreement"]["per_fold_mean"] == pytest.approx(1.0) and rho["seed_agreement"]["per_fold_n"] == 2
    assert rho["bank_agreement"]["pooled"] is None  # constant: no correlation to report


def test_a_tiny_sweep_runs_pools_the_other_settings_and_reads_no_real_graph(tmp_path, tiny_root, monkeypatch):
    extra = [f"data.root='{tiny_root}'", "data.download=false", "teacher.epochs=2", "teacher.model.layers=2",
             "teacher.model.hidden=8", "teacher.batch_size=8", "generate.banks=1", "generate.iterations=2",
             "distill.epochs=1", "distill.seeds=2", "distill.student.layers=2", "distill.student.hidden=8"]
    key, values = "generate.num_graphs", ["4", "6"]  # banks of different sizes: a pool's size names its banks
    bench.run_teacher("TINY", 0, str(tmp_path), extra)
    for v in values:
        bench.run_setting("TINY", 0, key, v, str(tmp_path), extra)
    cell = tmp_path / "tiny-fold0"
    assert {p.name for p in cell.iterdir()} == {"teacher", f"sweep-{key}=4", f"sweep-{key}=6"}

    def no_real_graphs(*a, **k):
        raise AssertionError("the sweep's figures opened a real dataset")

    for target in ("torch_geometric.datasets.TUDataset", "gfkd.data.datasets.load_tu",
                   "gfkd.stages.teacher.load_dataset"):
        monkeypatch.setattr(target, no_real_graphs)
    figures = bench.fold_figures(cell, key, values)
    sizes = {v: json.loads((cell / f"sweep-{key}={v}" / "generate" / "quality.json").read_text())["num_graphs"]
             for v in values}
    assert sizes == {"4": 4, "6": 6}
    for v, other in (("4", "6"), ("6", "4")):
        r = figures[v]
        assert r["pool_graphs"] == sizes[other]  # the pool is the other setting's bank, not its own
        assert r["students"] == 2 and len(r["pool_top_share"]) == 2 and 0 <= r["seed_agreement"] <= 1
        assert 0 <= r["val_acc"] <= 1 and r["rejected"] == bool(r["over_fitted"] or r["pool_collapsed"])
    store = {"dataset": "TINY", "key": key, "values": values, "seeds": 2, "folds": {0: figures}, "command": "x",
             "made": "", "machine": "m", "json": "s.json"}
    text = bench.render(json.loads(json.dumps(store)))
    assert f"seed agreement chooses `{key}=" in text and "| 0 | 6 |" in text
    # a setting whose students were never trained is an error naming it, not a perfect agreement of no seeds
    import shutil

    shutil.rmtree(cell / f"sweep-{key}=6" / "distill")
    with pytest.raises(bench.SweepError, match=f"sweep-{key}=6/distill: no finished stage"):
        bench.fold_figures(cell, key, values)


def test_a_non_generate_key_or_a_bad_value_is_a_one_line_error(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, str(REPO / "benchmarks" / "sweep.py"), *a, "--out",
                                     str(tmp_path / "s.md"), "--runs", str(tmp_path)], capture_output=True, text=True)
    r = run("--key", "distill.epochs", "--values", "1", "2")
    assert r.returncode == 2 and "generate.* key" in r.stderr
    r = run("--key", "generate.bn_first_weight", "--values", "1", "heavy")
    assert r.returncode == 2 and "bn_first_weight" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    r = run("--key", "generate.bn_first_weight", "--values", "1", "1.0")
    assert r.returncode == 2 and "give the same banks" in r.stderr and "Traceback" not in r.stderr
    r = run("--key", "generate.bn_first_weight", "--values", "3", "3")
    assert r.returncode == 2 and "repeats a value" in r.stderr
    r = run("--key", "generate.bn_first_weight", "--values", "1", "3", "--folds", "zero")
    assert r.returncode == 2 and "--folds 'zero'" in r.stderr
    assert not list(tmp_path.glob("*fold*"))  # nothing ran


def test_render_only_rewrites_the_page_from_its_json_without_key_or_values(tmp_path):
    store = {"dataset": "T", "key": "generate.x", "values": ["1", "3"], "seeds": "3", "command": "c", "made": "",
             "machine": "m", "json": "j", "folds": {"0": {"1": _full(_row(0.9, 0.6)), "3": _full(_row(0.8, 0.7))}}}
    (tmp_path / "s.json").write_text(json.dumps(store))
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sweep.py"), "--render-only", "--out",
                        str(tmp_path / "s.md")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "s.md").read_text()
    assert "seed agreement chooses `generate.x=1`" in text
    assert "best mean validation accuracy is at `generate.x=3`" in text
    assert "- seed agreement, 1 − 3: +0.1000 ± 0.0000 over 1 fold (ahead on 1)" in text
    # 0.1 + 0.2 is 0.30000000000000004: a tie all the same
    tied = {**store, "folds": {"0": {"1": _full(_row(0.9, 0.1 + 0.2)), "3": _full(_row(0.8, 0.3))}}}
    text = bench.render(tied)
    assert "at `generate.x=1` and `generate.x=3` (tied)" in text and "the same choice: yes" in text


PAGES = sorted((REPO / "docs" / "benchmarks").glob("sweep-*.json"))


@pytest.mark.parametrize("store", PAGES, ids=lambda p: p.name)
def test_each_sweep_page_is_its_json_rendered(store):
    """The pages under docs/benchmarks/ are written by render from their JSON, not by hand."""
    assert store.with_suffix(".md").read_text() == bench.render(json.loads(store.read_text()))


def test_the_readme_quotes_the_mutag_sweep_as_its_json_gives():
    store = json.loads((REPO / "docs" / "benchmarks" / "sweep-mutag-bn-first-weight.json").read_text())
    folds = {int(f): r for f, r in store["folds"].items()}
    pick = bench.choose(folds, store["values"])
    test = {v: np.mean([r[v]["test_acc"] for r in folds.values()]) for v in store["values"]}
    readme = " ".join((REPO / "README.md").read_text().split())
    (best,) = pick["val_best"]
    assert f"seed agreement, keeps {pick['choice']}" in readme
    assert f"validation accuracy would take {best} ({test[best]:.3f} on test against {pick['choice']}'s " \
           f"{test[pick['choice']]:.3f}; 1 scores {test['1']:.3f})" in readme
