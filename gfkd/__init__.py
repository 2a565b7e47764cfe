"""gfkd: data-free knowledge distillation and online group distillation for GNNs."""

__version__ = "0.1.0"
