"""Node-classification students of an OAD group: GCN, GAT and GraphSAGE (oad.md §5).

| backbone | student (clean default) | h (local embedding) |
| --- | --- | --- |
| GCN, arXiv 1609.02907 | GCN(F→16) → ReLU → dropout 0.5 → GCN(16→C); Â = D̂^{-1/2}(A + I)D̂^{-1/2} | after ReLU, d = 16 |
| GAT, arXiv 1710.10903 | dropout 0.6 → GAT(F→16, 8 heads, concat) → ReLU → dropout 0.6 → GAT(128→C, 8 heads, mean); attention dropout 0.6 | after ReLU, d = 128 |
| SAGE, arXiv 1706.02216 | dropout 0.5 → SAGE-mean(F→16) → ReLU → dropout 0.5 → SAGE-mean(16→C) | after ReLU, before dropout, d = 16 |

Parity switches (oad.md §9): `gcn_student = reference` (no self-loops, no dropout, h before the ReLU),
`gat_self_loops = false`, `sage_h = after_dropout`.

The citation features are sparse bag-of-words rows, so the first layer multiplies a sparse X (dropout applied to its
stored values, which is the same distribution as dropout on the dense matrix) with each student's weight; every
graph operator is precomputed once in `NodeGraph`.

    >>> g = NodeGraph.build(torch.eye(3), torch.tensor([[0, 1], [1, 0]]))
    >>> z, h = NodeStudent("gcn", 3, 2, hidden=4)(g)
    >>> tuple(z.shape), tuple(h.shape)
    ((3, 2), (3, 4))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import add_remaining_self_loops, remove_self_loops, scatter, softmax

from gfkd.models.spmm import spmm

BACKBONES = ("gcn", "gat", "sage")
DEFAULT_DROPOUT = {"gcn": 0.5, "gat": 0.6, "sage": 0.5}


def _sparse(index: Tensor, value: Tensor, n: int) -> Tensor:
    """A coalesced [n, n] sparse COO matrix with entries value[e] at (index[1, e], index[0, e]) (row = dst)."""
    return torch.sparse_coo_tensor(index.flip(0), value, (n, n), check_invariants=False).coalesce()


def gcn_adjacency(edge_index: Tensor, n: int, self_loops: bool = True) -> Tensor:
    """edge_index: [2, E] → D̂^{-1/2} Â D̂^{-1/2}: [N, N] sparse, Â = A + I (or A without self-loops)."""
    ei, _ = remove_self_loops(edge_index)
    w = torch.ones(ei.size(1), device=ei.device)
    if self_loops:
        ei, w = add_remaining_self_loops(ei, w, fill_value=1.0, num_nodes=n)
    deg = scatter(w, ei[1], dim=0, dim_size=n, reduce="sum")
    dinv = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
    return _sparse(ei, w * dinv[ei[0]] * dinv[ei[1]], n)


def mean_adjacency(edge_index: Tensor, n: int) -> Tensor:
    """edge_index: [2, E] → row-normalised A (mean over in-neighbours; isolated rows zero): [N, N] sparse."""
    ei, _ = remove_self_loops(edge_index)
    deg = scatter(torch.ones(ei.size(1), device=ei.device), ei[1], dim=0, dim_size=n, reduce="sum")
    return _sparse(ei, 1.0 / deg[ei[1]], n)


@dataclass
class NodeGraph:
    """One citation graph with its operators precomputed (tensors on one device).

    x: [N, F] sparse COO; y: [N]; masks: [N] bool; adj / adj_noloop: GCN operators with and without self-loops;
    adj_mean: SAGE's mean operator; edge_index / edge_index_loops: [2, E] for GAT without and with self-loops.
    """

    x: Tensor
    y: Tensor
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor
    adj: Tensor
    adj_noloop: Tensor
    adj_mean: Tensor
    edge_index: Tensor
    edge_index_loops: Tensor
    num_classes: int

    @property
    def num_nodes(self) -> int:
        return self.y.numel()

    @property
    def num_features(self) -> int:
        return self.x.size(1)

    @classmethod
    def build(cls, x: Tensor, edge_index: Tensor, y: Tensor | None = None, train_mask: Tensor | None = None,
              val_mask: Tensor | None = None, test_mask: Tensor | None = None) -> "NodeGraph":
        """x: [N, F] dense or sparse, edge_index: [2, E] (both directions), y: [N], masks: [N] bool."""
        n = x.size(0)
        y = torch.zeros(n, dtype=torch.long) if y is None else y
        all_true = torch.ones(n, dtype=torch.bool, device=y.device)
        ei, _ = remove_self_loops(edge_index)
        loops, _ = add_remaining_self_loops(ei, num_nodes=n)
        return cls(x=(x if x.is_sparse else x.to_sparse()).coalesce(), y=y,
                   train_mask=all_true if train_mask is None else train_mask,
                   val_mask=all_true if val_mask is None else val_mask,
                   test_mask=all_true if test_mask is None else test_mask,
                   adj=gcn_adjacency(ei, n, True), adj_noloop=gcn_adjacency(ei, n, False),
                   adj_mean=mean_adjacency(ei, n), edge_index=ei, edge_index_loops=loops,
                   num_classes=int(y.max()) + 1)

    def to(self, device: torch.device | str) -> "NodeGraph":
        return NodeGraph(**{k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in vars(self).items()})


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout x·1[u ≥ p]/(1 − p), u ~ U(0, 1): F.dropout's distribution, twice as fast on CPU here."""
    if not training or p == 0:
        return x
    return x * (torch.rand_like(x) >= p).to(x.dtype) * (1.0 / (1.0 - p))


