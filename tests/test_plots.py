"""gfkd.plots: every function returns a Figure from tiny literal inputs, draws what it was given, and warns about nothing
(a panel whose keys were never logged, such as τ for a real-data student, gets no empty legend)."""

import warnings

import pytest
from matplotlib.figure import Figure

from gfkd import plots


@pytest.fixture(autouse=True)
def warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _lines(fig: Figure) -> list[int]:
    return [len(ax.lines) for ax in fig.axes]


def test_training_curve_marks_the_selected_epoch():
    history = [{"teacher/train/loss": 1.0, "teacher/val/loss": 1.2, "teacher/train/acc": 0.5, "teacher/val/acc": 0.4},
               {"teacher/train/loss": 0.5, "teacher/val/loss": 0.9, "teacher/train/acc": 0.8, "teacher/val/acc": 0.7}]
    fig = plots.training_curve(history, "teacher", best_epoch=1)
    assert _lines(fig) == [3, 3]  # train, val, the dashed selected epoch


def test_distill_curves_of_a_real_data_student_skip_the_empty_panel():
    history = [{"distill/train/loss": 1.0, "distill/val/acc": 0.6}, {"distill/train/loss": 0.7, "distill/val/acc": 0.7}]
    fig = plots.distill_curves(history)
    assert _lines(fig) == [1, 0, 1]
    assert [ax.get_legend() is not None for ax in fig.axes] == [True, False, True]


def test_group_curves_draw_every_logged_term():
    history = [{"group/train/kl": 0.3, "group/train/adv": 0.1, "group/val/acc_mean": 0.7, "group/test/acc_ensemble": 0.7}]
    assert _lines(plots.group_curves(history)) == [2, 2]
    assert _lines(plots.group_curves([{}])) == [0, 0]
    lengths = [{"group/train/adv": 3.0, "group/train/emb_norm": 25.0, "group/train/emb_norm_ratio": 1.1}]
    assert _lines(plots.group_curves(lengths)) == [1, 0, 1, 1]  # lengths on their own panel (and its twin axis)


def test_pseudo_graph_grid_draws_each_undirected_edge_once_and_every_node():
    graphs = [(3, [0, 1, 1, 2], [1, 0, 2, 1], [0, 1, 0]), (2, [], [], [2, 2])]
    fig = plots.pseudo_graph_grid(graphs, "banks")
    ax0, ax1 = fig.axes[:2]
    assert (len(ax0.lines), len(ax1.lines)) == (2, 0)  # 0-1 and 1-2, each stored in both directions
    assert [len(ax.collections[0].get_offsets()) for ax in (ax0, ax1)] == [3, 2]
    assert (ax0.get_title(), ax1.get_title()) == ("n=3, |E|=2", "n=2, |E|=0")
    directed = plots.pseudo_graph_grid([(3, [0, 1, 1], [1, 0, 2], [0, 1, 0])], "directed").axes[0]
    assert len(directed.lines) == 2 and directed.get_title() == "n=3, |E|=3"  # 0→1, 1→0, 1→2: three edges


def test_histograms_count_what_they_were_given():
    ax = plots.degree_histogram([1, 2, 2, 1], 1.5, "degrees").axes[0]
    assert sum(p.get_height() for p in ax.patches) == 4 and ax.lines[0].get_xdata()[0] == 1.5
    ax = plots.degree_comparison([1, 2, 3], [2, 2, 4]).axes[0]
    assert len(ax.containers) == 2  # real and pseudo, both normalised to 1
    assert [sum(p.get_height() for p in c) for c in ax.containers] == [pytest.approx(1.0), pytest.approx(1.0)]


def test_confusion_matrices_annotate_every_count():
    fig = plots.confusion_matrices({"a": [[3, 1], [0, 4]], "b": [[2, 2], [1, 3]]})
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in shown] == ["a", "b"]
    assert [t.get_text() for t in shown[0].texts] == ["3", "1", "0", "4"]


def test_accuracy_vs_time_places_each_model():
    ax = plots.accuracy_vs_time([("teacher", 10.0, 0.8), ("student", 3.0, 0.7)]).axes[0]
    assert [tuple(c.get_offsets()[0]) for c in ax.collections] == [(10.0, 0.8), (3.0, 0.7)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["teacher: 0.800, 10 s", "student: 0.700, 3 s"]
    assert not ax.texts  # no labels at the points: the group's three rows share one wall time and printed over each other
    assert len({(c.get_facecolor()[0][:3].tobytes(), c.get_paths()[0].vertices.tobytes()) for c in ax.collections}) == 2
