"""Seeded train/validation/test indices for the two protocols of protocol.md; the only place that defines 'test'.

- `holdout` (protocol A, GFKD parity): numpy RandomState(seed).permutation of the graphs; the first ⌊0.7·N⌋ form the
  training portion, the rest the test set; with `val=True` a stratified 1/7 of the training portion is held out for
  validation (the teacher trains on the other 6/7).
- `cv10` (protocol B): StratifiedKFold(10, shuffle=True, random_state=12345); fold i: test = fold i,
  validation = fold (i − 1) mod 10, train = the other 8 folds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

CV_SEED = 12345


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # [n_train] graph indices
    val: np.ndarray  # [n_val] (empty under holdout with val=False)
    test: np.ndarray  # [n_test]
    protocol: str
    fold_hash: str  # sha256 of the sorted index lists of the whole protocol (same for every method of a table)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _hash_lists(lists: list[np.ndarray]) -> str:
    text = ";".join(",".join(map(str, sorted(int(i) for i in idx))) for idx in lists)
    return hashlib.sha256(text.encode()).hexdigest()


def cv10_folds(labels: np.ndarray) -> list[np.ndarray]:
    """The 10 stratified test folds (scikit-learn semantics, random_state 12345)."""
    skf = StratifiedKFold(n_splits=10, shuffle=True, random_state=CV_SEED)
    return [test for _, test in skf.split(np.zeros(len(labels)), labels)]


def cv10_split(labels: np.ndarray, fold: int) -> Split:
    """Fold `fold` of protocol B: test = fold i, validation = fold i − 1 (mod 10), train = the other 8."""
    if not 0 <= fold < 10:
        raise ValueError(f"fold must be in 0..9, got {fold}")
    folds = cv10_folds(labels)
    test, val = folds[fold], folds[(fold - 1) % 10]
    train = np.sort(np.concatenate([f for i, f in enumerate(folds) if i not in (fold, (fold - 1) % 10)]))
    return Split(train=train, val=np.sort(val), test=np.sort(test), protocol="cv10", fold_hash=_hash_lists(folds))


def holdout_split(labels: np.ndarray, seed: int, val: bool = True) -> Split:
    """Protocol A: first ⌊0.7·N⌋ of a seeded permutation train, the rest test; optional stratified 1/7 validation."""
    n = len(labels)
    perm = np.random.RandomState(seed).permutation(n)
    n_train = int(np.floor(0.7 * n))
    portion, test = perm[:n_train], perm[n_train:]
    h = _hash_lists([portion, test])
    if not val:
        return Split(train=np.sort(portion), val=np.array([], dtype=np.int64), test=np.sort(test),
                     protocol="holdout", fold_hash=h)
    train, valid = train_test_split(portion, test_size=1 / 7, stratify=labels[portion], random_state=seed)
    return Split(train=np.sort(train), val=np.sort(valid), test=np.sort(test), protocol="holdout",
                 fold_hash=_hash_lists([train, valid, test]))


def make_split(labels: np.ndarray, protocol: str, fold: int = 0, seed: int = 0, val: bool = True) -> Split:
    """Dispatch on the protocol name (`cv10` or `holdout`)."""
    if protocol == "cv10":
        return cv10_split(labels, fold)
    return holdout_split(labels, seed, val)
