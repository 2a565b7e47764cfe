"""One module per pipeline stage; each exposes run(cfg, layout, cache_key, logger, force) -> StageOutcome."""
