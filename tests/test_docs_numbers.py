"""The README's results table is copied by hand from docs/results.json (which benchmarks/distill.py writes): every
figure in it must be the one the stored fold values give, and every met / missed the one the targets give."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PLAIN_COLUMN = "RandG, plain recipe (protocol.md §6)"
COLUMNS = {"ACGKD": "ACGKD", "RandG, ACGKD recipe": "RandG", "GFKD, ACGKD recipe": "GFKD",
           "KD on real graphs": "KD (real data)"}
# target column -> (the row ACGKD is compared with, the least paired difference in points that meets it)
TARGETS = {"≥ RandG + 5": ("RandG", 5.0), "not below GFKD": ("GFKD", 0.0), "within 3 of KD": ("KD (real data)", -3.0)}
NUMBER = r"[+\-−]?\d+(?:\.\d+)?"
SIGNED = r"(?<![\d.])[+\-−]\d+\.\d+"  # a difference in points: +44.7, −0.6
# protocol.md §6's RandG (the plain KD recipe), where `benchmarks/distill.py --plain-baselines` measured it
PLAIN_STORES = {"MUTAG": "mutag-plain-baselines.json", "PTC_MR": "ptc-plain-baselines.json",
                "PROTEINS": "proteins-plain-baselines.json", "IMDB-BINARY": "imdb-plain-baselines.json"}
# protocol.md §1's teacher-alone row (generate.bn_target=running), where `--ablation-set` / `--on-banks 'running BN
# targets'` measured it
ALONE_COLUMN, ALONE_ROW = "ACGKD, teacher alone (protocol.md §1)", "ACGKD, running BN targets"
ALONE_STORES = {"MUTAG": "mutag-plain-baselines.json", "PTC_MR": "ptc-plain-baselines.json",
                "PROTEINS": "proteins-plain-baselines.json", "IMDB-BINARY": "imdb-plain-baselines.json"}
GFKD_PLAIN_COLUMN = "GFKD, plain recipe (protocol.md §6)"
GFKD_PLAIN_STORES = {"MUTAG": "mutag-plain-baselines.json", "PTC_MR": "ptc-plain-baselines.json"}


def _table() -> list[dict[str, str]]:
    """The README's 'Where the numbers stand' table, one dict per dataset row."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| dataset | folds | ACGKD"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


ROWS = _table()
STORE = json.loads((REPO / "docs" / "results.json").read_text())

def _stored(stores: dict[str, str], row: str) -> dict[str, dict]:
    """{dataset: `row` of its store under docs/benchmarks/}."""
    return {ds: json.loads((REPO / "docs" / "benchmarks" / f).read_text())[ds]["rows"][row] for ds, f in stores.items()}


PLAIN = _stored(PLAIN_STORES, "RandG, plain recipe")
GFKD_PLAIN = _stored(GFKD_PLAIN_STORES, "GFKD, plain recipe")
# the README columns read from a store of their own: all 10 folds where it ran, else "not run"
OWN_STORES = {PLAIN_COLUMN: (PLAIN, PLAIN_STORES), ALONE_COLUMN: (_stored(ALONE_STORES, ALONE_ROW), ALONE_STORES),
              GFKD_PLAIN_COLUMN: (GFKD_PLAIN, GFKD_PLAIN_STORES)}
# target column -> the plain-recipe row it reads against where that ran (protocol.md §6), else the ACGKD-recipe row
PLAIN_TARGETS = {"≥ RandG + 5": PLAIN, "not below GFKD": GFKD_PLAIN}


def _points(dataset: str, other: dict) -> tuple[float, int]:
    """ACGKD minus `other` (a stored row), in points, paired over the folds both ran; and how many."""
    a, b = STORE[dataset]["rows"]["ACGKD"]["folds"], other["folds"]
    common = sorted(set(a) & set(b))
    return 100 * float(np.mean([a[f] - b[f] for f in common])), len(common)


def _verdict(word: str, points: float, least: float, where: str) -> None:
    if word == "met":
        assert points >= least, f"{where}: reads met at {points:+.1f}"
    else:
        assert word == "missed" and points < least, f"{where}: reads {word} at {points:+.1f}"


def test_the_table_has_every_dataset_of_the_store():
    assert [r["dataset"] for r in ROWS] == list(STORE)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["dataset"])
