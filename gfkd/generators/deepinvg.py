"""DeepInvG: DeepInversion on node features over a random, fixed structure (gfkd.md §10).

The structure is one RandG sample per graph, frozen. Feature logits Φ are optimised by back-propagation on
L = CE + β_BN·R_BN + β_oh·H̄ with GFKD's schedule (Adam, lr ÷10 every `lr_decay_every` steps). On featureless sets
Φ ranges over the D + 1 degree bins and is free, so features may contradict the structure: the baseline's defining
weakness, kept on purpose. Finalised: one-hot argmax of Φ at the iteration of lowest loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gfkd.errors import StageError
from gfkd.generators.base import FinalGraphs, GenContext, StepLog, dense_logits
from gfkd.generators.bn_stats import BNMatcher, bn_targets
from gfkd.generators.features import entropy_prior, one_hot_rows
from gfkd.generators.randg import edge_prob, random_graphs


def generate(ctx: GenContext, num_nodes: Tensor, targets: Tensor, gen: torch.Generator, log: StepLog | None = None,
             step_offset: int = 0) -> FinalGraphs:
    """One chunk of DeepInvG graphs (num_nodes, targets: [B]): RandG structure, fixed, and features Φ: [B, N, F]
    optimised against the teacher, finalised one-hot → FinalGraphs with adj: [B, N, N], x: [B, N, F]."""
    g = ctx.cfg.gfkd
    num_nodes, targets = num_nodes.to(ctx.device), targets.to(ctx.device)
    p = edge_prob(ctx)
    adj, _, mask = random_graphs(ctx, num_nodes, gen, p)
    F_in = ctx.num_features
    phi = torch.randn(*mask.shape, F_in, generator=gen, device=ctx.device).requires_grad_()
    opt = torch.optim.Adam([phi], lr=g.lr_features)
    sched = torch.optim.lr_scheduler.StepLR(opt, g.resolved_decay, 0.1)
    beta_bn, beta_oh, form = (1.0, 0.1, "relative") if g.fair else (g.beta_bn, g.beta_oh, g.bn_form)
    target_mode = "auto" if g.fair else g.bn_target
    best_loss, best_phi, best_step = float("inf"), phi.detach().clone(), 0
    with BNMatcher(ctx.teacher, bn_targets(ctx.teacher, target_mode, ctx.bn_eval_stats), form) as matcher:
        for t in range(g.resolved_iterations):
            x = F.softmax(phi, -1) * mask.unsqueeze(-1)
            ce = F.cross_entropy(dense_logits(ctx, x, adj, mask, bucketed=True), targets)
            r_bn = matcher.loss()
            oh = entropy_prior(x, mask)
            loss = ce + beta_bn * r_bn + beta_oh * oh
            if not torch.isfinite(loss):
                raise StageError(f"generate (deepinvg): non-finite loss at step {t}: lower generate.gfkd.lr_features")
            if loss.item() < best_loss:
                best_loss, best_phi, best_step = loss.item(), phi.detach().clone(), t
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if log is not None and (t % 10 == 0 or t == g.resolved_iterations - 1):
                log(step_offset + t, {"generate/train/loss": loss.item(), "generate/train/ce": ce.item(),
                                      "generate/train/bn": r_bn.item(), "generate/train/oh": oh.item()})
    x = one_hot_rows(best_phi) * mask.unsqueeze(-1)
    return FinalGraphs(num_nodes=num_nodes, adj=adj, edge_prob=adj * 0 + p, x=x, targets=targets, gen_step=best_step,
                       num_params=int(num_nodes.sum()) * F_in,
                       info={"edge_prob": p, "best_loss": best_loss, "directed": float(ctx.cfg.randg.directed)},
                       state={"adj": adj.cpu(), "phi": best_phi.cpu(), "num_nodes": num_nodes.cpu(),
                              "targets": targets.cpu()})
