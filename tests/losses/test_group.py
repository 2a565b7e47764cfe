"""Group losses: virtual teacher, KL scaling, ring pairing, DML and KDCL-MinLogit (oad.md §10 items 2, 5, 7)."""

import pytest
import torch

from gfkd.losses import group as L


def test_peer_mean_teacher_excludes_self_and_is_detached():
    z = torch.tensor([[[1.0, 0.0]], [[3.0, 2.0]], [[5.0, -4.0]]], requires_grad=True)  # [K=3, V=1, C=2]
    t = L.peer_mean_teacher(z)
    assert torch.equal(t, torch.tensor([[[4.0, -1.0]], [[3.0, -2.0]], [[2.0, 1.0]]]))
    assert not t.requires_grad


def test_with_two_students_each_teacher_is_the_other():
    z = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    t = L.peer_mean_teacher(z)
    assert torch.equal(t[0], z[1]) and torch.equal(t[1], z[0])


def test_global_term_of_student_k_has_no_gradient_into_peers():
    z = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    terms = L.global_kl(z, temperature=3.0)
    for k in range(4):
        (grad,) = torch.autograd.grad(terms[k], z, retain_graph=True)
        others = [j for j in range(4) if j != k]
        assert grad[others].abs().max() == 0 and grad[k].abs().max() > 0


def test_global_kl_is_zero_when_students_agree_and_matches_a_hand_value():
    same = torch.tensor([[0.3, -0.2, 1.0]]).expand(3, 2, 3)
    assert torch.allclose(L.global_kl(same), torch.zeros(3))
    z = torch.tensor([[[0.0, 0.0]], [[3.0, 0.0]]])  # K=2, T=1: KL(softmax([3,0]) || softmax([0,0])) for student 0
    p = torch.softmax(torch.tensor([3.0, 0.0]), 0)
    expected = (p * (p.log() - torch.log(torch.tensor(0.5)))).sum()
    assert torch.allclose(L.global_kl(z, temperature=1.0)[0], expected)


def test_reference_kl_scale_is_batchmean_over_rows_times_classes():
    z = torch.randn(4, 140, 7, generator=torch.Generator().manual_seed(2))
    ref, bm = L.global_kl(z, 3.0, "reference"), L.global_kl(z, 3.0, "batchmean")
    torch.testing.assert_close(ref, bm / (140 * 7), rtol=1e-6, atol=0)
    assert L.kl_scale_factor("reference", 140, 7) == 1 / 980
    with pytest.raises(ValueError, match="kl_scale must be batchmean or reference, got 'mean'"):
        L.kl_scale_factor("mean", 1, 1)


def test_ring_pairs_each_discriminator_with_the_previous_student():
    assert [L.ring_fake(k, 4) for k in range(4)] == [3, 0, 1, 2]


def test_discriminator_and_generator_losses_by_hand():
    s = torch.tensor([0.0, 0.0])
    assert torch.allclose(L.discriminator_loss(s, s, scale=0.5), torch.tensor(0.5 * 2 * 0.6931472))
    assert torch.allclose(L.generator_loss(torch.tensor([10.0, -10.0])), torch.tensor((4.54e-5 + 10.0000454) / 2), atol=1e-4)


def test_dml_detaches_peers_by_default_and_not_in_reference():
    z = torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(3), requires_grad=True)
    for stop, leaks in ((True, False), (False, True)):
        (grad,) = torch.autograd.grad(L.dml(z, 1.0, stop_grad=stop)[0], z)
        assert grad[0].abs().max() > 0
        assert bool(grad[1:].abs().max() > 0) is leaks
    assert torch.allclose(L.dml(torch.zeros(3, 2, 4)), torch.zeros(3))


def test_dml_is_the_mean_pairwise_kl():
    z = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(4))
    k0 = (L.kl_batchmean(z[1], z[0]) + L.kl_batchmean(z[2], z[0])) / 2
    torch.testing.assert_close(L.dml(z)[0], k0)


def test_kdcl_minlogit_teacher():
    z = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(5), requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    t = L.kdcl_minlogit_teacher(z, y)
    shifted = z.detach() - z.detach().gather(-1, y.view(1, -1, 1).expand(4, -1, 1))
    assert torch.equal(t[torch.arange(6), y], torch.zeros(6))
    assert bool((t.unsqueeze(0) <= shifted).all()) and not t.requires_grad
    assert torch.equal(t, shifted.min(0).values)
    assert L.kdcl(z, y).shape == (4,)
