"""gfkd/train.py: the collapse rule every report applies (protocol.md §4: one class for ≥ 95 % of a split)."""

import torch

from gfkd.train import COLLAPSED_SHARE, top_class_share


def test_a_model_is_collapsed_from_95_percent_of_the_graphs_in_one_class():
    assert COLLAPSED_SHARE == 0.95
    nineteen = torch.tensor([0] * 19 + [1])
    eighteen = torch.tensor([0] * 18 + [1, 1])
    assert top_class_share(nineteen) >= COLLAPSED_SHARE > top_class_share(eighteen)
    assert top_class_share(torch.tensor([], dtype=torch.long)) == 0.0
