import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from gfkd.data.splits import cv10_folds, cv10_split, holdout_split

LABELS = np.array([0] * 63 + [1] * 125)  # MUTAG's class counts
np.random.RandomState(0).shuffle(LABELS)


def test_cv10_folds_disjoint_cover_and_stratified():
    folds = cv10_folds(LABELS)
    allidx = np.concatenate(folds)
    assert len(allidx) == len(LABELS) and len(set(allidx.tolist())) == len(LABELS)
    for f in folds:
        for c in (0, 1):
            ideal = (LABELS == c).sum() / 10
            assert abs((LABELS[f] == c).sum() - ideal) <= 1


@pytest.mark.parametrize("fold", range(10))
def test_cv10_fold_roles(fold):
    s = cv10_split(LABELS, fold)
    folds = cv10_folds(LABELS)
    assert set(s.test) == set(folds[fold]) and set(s.val) == set(folds[(fold - 1) % 10])
    assert not set(s.train) & set(s.val) and not set(s.train) & set(s.test) and not set(s.val) & set(s.test)
    assert len(s.train) + len(s.val) + len(s.test) == len(LABELS)
    assert s.fold_hash == cv10_split(LABELS, 0).fold_hash  # one hash for the whole protocol


def test_cv10_is_protocol_b_stratified_kfold_with_seed_12345():
    """protocol.md §2: the folds are StratifiedKFold(10, shuffle=True, random_state=12345)'s test folds, in order."""
    ref = [test for _, test in StratifiedKFold(10, shuffle=True, random_state=12345).split(np.zeros(len(LABELS)),
                                                                                            LABELS)]
    assert all(np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(cv10_folds(LABELS), ref, strict=True))
    a, b = cv10_split(LABELS, 3), cv10_split(LABELS, 3)
    assert np.array_equal(a.test, b.test) and np.array_equal(a.train, b.train)


def test_holdout_sizes_and_validation_inside_training_portion():
    s = holdout_split(LABELS, seed=0)
    assert len(s.train) + len(s.val) == 131 and len(s.test) == 57  # ⌊0.7·188⌋ / rest
    portion = np.random.RandomState(0).permutation(188)[:131]
    assert set(s.train) | set(s.val) == set(portion)
    assert not set(s.train) & set(s.val)
    assert len(s.val) == pytest.approx(131 / 7, abs=1)
    frac = LABELS[portion].mean()
    assert abs(LABELS[s.val].mean() - frac) <= 1 / len(s.val) + 1e-9  # stratified


def test_holdout_without_validation_and_seeds_differ():
    s = holdout_split(LABELS, seed=29, val=False)
    assert len(s.val) == 0 and len(s.train) == 131
    assert not np.array_equal(holdout_split(LABELS, 0).test, holdout_split(LABELS, 1).test)
    assert np.array_equal(holdout_split(LABELS, 4).val, holdout_split(LABELS, 4).val)
