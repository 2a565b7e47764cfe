"""`parse_seeds`: the seed (or fold) lists typed on a command line, e.g. 0..9, 0,3,5 or 4."""

from __future__ import annotations

from gfkd.errors import ConfigError


def parse_seeds(text: str) -> list[int]:
    """'0..9' → [0, ..., 9]; '0,3,5' → [0, 3, 5]; '4' → [4]. Raises ConfigError on anything else."""
    try:
        if ".." in text:
            lo, hi = (int(t) for t in text.split(".."))
            seeds = list(range(lo, hi + 1))
        else:
            seeds = [int(t) for t in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"--seeds '{text}' is not a seed list: write e.g. 0..9, 0,1,2 or 3")
    return seeds
