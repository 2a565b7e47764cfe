"""Loss functions: temperature KD with an adversarial temperature (kd.py); group distillation (group.py)."""