def test_each_cell_is_the_stored_mean_and_std_over_its_folds(row):
    rows = STORE[row["dataset"]]["rows"]
    assert int(row["folds"].split()[0]) == len(rows["ACGKD"]["folds"])
    for column, name in COLUMNS.items():
        cell = row[column]
        if cell == "not run":
            assert name not in rows, f"{row['dataset']} {column}: the store has this row"
            continue
        folds = rows[name]["folds"]
        values = np.array(list(folds.values()))
        assert cell.split(" (")[0] == f"{values.mean():.3f} ± {values.std():.3f}", f"{row['dataset']} {column}"
        if len(folds) < len(rows["ACGKD"]["folds"]):  # a partial row names its folds
            lo, hi = min(map(int, folds)), max(map(int, folds))
            assert f"(folds {lo}–{hi})" in cell, f"{row['dataset']} {column}: name the folds {lo}–{hi}"
    for column, (stored, stores) in OWN_STORES.items():
        own, cell = stored.get(row["dataset"]), row[column]
        if own is None:
            assert cell == "not run", f"{row['dataset']} {column}: {stores} has no store for it"
            continue
        values = np.array(list(own["folds"].values()))
        figure = f"{values.mean():.3f} ± {values.std():.3f}"
        if len(values) == len(rows["ACGKD"]["folds"]):
            assert cell == figure, f"{row['dataset']} {column}: {cell!r}"
            continue
        lo, hi = min(map(int, own["folds"])), max(map(int, own["folds"]))  # a partial row names its folds
        assert sorted(map(int, own["folds"])) == list(range(lo, hi + 1)), f"{row['dataset']} {column}: not a span"
        assert cell == f"{figure} (folds {lo}–{hi})", f"{row['dataset']} {column}: {cell!r}"


@pytest.mark.parametrize("column", PLAIN_TARGETS)
@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["dataset"])
def test_baselines_read_against_the_plain_recipe_where_it_ran_and_the_acgkd_recipe_beside_it(row, column):
    """'met (+45.9; +44.7 against the ACGKD-recipe row)', 'missed (+0.2; met, +5.1, against ...)', or, where the
    plain recipe did not run, 'met (+23.4, against the ACGKD-recipe row)'."""
    ds, cell = row["dataset"], row[column]
    other, least = TARGETS[column]
    plain = PLAIN_TARGETS[column]
    if cell == "not run":
        assert other not in STORE[ds]["rows"] and ds not in plain, f"{ds} {column}: it ran"
        return
    recipe = _points(ds, STORE[ds]["rows"][other])[0]
    figures = [_number(x) for x in re.findall(SIGNED, cell)]
    primary = _points(ds, plain[ds])[0] if ds in plain else recipe
    assert figures and figures[0] == pytest.approx(round(primary, 1), abs=1e-9), f"{ds} {column}: {cell!r}"
    _verdict(cell.split()[0], primary, least, f"{ds} {column}")
    assert "against the ACGKD-recipe row" in cell, f"{ds} {column}: say which row the figures read against"
    assert figures[-1] == pytest.approx(round(recipe, 1), abs=1e-9), f"{ds} {column}: {cell!r}"
    second = re.search(r"; (met|missed),", cell)
    if second:
        _verdict(second.group(1), recipe, least, f"{ds} {column}, the ACGKD-recipe row")


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["dataset"])
def test_each_target_is_the_paired_difference_and_its_verdict(row):
    rows = STORE[row["dataset"]]["rows"]
    for column, (other, least) in TARGETS.items():
        if column in PLAIN_TARGETS:  # two rows, two recipes: the test above
            continue
        cell = row[column]
        if cell == "not run":
            assert other not in rows, f"{row['dataset']} {column}: the store has {other}"
            continue
        points, common = _points(row["dataset"], rows[other])
        figures = re.findall(NUMBER + r"(?=\)|\s+on\s)", cell)
        assert figures, f"{row['dataset']} {column}: no signed figure in {cell!r}"
        assert _number(figures[-1]) == pytest.approx(round(points, 1), abs=1e-9), f"{row['dataset']} {column}"
        _verdict(cell.split()[0], points, least, f"{row['dataset']} {column}")
        count = re.search(r"on (\d+) folds", cell)  # '+24.3 on 9 folds'
        if count:
            assert int(count.group(1)) == common, f"{row['dataset']} {column}: {common} folds"
