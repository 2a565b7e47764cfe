"""GraphClassifier: message-passing layers → sum (or mean) pooling → dropout → Linear, with a dense path.

ARCH-L-H (protocol.md §5): L counts the input layer, so the model has L − 1 message-passing layers of width H; a
residual h ← h' + h joins from the second layer on. Each layer defines `aggregate` (sparse, `edge_index`),
`aggregate_dense` (a soft adjacency `[B, N, N]`) and a shared node-wise `update`; so the sparse model and its
dense twin (`gfkd.models.dense.DenseTwin`) use the very same parameters, and BN layers only ever see real nodes.
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint
from torch import Tensor, nn
from torch_geometric.utils import scatter

SWITCHES = ("loops_in_data", "skip_isolated", "logit_dropout")
"""The constructor's model-level parity switches (gfkd.md §8), as `config()` writes them where on."""


class GraphClassifier(nn.Module):
    """Base class; subclasses set `layer_cls` (a GIN or GCN layer).

    Args:
        in_dim: node feature width F.
        num_classes: C.
        layers: L, counting the input layer (L − 1 message-passing layers).
        hidden: H.
        pooling: "sum" or "mean" over the nodes of each graph.
        bn: BatchNorm in the layers.
        residual: h ← h' + h from the second message-passing layer on.
        dropout: dropout before the classifier (on the logits with `logit_dropout`).
        loops_in_data: gfkd.md §8's `self_loops_in_data`: every graph gets an explicit self-loop edge on each node
            before the layers, as the reference code's data had (GIN then counts a node's own feature twice; GCN
            takes its loops from the graph instead of adding them).
        skip_isolated: with `loops_in_data`, a node without out-edges gets no self-loop (`selfloop_skip_isolated`).
        logit_dropout: the dropout acts on the logits while training (the reference code), not before the classifier.
    """

    layer_cls: type[nn.Module]
    arch: str

    def __init__(self, in_dim: int, num_classes: int, layers: int = 5, hidden: int = 128, pooling: str = "sum",
                 bn: bool = True, residual: bool = True, dropout: float = 0.5, loops_in_data: bool = False,
                 skip_isolated: bool = False, logit_dropout: bool = False):
        super().__init__()
        if layers < 2:
            raise ValueError("layers counts the input layer and must be >= 2")
        if skip_isolated and not loops_in_data:
            raise ValueError("skip_isolated leaves nodes without the self-loops of loops_in_data, which is off")
        self.in_dim, self.num_classes, self.hidden = in_dim, num_classes, hidden
        self.pooling, self.residual = pooling, residual
        self.loops_in_data, self.skip_isolated, self.logit_dropout = loops_in_data, skip_isolated, logit_dropout
        self.convs = nn.ModuleList(
            self.layer_cls(in_dim if i == 0 else hidden, hidden, bn=bn) for i in range(layers - 1))
        for conv in self.convs:
            conv.adds_self_loops = not loops_in_data  # GCN: the graph's loops, or its own
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)

    def first_projection(self) -> Tensor | None:
        """The [H, F] weight the first layer applies to its input before aggregating, or None. A caller may pass
        x·Wᵀ itself with `projected=True` (a generator interpolates W's columns instead of building a wide one-hot)."""
        return self.convs[0].projection

    def node_embeddings(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None,
                        projected: bool = False, checkpoint: bool = False) -> Tensor:
        """x: [N, F] (or [N, H] if `projected`), edge_index: [2, E], edge_weight: [E] or None → embeddings [N, H].

        checkpoint: keep only each layer's input for backward and recompute the layer there (activation
        checkpointing: one more forward pass, a fraction of the memory). Eval mode only: a train-mode BN layer would
        update its running statistics twice."""
        if self.loops_in_data:
            edge_index, edge_weight = data_self_loops(edge_index, edge_weight, x.size(0), self.skip_isolated)
        for i, conv in enumerate(self.convs):
            proj = projected and i == 0
            if checkpoint and torch.is_grad_enabled():
                h = torch.utils.checkpoint.checkpoint(_layer, conv, x, edge_index, edge_weight, proj,
                                                      use_reentrant=False)
            else:
                h = _layer(conv, x, edge_index, edge_weight, proj)
            x = h + x if (self.residual and i > 0) else h
        return x

    def pool(self, h: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """h: [N, H], batch: [N] → graph embeddings [B, H]."""
        return scatter(h, batch, dim=0, dim_size=num_graphs, reduce=self.pooling)

    def head(self, g: Tensor) -> Tensor:
        """g: [B, H] → logits [B, C]."""
        return self.dropout(self.classifier(g)) if self.logit_dropout else self.classifier(self.dropout(g))

    def embed(self, x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int | None = None,
              edge_weight: Tensor | None = None, projected: bool = False, checkpoint: bool = False) -> Tensor:
        """Pooled graph embeddings [B, H]."""
        num_graphs = int(batch.max()) + 1 if num_graphs is None else num_graphs
        return self.pool(self.node_embeddings(x, edge_index, edge_weight, projected, checkpoint), batch, num_graphs)

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int | None = None,
                edge_weight: Tensor | None = None, projected: bool = False, checkpoint: bool = False) -> Tensor:
        """x: [N, F], edge_index: [2, E], batch: [N], edge_weight: [E] or None → logits [B, C] (checkpoint: see
        `node_embeddings`)."""
        return self.head(self.embed(x, edge_index, batch, num_graphs, edge_weight, projected, checkpoint))

    def config(self) -> dict:
        """The constructor arguments, for the checkpoint's JSON; the parity switches only where on, so a clean
        model's JSON is what it was before they existed."""
        switches = {k: getattr(self, k) for k in SWITCHES}
        return {"arch": self.arch, "in_dim": self.in_dim, "num_classes": self.num_classes,
                "layers": len(self.convs) + 1, "hidden": self.hidden, "pooling": self.pooling,
                "bn": isinstance(self.convs[0].norm, nn.BatchNorm1d), "residual": self.residual,
                "dropout": self.dropout.p, **{k: v for k, v in switches.items() if v}}


def data_self_loops(edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int,
                    skip_isolated: bool = False) -> tuple[Tensor, Tensor | None]:
    """edge_index: [2, E], edge_weight: [E] or None → the same with a self-loop edge (weight 1) on each of the
    `num_nodes` nodes appended, or only on those with an out-edge (of positive weight) under `skip_isolated`."""
    nodes = torch.arange(num_nodes, device=edge_index.device)
    if skip_isolated:
        src = edge_index[0] if edge_weight is None else edge_index[0][edge_weight > 0]
        has_out = torch.zeros(num_nodes, dtype=torch.bool, device=edge_index.device)
        has_out[src] = True
        nodes = nodes[has_out]
    edge_index = torch.cat([edge_index, torch.stack([nodes, nodes])], 1)
    if edge_weight is not None:
        edge_weight = torch.cat([edge_weight, edge_weight.new_ones(nodes.numel())])
    return edge_index, edge_weight


def _layer(conv: nn.Module, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None, projected: bool) -> Tensor:
    return conv.update(conv.aggregate(x, edge_index, edge_weight, projected=projected))


def build_classifier(arch: str, in_dim: int, num_classes: int, **kw) -> GraphClassifier:
    """A GIN or GCN classifier by name."""
    from gfkd.models.gcn import GCNClassifier
    from gfkd.models.gin import GINClassifier

    classes = {"gin": GINClassifier, "gcn": GCNClassifier}
    if arch not in classes:
        raise ValueError(f"unknown arch '{arch}': choose one of {sorted(classes)}")
    return classes[arch](in_dim, num_classes, **kw)
