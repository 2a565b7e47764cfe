"""The ring's adversarial step (oad.md §3–4), shared by the node-level group (gfkd/group/node.py) and the pseudo-graph
group stage (gfkd/group/graph.py): discriminator k learns to tell student k's embeddings (real) from student k − 1's
(fake) with one Adam step, and then its generator loss reaches student k − 1 only."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from gfkd.losses import group as losses


def discriminator_input(mode: str) -> Callable[[Tensor], Tensor]:
    """What the discriminators see of the node embeddings x: [N, d]: "raw" x (oad.md §3), "unit" x/‖x‖ per row."""
    return (lambda x: F.normalize(x, dim=-1)) if mode == "unit" else (lambda x: x)


def ring_step(d_opts: Sequence[torch.optim.Optimizer], h: Sequence[Tensor], score: Callable[[int, Tensor], Tensor],
              d_loss_scale: float) -> tuple[list[Tensor], Tensor]:
    """One Adam step per discriminator in ring order k = 0, …, K − 1, each followed by its generator loss.

    Args:
        d_opts: K optimisers, d_opts[k] over discriminator k's parameters.
        h: K students' node embeddings, each [N, d] (one graph's nodes, or a batch's ΣN nodes).
        score: score(k, x) → discriminator k's logits that the embeddings x: [N, d] are real ([N], one per node;
            [B], one per graph, for the pseudo-graph group's `local_level = graph`).
    Returns:
        (the K generator losses L_adv,k, each with graph to student k − 1 only; Σ_k L_D,k, detached)
    """
    K = len(h)
    adv, d_total = [], h[0].new_zeros(())
    for k in range(K):
        fake = h[losses.ring_fake(k, K)]
        d_opts[k].zero_grad(set_to_none=True)
        l_d = losses.discriminator_loss(score(k, h[k].detach()), score(k, fake.detach()), d_loss_scale)
        l_d.backward()
        d_opts[k].step()
        d_total = d_total + l_d.detach()
        adv.append(losses.generator_loss(score(k, fake)))  # D_k already stepped; its grads are cleared next time
    return adv, d_total
