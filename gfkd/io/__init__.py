"""Files on disk: atomic writes, manifests, checkpoints."""
