"""Temperature KD and the adversarial temperature (acgkd.md §9, §13.10)."""

import math

import pytest
import torch

from gfkd.losses.kd import (Temperature, calibrated_tau, class_balance_weights, grad_reverse, kd_kl,
                            mean_top_probability, ramp)


def test_kd_kl_is_zero_on_equal_logits_and_tau_squared_scaled():
    z = torch.randn(6, 3)
    assert kd_kl(z, z, 2.0).abs() < 1e-6
    zs = torch.randn(6, 3)
    manual = torch.nn.functional.kl_div(torch.log_softmax(zs / 3, -1), torch.softmax(z / 3, -1),
                                        reduction="batchmean") * 9
    assert torch.allclose(kd_kl(zs, z, 3.0), manual, atol=1e-6)
    w = torch.tensor([1.0, 0, 0, 0, 0, 0])
    assert torch.allclose(kd_kl(zs, z, 3.0, w), kd_kl(zs[:1], z[:1], 3.0), atol=1e-6)


def test_grad_reverse_negates_the_gradient_only():
    x = torch.tensor([1.5], requires_grad=True)
    y = grad_reverse(x) * 3
    y.backward()
    assert y.item() == 4.5 and x.grad.item() == -3.0


def test_ramp_starts_silent_and_reaches_full_strength():
    lams = [ramp(e, 1.0, 10) for e in range(15)]
    assert lams[0] == 0 and lams[10] == pytest.approx(1.0) and lams[14] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(lams, lams[1:]))


def _step(lam: float, mode: str = "global"):
    torch.manual_seed(0)
    temp = Temperature(mode, num_classes=3)
    opt = torch.optim.Adam(temp.parameters(), lr=0.01 * lam)
    z_s, z_t = torch.randn(8, 3), 3 * torch.randn(8, 3)
    before = kd_kl(z_s, z_t, temp(z_t, z_s)).item()
    t0 = [p.detach().clone() for p in temp.parameters()]
    for _ in range(20):
        opt.zero_grad()
        kd_kl(z_s, z_t, temp(z_t, z_s)).backward()
        opt.step()
    after = kd_kl(z_s, z_t, temp(z_t, z_s)).item()
    moved = any(not torch.equal(a, b) for a, b in zip(t0, temp.parameters()))
    return before, after, moved, temp


@pytest.mark.parametrize("mode", ["global", "instance"])
def test_temperature_moves_to_increase_the_kd_loss(mode):
    before, after, moved, temp = _step(1.0, mode)
    assert moved and after > before


def test_silent_adversary_leaves_t_unchanged():
    before, after, moved, _ = _step(0.0)
    assert not moved and after == before


def test_tau_starts_at_two_and_stays_in_range():
    temp = Temperature("global")
    assert temp.current() == pytest.approx(2.0)
    with torch.no_grad():
        temp.t.fill_(50.0)
    assert 1.0 < temp.current() <= 10.0
    assert Temperature("fixed", value=4.0).current() == 4.0
    assert Temperature("ctkd_paper").current() == pytest.approx(11.0)


def test_a_class_the_teacher_never_predicted_gets_the_largest_seen_weight_not_M_over_C():
    w = class_balance_weights(torch.tensor([0] * 90 + [1] * 10), 3)  # class 2 unseen: M/C would be 33
    assert torch.allclose(w, torch.tensor([100 / 270, 100 / 30, 100 / 30]))


def test_class_balance_weights_equalise_classes():
    w = class_balance_weights(torch.tensor([0, 0, 0, 1]), 2)
    assert torch.allclose(w, torch.tensor([4 / 6, 2.0]))
    assert math.isclose(float(w[torch.tensor([0, 0, 0, 1])].sum()), 4.0)


def test_prior_class_weights_give_each_class_its_prior_share_of_the_total_weight():
    pred = torch.tensor([0, 0, 0, 1])  # the teacher says class 0 for 3 of 4 graphs; the prior says 1 in 3
    w = class_balance_weights(pred, 2, torch.tensor([1, 2]))
    assert torch.allclose(w, torch.tensor([4 / 9, 8 / 3]))
    per_graph = w[pred]
    assert math.isclose(float(per_graph.sum()), 4.0, rel_tol=1e-6)  # mean weight 1 per graph
    assert math.isclose(float(per_graph[pred == 0].sum() / per_graph.sum()), 1 / 3, rel_tol=1e-6)
    assert torch.equal(class_balance_weights(pred, 2, torch.tensor([5, 5])), class_balance_weights(pred, 2))


def test_calibrated_tau_is_the_smallest_tau_that_brings_the_mean_top_probability_down_to_the_level():
    z = torch.tensor([[4.0, 0.0], [3.0, 0.0], [0.5, 0.0]])  # [M, C]: two confident graphs, one unsure
    assert mean_top_probability(z, 1e6) == pytest.approx(0.5, abs=1e-5)
    taus = [0.5, 1.0, 2.0, 4.0, 8.0]
    probs = [mean_top_probability(z, t) for t in taus]
    assert probs == sorted(probs, reverse=True)  # hotter, less sure
    tau = calibrated_tau(z, 0.7, 1.0, 10.0)
    assert 1.0 < tau < 10.0 and mean_top_probability(z, tau) == pytest.approx(0.7, abs=1e-9)
    assert mean_top_probability(z, tau * 0.99) > 0.7  # the smallest such τ
    assert calibrated_tau(z, 0.99, 2.0, 10.0) == 2.0  # already below the level at the low end
    assert calibrated_tau(z, 0.51, 2.0, 10.0) == 10.0  # not reachable: the high end
    with pytest.raises(ValueError, match="lo <= hi"):
        calibrated_tau(z, 0.7, 3.0, 2.0)


# acgkd.md §9 pinned by value (a mutation audit: each change below left every test passing)

@pytest.mark.parametrize("t", [-50.0, 0.0, 50.0])
def test_the_learnt_temperature_stays_inside_its_bounds_in_the_forward_pass(t):
    """τ = τ_min + τ_range·σ(t) ∈ (1, 10) at the defaults, in the forward pass the loss uses as in `current()`."""
    temp = Temperature("global")
    with torch.no_grad():
        temp.t.fill_(t)
    tau = float(temp(torch.zeros(3, 2), torch.zeros(3, 2)).detach())
    assert 1.0 <= tau <= 10.0 and tau == pytest.approx(temp.current())
    assert tau == pytest.approx(1.0 + 9.0 / (1 + math.exp(-t)))


def test_the_ramp_is_a_half_cosine():
    """λ_e = λ_max·(1 − cos(π·min(e, E_λ)/E_λ))/2."""
    assert ramp(5, 1.0, 10) == pytest.approx(0.5)
    assert ramp(2, 1.0, 10) == pytest.approx((1 - math.cos(0.2 * math.pi)) / 2)
    assert ramp(15, 3.0, 10) == pytest.approx(3.0)


def test_the_instance_temperature_starts_at_tau_init_for_every_graph():
    """The instance variant's MLP starts at t_0 = logit((τ_init − τ_min)/τ_range): τ = 2 for any input."""
    temp = Temperature("instance", num_classes=3)
    tau = temp(torch.randn(5, 3), torch.randn(5, 3))
    assert tau.shape == (5,) and torch.allclose(tau, torch.full((5,), 2.0))
