"""gfkd/generators/base.py: the names of the files that sit beside a shard; the soft-target CE and draw score."""

import torch
import torch.nn.functional as F

from gfkd.generators.base import draw_score, sidecar_name, soft_targets, state_name, target_loss


def test_sidecars_are_named_after_their_shard_bank_and_chunk():
    assert state_name("shard-b02-c001.parquet") == "_state-b02-c001.pt"
    assert sidecar_name("shard-b02-c001.parquet", "time", ".json") == "_time-b02-c001.json"
    assert not sidecar_name("shard-b02-c001.parquet", "time", ".json").startswith("shard-")  # never globbed as a shard


def test_soft_targets_put_the_confidence_on_the_label_and_share_the_rest():
    y, c = torch.tensor([0, 2, 1]), torch.tensor([1.0, 0.5, 0.4])
    t = soft_targets(y, c, 3)
    assert torch.allclose(t, torch.tensor([[1.0, 0.0, 0.0], [0.25, 0.25, 0.5], [0.3, 0.4, 0.3]]))


def test_target_loss_is_hard_ce_at_confidence_one_and_is_lowest_where_the_teacher_gives_c():
    z, y = torch.randn(5, 2, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
    assert torch.allclose(target_loss(z, y, torch.ones(5, dtype=torch.float64)), F.cross_entropy(z, y))
    c = torch.tensor([0.6, 0.9, 0.5, 0.75, 0.99], dtype=torch.float64)
    at_c = torch.stack([torch.log(c), torch.log(1 - c)], 1)  # softmax = (c, 1 − c) on class 0 ...
    at_c = torch.where((y == 1).unsqueeze(1), at_c.flip(1), at_c)  # ... or on class 1: the label always gets c
    z_min = at_c.clone().requires_grad_()
    target_loss(z_min, y, c).backward()
    assert torch.allclose(z_min.grad, torch.zeros_like(z_min), atol=1e-12)  # the minimum: stationary there
    for shift in (-0.5, 0.5):  # and every other logit margin scores worse, graph by graph
        moved = at_c + torch.stack([torch.full((5,), shift), torch.zeros(5, dtype=torch.float64)], 1)
        assert torch.all(target_loss(moved, y, c, "none") > target_loss(at_c, y, c, "none"))


def test_draw_score_keeps_the_draw_nearest_the_confidence():
    y = torch.tensor([0, 0])
    near = torch.log(torch.tensor([[0.62, 0.38], [0.97, 0.03]]))  # a teacher at p = 0.62 and p = 0.97 on the label
    far = torch.log(torch.tensor([[0.95, 0.05], [0.7, 0.3]]))
    hard = draw_score(near, y) > draw_score(far, y)
    assert hard.tolist() == [False, True]  # hard targets: the more confident draw wins
    soft = draw_score(near, y, torch.tensor([0.6, 0.6])) > draw_score(far, y, torch.tensor([0.6, 0.6]))
    assert soft.tolist() == [True, False]  # c = 0.6: the draw nearer 0.6 wins


def test_the_learning_rate_decays_by_a_cosine_to_one_percent():
    """acgkd.md §3: cosine decay of the generator's lr to 1 % of its start."""
    import math

    import pytest

    from gfkd.generators.base import cosine_factor

    f = cosine_factor(100)
    assert f(0) == pytest.approx(1.0) and f(100) == pytest.approx(0.01) and f(150) == pytest.approx(0.01)
    assert f(50) == pytest.approx(0.505)  # halfway: the mean of the two ends
    assert f(25) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi / 4)))
