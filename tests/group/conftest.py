"""A tiny synthetic citation-shaped graph: 3 classes, sparse bag-of-words rows, mostly intra-class edges."""

from __future__ import annotations

import pytest
import torch

from gfkd.models.node_students import NodeGraph


def citation_graph(n_per_class: int = 8, classes: int = 3, features: int = 12, seed: int = 0) -> NodeGraph:
    """N = n_per_class·classes nodes; 2 labelled per class, a third of the rest validation, the others test."""
    gen = torch.Generator().manual_seed(seed)
    n = n_per_class * classes
    y = torch.arange(classes).repeat_interleave(n_per_class)
    words = (torch.rand(n, features, generator=gen) < 0.15).float()
    words[torch.arange(n), y * (features // classes)] = 1.0  # one class-typical word per node
    x = words / words.sum(1, keepdim=True)  # row-normalised
    src, dst = torch.triu_indices(n, n, 1)
    same = y[src] == y[dst]
    keep = torch.rand(src.numel(), generator=gen) < torch.where(same, 0.35, 0.03)
    ei = torch.stack([src[keep], dst[keep]])
    ei = torch.cat([ei, ei.flip(0)], 1)
    pos = torch.arange(n) % n_per_class
    train, val = pos < 2, (pos >= 2) & (pos < 4)
    return NodeGraph.build(x, ei, y, train, val, ~(train | val))


@pytest.fixture
def graph() -> NodeGraph:
    return citation_graph()
