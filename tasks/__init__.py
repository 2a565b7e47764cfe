"""Thin Prefect tasks, one per stage: resolve paths, call gfkd.stages.<stage>.run, return a small manifest dict."""
