"""Students of the distill stage: a plain student with its own head, or a widened student that reuses the
teacher's frozen classifier through a projector (acgkd.md §8; SimKD, arXiv 2203.14001).

    z_S = W_T·pool(P(H_S)) + b_T,      P = GAT(d_S → d_T, 4 heads) → BN → ReLU   (or Linear → BN → ReLU)

Both kinds expose `forward(x, edge_index, batch, num_graphs) -> logits [B, C]` and
`features(...) -> (logits [B, C], node embeddings to match [N, d_T] or None)`.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch_geometric.nn import GATConv

from gfkd.models.classifier import SWITCHES, GraphClassifier, build_classifier


class Projector(nn.Module):
    """Node-wise map d_S → d_T into the space of the teacher's post-ReLU node embeddings.

    Args:
        kind: "gat" (GAT over the graph, n_h = 4 heads of width d_T/4 concatenated; 1 head when 4 ∤ d_T) or
            "linear" (node-wise Linear).
    """

    def __init__(self, kind: str, d_s: int, d_t: int):
        super().__init__()
        self.kind = kind
        if kind == "gat":
            heads = 4 if d_t % 4 == 0 else 1
            self.conv = GATConv(d_s, d_t // heads, heads=heads, concat=True)
        elif kind == "linear":
            self.conv = nn.Linear(d_s, d_t)
        else:
            raise ValueError(f"unknown projector '{kind}': choose gat or linear")
        self.norm = nn.BatchNorm1d(d_t)

    def forward(self, h: Tensor, edge_index: Tensor) -> Tensor:
        """h: [N, d_S], edge_index: [2, E] → [N, d_T]."""
        h = self.conv(h, edge_index) if self.kind == "gat" else self.conv(h)
        return self.norm(h).relu()


class PlainStudent(nn.Module):
    """A GraphClassifier with its own Linear head; no embedding to match."""

    def __init__(self, net: GraphClassifier):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """x: [N, F], edge_index: [2, E], batch: [N] → logits [B, C]."""
        return self.net(x, edge_index, batch, num_graphs)

    def features(self, x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int) -> tuple[Tensor, None]:
        """The logits [B, C] and None: a plain student has no embedding to match."""
        return self.net(x, edge_index, batch, num_graphs), None

    def param_counts(self) -> dict[str, int]:
        return {"body": _count(self.net.convs), "projector": 0, "head": _count(self.net.classifier)}


class WidenedStudent(nn.Module):
    """Student body g_S → projector P → the teacher's pooling and frozen classifier (W_T, b_T), no dropout.

    Args:
        body: a GraphClassifier whose message-passing layers form g_S (its own classifier is dropped).
        teacher: the teacher, whose classifier is copied and frozen.
    """

    def __init__(self, body: GraphClassifier, teacher: GraphClassifier, projector: str = "gat"):
        super().__init__()
        self.convs, self.residual = body.convs, body.residual
        self.projector = Projector(projector, body.hidden, teacher.hidden)
        self.pooling = teacher.pooling
        self.head = nn.Linear(teacher.hidden, teacher.num_classes)
        self.head.load_state_dict(teacher.classifier.state_dict())
        self.head.requires_grad_(False)

    def node_embeddings(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """x: [N, F] → projected node embeddings P(H_S): [N, d_T]."""
        for i, conv in enumerate(self.convs):
            h = conv.update(conv.aggregate(x, edge_index))
            x = h + x if (self.residual and i > 0) else h
        return self.projector(x, edge_index)

    def features(self, x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int) -> tuple[Tensor, Tensor]:
        """x: [N, F], edge_index: [2, E], batch: [N] → (logits [B, C], P(H_S) [N, d_T])."""
        from torch_geometric.utils import scatter

        h = self.node_embeddings(x, edge_index)
        g = scatter(h, batch, dim=0, dim_size=num_graphs, reduce=self.pooling)  # [B, d_T]
        return self.head(g), h

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """x: [N, F], edge_index: [2, E], batch: [N] → logits [B, C]."""
        return self.features(x, edge_index, batch, num_graphs)[0]

    def param_counts(self) -> dict[str, int]:
        return {"body": _count(self.convs), "projector": _count(self.projector), "head": _count(self.head)}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_student(spec: dict, teacher: GraphClassifier | None = None) -> nn.Module:
    """A student from its JSON spec: {kind: plain|widened, arch, layers, hidden, dropout, projector} and, where set,
    the classifier's parity switches (`gfkd.models.classifier.SWITCHES`).

    The widened kind needs the teacher (its classifier's shape; the weights are then loaded from the checkpoint or
    copied from the teacher)."""
    net = build_classifier(spec["arch"], spec["in_dim"], spec["num_classes"], layers=spec["layers"],
                           hidden=spec["hidden"], pooling=spec.get("pooling", "sum"), dropout=spec["dropout"],
                           **{k: spec[k] for k in SWITCHES if k in spec})
    if spec["kind"] == "plain":
        return PlainStudent(net)
    if teacher is None:
        raise ValueError("a widened student needs the teacher whose classifier it reuses")
    return WidenedStudent(net, teacher, spec["projector"])
