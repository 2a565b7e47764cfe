"""GFKD generator: independent Bernoulli edges whose logits θ get the ARM two-sample gradient (forward passes only)
("Graph-Free Knowledge Distillation for Graph Neural Networks", arXiv 2105.07519; ARM, arXiv 1807.11143; gfkd.md).

Per iteration: (1) a feature step by back-propagation on Φ with the mode structure 1[θ ≥ 0] (`fair`: one sample);
(2) track the lowest feature-step loss and snapshot (θ, Φ); (3) a structure step: U ~ U(0,1),
A¹ = 1[U > σ(−θ)], A² = 1[U < σ(θ)], two teacher forwards without autograd, and
    ĝ_gij = (ℓ_g(A¹) − ℓ_g(A²))·(U_gij − ½),   ℓ_g = CE_g + β_BN·R_BN
written into θ.grad for an Adam step. θ is kept packed, one entry per edge variable ([E], graph by graph), and is
scattered into padded [B, N, N] adjacencies only for the teacher: the elementwise work (noise, sigmoids, Adam) is paid
on the Σ n_g² edge variables, not on a chunk padded to its largest graph (PROTEINS: 5 % of it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gfkd.errors import StageError
from gfkd.generators.base import (FinalGraphs, GenContext, StepLog, best_draw, degree_features, dense_logits, edge_mask,
                                  node_mask)
from gfkd.generators.bn_stats import BNMatcher, bn_targets
from gfkd.generators.features import entropy_prior, one_hot_rows


def arm_gradient(theta: Tensor, loss_fn, u: Tensor, owner: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """ARM estimate of ∇_θ E[ℓ(A)] for A ~ Bernoulli(σ(θ)) given uniform noise u (same shape as θ).

    Args:
        theta: [B, ...] logits, or packed [E] logits with `owner` [E], the graph of each; loss_fn(A) → per-graph
            losses [B].
    Returns:
        (ĝ [B, ...] or [E], ℓ(A¹) [B], ℓ(A²) [B])
    """
    a1 = (u > torch.sigmoid(-theta)).to(theta.dtype)
    a2 = (u < torch.sigmoid(theta)).to(theta.dtype)
    l1, l2 = loss_fn(a1), loss_fn(a2)
    diff = (l1 - l2)[owner] if owner is not None else (l1 - l2).view(-1, *([1] * (theta.dim() - 1)))
    return diff * (u - 0.5), l1, l2


def generate(ctx: GenContext, num_nodes: Tensor, targets: Tensor, gen: torch.Generator, log: StepLog | None = None,
             step_offset: int = 0) -> FinalGraphs:
    """One chunk of GFKD pseudo-graphs (num_nodes, targets: [B]) → FinalGraphs with adj: [B, N, N] (directed by
    default), x: [B, N, F] one-hot; `log(step, metrics)` every 10 iterations."""
    g = ctx.cfg.gfkd
    dev = ctx.device
    num_nodes, targets = num_nodes.to(dev), targets.to(dev)
    mask = node_mask(num_nodes)
    B, N = mask.shape
    flat = edge_mask(num_nodes, N, g.directed).flatten().nonzero().squeeze(1)  # [E] edge variables in [B·N·N]
    owner = torch.div(flat, N * N, rounding_mode="floor")  # [E] the graph of each
    lr_s = g.resolved_lr_structure(ctx.meta.get("dataset"))
    beta_bn, beta_oh, form, target_mode = g.beta_bn, g.beta_oh, g.bn_form, g.bn_target
    if g.fair:
        lr_s, beta_bn, beta_oh, form, target_mode = 0.1, 1.0, 0.1, "relative", "auto"
    if g.fair or g.init == "density":
        rho = ctx.init_density(num_nodes).view(B)
        theta = torch.logit(rho)[owner] + 0.5 * torch.randn(flat.shape, generator=gen, device=dev)
    else:
        theta = torch.logit(torch.rand(flat.shape, generator=gen, device=dev).clamp(1e-4, 1 - 1e-4))
    # θ: the packed leaf Adam updates; no autograd through it
    phi = None if ctx.featureless else torch.randn(B, N, ctx.num_features, generator=gen, device=dev).requires_grad_()
    opt_s = torch.optim.Adam([theta], lr=lr_s)
    sched = [torch.optim.lr_scheduler.StepLR(opt_s, g.resolved_decay, 0.1)]
    if phi is not None:
        opt_f = torch.optim.Adam([phi], lr=g.lr_features)
        sched.append(torch.optim.lr_scheduler.StepLR(opt_f, g.resolved_decay, 0.1))

    scratch = theta.new_zeros(B * N * N)  # only the edge variables' entries are ever written: the rest stays 0

    def padded(v: Tensor, fresh: bool = True) -> Tensor:
        """Packed [E] values → [B, N, N], zero off the edge variables; `fresh=False` writes into one reused buffer
        (no 4·B·N² bytes to clear per teacher call), valid until the next such call."""
        out = v.new_zeros(B * N * N) if fresh else scratch
        out[flat] = v
        return out.view(B, N, N)

    def adjacency(a: Tensor, fresh: bool = False) -> Tensor:
        a = padded(a, fresh)
        return a if g.directed else a + a.transpose(1, 2)

    def features(adj: Tensor) -> Tensor:
        if phi is None:
            return degree_features(adj, mask, ctx.max_degree)
        return F.softmax(phi, -1) * mask.unsqueeze(-1)

    best = (float("inf"), theta.clone(), None, 0)
    with BNMatcher(ctx.teacher, bn_targets(ctx.teacher, target_mode, ctx.bn_eval_stats), form) as matcher:
        for t in range(g.resolved_iterations):
            # feature step on the mode structure (fair: one Bernoulli sample)
            a = (torch.rand(theta.shape, generator=gen, device=dev) < torch.sigmoid(theta)).float() if g.fair \
                else (theta >= 0).float()
            adj = adjacency(a)
            x = features(adj)
            ce = F.cross_entropy(dense_logits(ctx, x, adj, mask, bucketed=True), targets)
            r_bn = matcher.loss()
            loss = ce + beta_bn * r_bn + (beta_oh * entropy_prior(x, mask) if phi is not None else 0.0)
            if not torch.isfinite(loss):
                raise StageError(f"generate (gfkd): non-finite loss at step {t}: lower generate.gfkd.beta_bn "
                                 f"or use generate.gfkd.fair=true")
            if loss.item() < best[0]:
                best = (loss.item(), theta.clone(), None if phi is None else phi.detach().clone(), t)
            if phi is not None:
                opt_f.zero_grad(set_to_none=True)
                loss.backward()
                opt_f.step()
            # structure step: ARM, forward passes only
            with torch.no_grad():
                x_fixed = None if phi is None else F.softmax(phi, -1) * mask.unsqueeze(-1)

                def per_graph_loss(sample: Tensor) -> Tensor:
                    adj_s = adjacency(sample)
                    x_s = x_fixed if x_fixed is not None else degree_features(adj_s, mask, ctx.max_degree)
                    ce_g = F.cross_entropy(dense_logits(ctx, x_s, adj_s, mask, bucketed=True), targets,
                                           reduction="none")
                    return ce_g + beta_bn * matcher.loss()

                grad = torch.zeros_like(theta)
                for _ in range(g.arm_pairs):
                    u = torch.rand(theta.shape, generator=gen, device=dev)
                    grad += arm_gradient(theta, per_graph_loss, u, owner)[0] / g.arm_pairs
                theta.grad = grad
            opt_s.step()
            for s in sched:
                s.step()
            if log is not None and (t % 10 == 0 or t == g.resolved_iterations - 1):
                log(step_offset + t, {"generate/train/loss": loss.item(), "generate/train/ce": ce.item(),
                                      "generate/train/bn": r_bn.item(),
                                      "generate/train/saturated": float((theta.abs() > 5).float().mean())})
    return _finalise(ctx, g, theta, phi, best, adjacency, padded, mask, num_nodes, targets, gen)


@torch.no_grad()
def _finalise(ctx, g, theta, phi, best, adjacency, padded, mask, num_nodes, targets, gen) -> FinalGraphs:
    _, theta_best, phi_best, step = best
    theta_f = theta if g.resolved_finalize == "last" else theta_best
    phi_f = phi if g.resolved_finalize in ("last", "reference") else phi_best
    x_fixed = None if phi_f is None else one_hot_rows(phi_f) * mask.unsqueeze(-1)
    draws = [(torch.rand(theta_f.shape, generator=gen, device=ctx.device) < torch.sigmoid(theta_f)).float()
             for _ in range(4)] if g.fair else [(theta_f >= 0).float()]
    candidates = []
    for d in draws:  # every draw's adjacency is kept until the best is chosen: fresh tensors
        adj = adjacency(d, fresh=True)
        candidates.append((adj, x_fixed if x_fixed is not None else degree_features(adj, mask, ctx.max_degree)))
    best_adj, best_x = best_draw(ctx, candidates, mask, targets, bucketed=True)
    pairs = num_nodes * (num_nodes - 1) // (1 if g.directed else 2)
    num_params = int(pairs.sum()) + (0 if phi is None else int(num_nodes.sum()) * ctx.num_features)
    prob = adjacency(torch.sigmoid(theta_f), fresh=True)
    return FinalGraphs(num_nodes=num_nodes, adj=best_adj, edge_prob=prob, x=best_x, targets=targets,
                       gen_step=step if g.resolved_finalize != "last" else g.resolved_iterations, num_params=num_params,
                       info={"best_loss": best[0], "directed": float(g.directed)},
                       state={"theta": padded(theta_f).cpu(), **({} if phi_f is None else {"phi": phi_f.detach().cpu()}),
                              "num_nodes": num_nodes.cpu(), "targets": targets.cpu()})