def sparse_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout on the stored values of a sparse COO x: [N, F] (zeros stay zeros, as with dense dropout)."""
    if not training or p == 0:
        return x
    return torch.sparse_coo_tensor(x.indices(), dropout(x.values(), p, True), x.shape,
                                   is_coalesced=True, check_invariants=False)


def _mm(x: Tensor, w: Tensor) -> Tensor:
    """x: [N, F] sparse or dense, w: [F, H] → x·w: [N, H]."""
    return spmm(x, w) if x.is_sparse else x @ w


def _glorot(*shape: int) -> nn.Parameter:
    fan_in, fan_out = shape[-2] if len(shape) > 1 else 1, shape[-1]
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return nn.Parameter(torch.empty(*shape).uniform_(-a, a))


class GATLayer(nn.Module):
    """Graph attention (arXiv 1710.10903): α_ij = softmax_j(LeakyReLU(a_s·W x_j + a_d·W x_i)), out_i = Σ_j α_ij W x_j."""

    def __init__(self, in_dim: int, out_dim: int, heads: int, concat: bool, attn_dropout: float):
        super().__init__()
        self.heads, self.out_dim, self.concat, self.attn_dropout = heads, out_dim, concat, attn_dropout
        self.weight = _glorot(in_dim, heads * out_dim)
        self.att_src = _glorot(1, heads, out_dim)
        self.att_dst = _glorot(1, heads, out_dim)
        self.bias = nn.Parameter(torch.zeros(heads * out_dim if concat else out_dim))

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """x: [N, F] sparse or dense, edge_index: [2, E] (src, dst) → [N, heads·out] (concat) or [N, out]."""
        n = x.size(0)
        xw = _mm(x, self.weight).view(n, self.heads, self.out_dim)  # [N, H, O]
        src, dst = edge_index
        a_s, a_d = (xw * self.att_src).sum(-1), (xw * self.att_dst).sum(-1)  # [N, H]
        alpha = softmax(F.leaky_relu(a_s[src] + a_d[dst], 0.2), dst, num_nodes=n)  # [E, H]
        alpha = dropout(alpha, self.attn_dropout, self.training)
        out = scatter(xw[src] * alpha.unsqueeze(-1), dst, dim=0, dim_size=n, reduce="sum")  # [N, H, O]
        out = out.reshape(n, -1) if self.concat else out.mean(1)
        return out + self.bias


class NodeStudent(nn.Module):
    """One student: two message-passing layers; forward returns (logits z: [N, C], local embedding h: [N, d]).

    Args:
        backbone: gcn | gat | sage.
        in_dim, num_classes: F and C.
        hidden: width per head (16); heads: GAT heads (8); dropout: None → the backbone's default (0.5, GAT 0.6).
        gcn_reference: GCN without self-loops or dropout, h before the ReLU (the reference code).
        gat_self_loops: GAT attends to the node itself. sage_h: where SAGE's h is read.
    """

    def __init__(self, backbone: str, in_dim: int, num_classes: int, hidden: int = 16, heads: int = 8,
                 dropout: float | None = None, gcn_reference: bool = False, gat_self_loops: bool = True,
                 sage_h: str = "before_dropout"):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        self.backbone, self.gcn_reference, self.gat_self_loops, self.sage_h = backbone, gcn_reference, gat_self_loops, sage_h
        self.dropout = DEFAULT_DROPOUT[backbone] if dropout is None else dropout
        if backbone == "gcn":
            self.w1, self.b1 = _glorot(in_dim, hidden), nn.Parameter(torch.zeros(hidden))
            self.w2, self.b2 = _glorot(hidden, num_classes), nn.Parameter(torch.zeros(num_classes))
            self.embed_dim = hidden
        elif backbone == "gat":
            self.conv1 = GATLayer(in_dim, hidden, heads, concat=True, attn_dropout=self.dropout)
            self.conv2 = GATLayer(heads * hidden, num_classes, heads, concat=False, attn_dropout=self.dropout)
            self.embed_dim = heads * hidden
        else:  # SAGE-mean: W_l·mean_j x_j + b + W_r·x_i
            self.l1, self.r1, self.b1 = _glorot(in_dim, hidden), _glorot(in_dim, hidden), nn.Parameter(torch.zeros(hidden))
            self.l2, self.r2 = _glorot(hidden, num_classes), _glorot(hidden, num_classes)
            self.b2 = nn.Parameter(torch.zeros(num_classes))
            self.embed_dim = hidden

    def adjacency(self, g: NodeGraph) -> Tensor:
        """The GCN operator this student (and its discriminator) uses: [N, N] sparse."""
        return g.adj_noloop if (self.backbone == "gcn" and self.gcn_reference) else g.adj

    def forward(self, g: NodeGraph) -> tuple[Tensor, Tensor]:
        """g: NodeGraph with x: [N, F] → (z: [N, C], h: [N, d])."""
        p, train = self.dropout, self.training
        if self.backbone == "gcn":
            a = self.adjacency(g)
            pre = spmm(a, _mm(g.x, self.w1)) + self.b1  # [N, 16]
            act = pre.relu()
            if self.gcn_reference:
                return spmm(a, act @ self.w2) + self.b2, pre
            return spmm(a, dropout(act, p, train) @ self.w2) + self.b2, act
        if self.backbone == "gat":
            ei = g.edge_index_loops if self.gat_self_loops else g.edge_index
            h = self.conv1(sparse_dropout(g.x, p, train), ei).relu()  # [N, 8·16]
            return self.conv2(dropout(h, p, train), ei), h
        x = sparse_dropout(g.x, p, train)
        h = (spmm(g.adj_mean, _mm(x, self.l1)) + _mm(x, self.r1) + self.b1).relu()  # [N, 16]
        hd = dropout(h, p, train)
        z = spmm(g.adj_mean, hd @ self.l2) + hd @ self.r2 + self.b2
        return z, (hd if self.sage_h == "after_dropout" else h)
