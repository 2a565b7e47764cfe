"""Pseudo-graph generators (ACGKD; GFKD, RandG, DeepInvG baselines) and their shared building blocks."""
