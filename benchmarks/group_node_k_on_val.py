"""OAD's group size K chosen on validation, per cell of docs/results-group.json (oad.md §7's K sweep).

    .venv/bin/python benchmarks/group_node_k_on_val.py

Among K ∈ {2, 3, 4, 6} (`benchmarks/group_node.py --schedules oad_k2 oad_k3 oad_k6`; K = 4 is the default `oad` row),
over the seeds every K and the baselines ran: the K with the highest mean validation accuracy at ê (mean over
students; ties: the smallest K), then its test mean over students minus the independent students' and DML's, paired by
seed. Test accuracy never chooses. Trains nothing.
"""

from __future__ import annotations

if __name__ == "__main__":  # the house habit of every benchmark script (tests/test_benchmark_scripts.py)
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one's
    from flows.env import private_tmp_until_exit

    private_tmp_until_exit()

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from group_node import on_validation  # noqa: E402  (the rule that chooses λ_G there chooses K here)

KS = {2: "oad_k2", 3: "oad_k3", 4: "oad", 6: "oad_k6"}


def main() -> None:
    runs = json.loads((REPO / "docs" / "results-group.json").read_text())["runs"]
    by = {}
    for r in runs:
        by.setdefault((r["dataset"], r["backbone"], r["method"]), {})[r["seed"]] = r["report"]
    cells = sorted({(r["dataset"], r["backbone"]) for r in runs if r["method"] == "oad_k2"})
    for ds, bb in cells:
        need = [*KS.values(), "independent", "dml"]
        if any((ds, bb, m) not in by for m in need):
            continue
        seeds = sorted(set.intersection(*(set(by[(ds, bb, m)]) for m in need)))
        k, val = on_validation({j: by[(ds, bb, m)] for j, m in KS.items()}, seeds)
        diff = {o: 100 * np.mean([by[(ds, bb, KS[k])][s]["mean_students"] - by[(ds, bb, o)][s]["mean_students"]
                                  for s in seeds]) for o in ("independent", "dml")}
        print(f"{ds} {bb.upper()}: seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}), validation chose K = {k} "
              f"({', '.join(f'K={j} {100 * v:.2f}' for j, v in val.items())}); OAD at K = {k} − independent "
              f"{diff['independent']:+.2f}, − DML {diff['dml']:+.2f}")


if __name__ == "__main__":
    main()
