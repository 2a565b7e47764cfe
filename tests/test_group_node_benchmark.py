"""benchmarks/group_node.py's λ_G re-tuning (oad.md §2): λ_G is chosen on validation, never on test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("group_node_benchmark", REPO / "benchmarks" / "group_node.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _run(method: str, seed: int, val: float, test: float) -> dict:
    return {"dataset": "Cora", "backbone": "gcn", "method": method, "seed": seed,
            "report": {"mean_students": test, "val_best_student": test, "ensemble": test, "val_mean_students": val,
                       "wall_s": 1.0}}


def test_lambda_is_chosen_on_validation_over_the_seeds_every_lambda_ran():
    avail = [_run("oad", 0, 0.70, 0.90), _run("oad", 1, 0.70, 0.90),  # best on test, not on validation
             _run("oad_lg0.3", 0, 0.80, 0.60), _run("oad_lg0.3", 1, 0.78, 0.62),
             _run("oad_lg0.1", 0, 0.75, 0.95), _run("oad_lg0.1", 1, 0.75, 0.95), _run("oad_lg0.1", 2, 0.99, 0.99)]
    lam, stats, seeds = bench.tuned(avail, [0.1, 0.3])
    assert seeds == [0, 1]
    assert lam == 0.3 and stats["mean_students"]["n"] == 2  # seed 2 did not run at every λ_G
    assert abs(stats["mean_students"]["mean"] - 0.61) < 1e-9
    assert bench.tuned(avail, []) is None


def test_the_table_shows_each_lambda_and_the_tuned_row():
    avail = [_run("oad", 0, 0.70, 0.80), _run("oad_lg0.3", 0, 0.72, 0.81), _run("independent", 0, 0.7, 0.79)]
    meta = {"commands": ["a", "b"], "device": "cpu", "settings": "s"}
    text = bench.render(avail, meta, ["Cora"], ["gcn"], ["oad", "independent"], [0.3])
    assert "| OAD, λ_G = 0.3 | 81.00" in text and "| OAD, λ_G tuned on validation (chose 0.3) | 81.00" in text
    assert "- command: `a`" in text and "- command, then: `b`" in text


def test_lambda_adv_sweep_has_its_own_rows_and_tuned_row():
    assert bench.sweep_of("oad_la0.1") == ("lambda_adv", 0.1) and bench.sweep_of("oad_lg0.3") == ("lambda_global", 0.3)
    assert bench.sweep_of("dml") is None and bench.sweep_name(0.1, "lambda_adv") == "oad_la0.1"
    avail = [_run("oad", 0, 0.70, 0.80), _run("oad_la0.1", 0, 0.75, 0.70), _run("oad_lg0.3", 0, 0.60, 0.90),
             _run("independent", 0, 0.7, 0.79)]
    lam, stats, _ = bench.tuned(avail, [0.1], "lambda_adv")
    assert lam == 0.1 and abs(stats["mean_students"]["mean"] - 0.70) < 1e-9  # chosen on validation, not test
    meta = {"commands": ["a"], "device": "cpu", "settings": "s"}
    text = bench.render(avail, meta, ["Cora"], ["gcn"], ["oad", "independent"], [0.3], [0.1])
    assert "| OAD, λ_adv = 0.1 | 70.00" in text and "| OAD, λ_adv tuned on validation (chose 0.1) | 70.00" in text
    assert "| OAD, λ_G tuned on validation (chose 1) | 80.00" in text
    assert "OAD with λ_adv tuned on validation (λ_adv = 0.1) against independent, both on seeds 0..0: -9.00 points" in text
    more = [*avail, _run("independent", 1, 0.7, 0.50)]  # a seed the sweep did not run: not in the comparison
    assert "both on seeds 0..0: -9.00 points" in bench.render(more, meta, ["Cora"], ["gcn"], ["oad", "independent"],
                                                              [0.3], [0.1])


def test_parity_reference_rows_compare_reference_oad_with_reference_independent_on_shared_seeds():
    assert bench.parity_of("ref_oad") == "oad" and bench.parity_of("oad") is None
    assert bench.label("ref_independent") == "independent students, parity reference"
    avail = [_run("oad", 0, 0.7, 0.80), _run("independent", 0, 0.7, 0.79),
             _run("ref_oad", 0, 0.7, 0.83), _run("ref_independent", 0, 0.7, 0.81),
             _run("ref_oad", 1, 0.7, 0.10)]  # seed 1 has no reference independent run: left out of the difference
    meta = {"commands": ["a"], "device": "cpu", "settings": "s"}
    text = bench.render(avail, meta, ["Cora"], ["gcn"], ["oad", "independent"], ref_methods=["oad", "independent"])
    assert "| OAD, parity reference | 46.50" in text and "| independent students, parity reference | 81.00" in text
    assert "OAD − independent, mean over students, seeds 0..0: +2.00 points → met" in text
    assert "parity reference" not in bench.render(avail[:2], meta, ["Cora"], ["gcn"], ["oad", "independent"])


def test_reference_settings_switch_every_parity_quirk():
    from gfkd.config import GroupConfig
    from gfkd.group.node import settings_from_config
    clean, ref = settings_from_config(GroupConfig()), settings_from_config(GroupConfig(parity="reference"))
    assert (ref.kl_scale, ref.d_out_relu, ref.gcn_student, ref.gat_self_loops) == ("reference", True, "reference", False)
    assert (clean.kl_scale, clean.d_out_relu, clean.gcn_student, clean.gat_self_loops) == ("batchmean", False, "clean", True)


def test_local_term_ablations_show_only_where_they_ran_paired_by_seed():
    meta = {"commands": ["a"], "device": "cpu", "settings": "s"}
    methods = list(bench.METHODS)
    base = [_run("oad", 0, 0.7, 0.80), _run("oad", 1, 0.7, 0.70), _run("oad_global", 0, 0.7, 0.82),
            _run("oad_global", 1, 0.7, 0.72), _run("independent", 0, 0.7, 0.79)]
    assert "graph-agnostic" not in bench.render(base, meta, ["Cora"], ["gcn"], methods)
    text = bench.render([*base, _run("oad_agnostic", 1, 0.7, 0.75)], meta, ["Cora"], ["gcn"], methods)
    assert "| OAD, graph-agnostic D (MLP per node) | 75.00" in text and "‖h" not in text
    assert "graph-agnostic D (MLP per node) − OAD, mean over students, paired on seeds 1..1: +5.00 points" in text
    assert "− OAD global only (λ_adv = 0), mean over students, paired on seeds 1..1: +3.00 points" in text


def test_global_on_all_rows_compare_with_independent_and_dml_on_all_nodes_paired_by_seed():
    assert bench.all_of("all_dml") == "dml" and bench.all_of("dml") is None
    assert bench.label("all_oad") == "OAD, KL on all nodes"
    meta = {"commands": ["a"], "device": "cpu", "settings": "s"}
    avail = [_run("oad", 0, 0.7, 0.80), _run("independent", 0, 0.7, 0.79), _run("dml", 0, 0.7, 0.81),
             _run("all_oad", 0, 0.7, 0.815), _run("all_dml", 0, 0.7, 0.80),
             _run("all_oad", 1, 0.7, 0.10)]  # seed 1 ran only all_oad: left out of every difference
    text = bench.render(avail, meta, ["Cora"], ["gcn"], ["oad", "independent", "dml"], all_methods=["oad", "dml"])
    assert "| OAD, KL on all nodes | 45.75" in text and "| DML, KL on all nodes | 80.00" in text
    assert "- OAD, KL on all nodes − independent students, mean over students, paired on seeds 0..0: +2.50 points → met" in text
    assert "- OAD, KL on all nodes − DML, KL on all nodes, mean over students, paired on seeds 0..0: +1.50 points → met" in text
    assert "- OAD, KL on all nodes − OAD, mean over students, paired on seeds 0..0: +1.50 points\n" in text
    assert "- DML, KL on all nodes − DML, mean over students, paired on seeds 0..0: -1.00 points\n" in text
    assert "all nodes" not in bench.render(avail[:3], meta, ["Cora"], ["gcn"], ["oad", "independent", "dml"])


def test_schedule_ablations_are_rows_paired_with_oad_and_independent():
    assert bench.label("oad_w0") == "OAD, no warm-up (W = 0)" and bench.label("oad_k6") == "OAD, K = 6"
    assert bench.SCHEDULES["oad_k2"][1:] == ("oad", {"students": 2})
    assert bench.SCHEDULES["independent_w0"][1:] == ("independent", {"warmup_epochs": 0})
    meta = {"commands": ["a"], "device": "cpu", "settings": "s"}
    avail = [_run("oad", 0, 0.7, 0.80), _run("independent", 0, 0.7, 0.79), _run("oad_k2", 0, 0.7, 0.83)]
    text = bench.render(avail, meta, ["Cora"], ["gcn"], ["oad", "independent"], schedules=["oad_k2"])
    assert "| OAD, K = 2 | 83.00" in text
    assert "- OAD, K = 2 − OAD, mean over students, paired on seeds 0..0: +3.00 points\n" in text
    assert "- OAD, K = 2 − independent students, mean over students, paired on seeds 0..0: +4.00 points\n" in text
    assert "K = 2" not in bench.render(avail, meta, ["Cora"], ["gcn"], ["oad", "independent"])


def test_each_method_key_runs_with_its_own_settings():
    from gfkd.config import GroupConfig
    from gfkd.group.node import settings_from_config
    clean, ref = settings_from_config(GroupConfig()), settings_from_config(GroupConfig(parity="reference"))
    of = lambda m: bench.settings_of(m, clean, ref)  # noqa: E731
    assert of("dml") == clean.__class__(**{**clean.__dict__, "method": "dml"})
    assert (of("oad_lg0.3").method, of("oad_lg0.3").lambda_global) == ("oad", 0.3)
    assert (of("oad_la0.1").method, of("oad_la0.1").lambda_adv, of("oad_la0.1").lambda_global) == ("oad", 0.1, 1.0)
    assert of("ref_independent") == ref.__class__(**{**ref.__dict__, "method": "independent"})
    assert (of("all_dml").method, of("all_dml").global_on, clean.global_on) == ("dml", "all", "train")
    assert (of("oad_k6").method, of("oad_k6").students, of("oad_w0").warmup_epochs) == ("oad", 6, 0)
    assert of("oad_w0").epochs == clean.epochs and of("oad_k6").warmup_epochs == clean.warmup_epochs
    assert (of("independent_w0").method, of("independent_w0").warmup_epochs) == ("independent", 0)


def test_no_warm_up_is_also_paired_with_independent_students_trained_as_long():
    meta = {"commands": ["a"], "device": "cpu", "settings": "s"}
    avail = [_run("oad", 0, 0.7, 0.80), _run("independent", 0, 0.7, 0.79), _run("oad_w0", 0, 0.7, 0.70),
             _run("independent_w0", 0, 0.7, 0.75)]
    text = bench.render(avail, meta, ["Cora"], ["gcn"], ["oad", "independent"], schedules=["oad_w0", "independent_w0"])
    assert "| independent students, W = 0 (100 epochs in all) | 75.00" in text
    assert "- OAD, no warm-up (W = 0) − independent students, W = 0 (100 epochs in all), mean over students, paired on seeds 0..0: -5.00 points" in text
    assert "- independent students, W = 0 (100 epochs in all) − OAD," not in text  # the control is no OAD ablation
