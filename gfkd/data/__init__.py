"""Datasets and splits: the only package that opens real graphs and defines 'test'."""

from gfkd.data.datasets import GraphDataset, load_planetoid, load_tu, resolve_data_root
from gfkd.data.splits import Split, cv10_split, holdout_split, make_split

__all__ = ["GraphDataset", "Split", "cv10_split", "holdout_split", "load_planetoid", "load_tu", "make_split",
           "resolve_data_root"]
