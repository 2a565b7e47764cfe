"""Online group distillation on real node-classification graphs (oad.md §5): training loop and reporting."""
