"""Graph classifiers (GIN, GCN) and their dense twins."""

from gfkd.models.classifier import GraphClassifier, build_classifier
from gfkd.models.dense import DenseTwin
from gfkd.models.gcn import GCNClassifier
from gfkd.models.gin import GINClassifier

__all__ = ["DenseTwin", "GCNClassifier", "GINClassifier", "GraphClassifier", "build_classifier"]
