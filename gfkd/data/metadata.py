"""The teacher's data metadata: the only data statistics a data-free stage may read (protocol.md §1).

Computed on the graphs the teacher trains on: node-count histogram (and mean, min, max), mean edge density (mean over
graphs of 2|E|/(n(n − 1))), mean degree (Σ 2|E| / Σ n), F, C, feature kind and D.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from gfkd.data.datasets import GraphDataset


def dataset_metadata(ds: GraphDataset, train_idx: np.ndarray) -> dict[str, Any]:
    """Summaries of the training graphs `train_idx` of `ds` (edge_index holds both directions, so 2|E| = E)."""
    nodes, directed_edges, densities = [], [], []
    for i in train_idx:
        g = ds.dataset[int(i)]
        n, e = int(g.num_nodes), int(g.edge_index.size(1))
        nodes.append(n)
        directed_edges.append(e)
        densities.append(e / (n * (n - 1)) if n > 1 else 0.0)
    hist = Counter(nodes)
    return {
        "dataset": ds.name,
        "num_features": ds.num_features,
        "num_classes": ds.num_classes,
        "feature_kind": ds.feature_kind,
        "max_degree": ds.max_degree,
        "num_train_graphs": len(nodes),
        "node_count_hist": {str(k): hist[k] for k in sorted(hist)},
        "nodes_mean": float(np.mean(nodes)),
        "nodes_min": int(min(nodes)),
        "nodes_max": int(max(nodes)),
        "edge_density_mean": float(np.mean(densities)),
        "degree_mean": float(sum(directed_edges) / sum(nodes)),
        "class_counts": np.bincount(ds.labels[train_idx], minlength=ds.num_classes).tolist(),
    }
