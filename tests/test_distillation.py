"""The distillation loop's wiring of the adversarial temperature (acgkd.md §9): the ramp drives t's optimiser."""

import pytest
import torch

from conftest import path_graphs
from gfkd.config import resolve_config
from gfkd.distillation import distill_student
from gfkd.models import build_classifier
from gfkd.models.widened import build_student


def _taus(*overrides: str) -> list[float]:
    torch.manual_seed(1)
    teacher = build_classifier("gin", 3, 2, layers=3, hidden=8).eval()
    spec = {"kind": "widened", "arch": "gin", "in_dim": 3, "num_classes": 2, "layers": 2, "hidden": 4,
            "dropout": 0.5, "projector": "gat"}
    dc = resolve_config(None, ["distill.curriculum.pace=off", *overrides]).distill
    res = distill_student(build_student(spec, teacher), teacher, path_graphs(), dc, epochs=4, seed=0,
                          device=torch.device("cpu"))
    return [h["distill/train/tau"] for h in res.history]


def test_the_ramp_lets_the_temperature_move_after_a_silent_first_epoch():
    taus = _taus()  # the default: adversarial, λ ramps from 0 over distill.temperature.ramp_epochs
    assert taus[0] == pytest.approx(2.0)  # λ_0 = 0: t's learning rate is 0 during the first epoch
    assert abs(taus[-1] - 2.0) > 1e-3  # from the second epoch on, t is trained (against the student)


def test_a_silent_adversary_keeps_the_initial_temperature_in_the_loop():
    assert _taus("distill.temperature.lambda_max=0") == pytest.approx([2.0] * 4)
