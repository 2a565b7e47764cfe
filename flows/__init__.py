"""Prefect flows (wiring only) and the `gfkd` command line."""
