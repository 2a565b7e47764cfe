import pytest
import torch

from gfkd.errors import CheckpointError
from gfkd.io.checkpoint import load_checkpoint, save_checkpoint
from gfkd.models import build_classifier


def test_round_trip_with_weights_only(tmp_path):
    model = build_classifier("gcn", 5, 3, layers=3, hidden=8).eval()
    stats = {"convs.0.norm.mean": torch.arange(8.0)}
    save_checkpoint(tmp_path / "m.pt", model.state_dict(), {"model": model.config()}, tensors={"bn_eval_stats": stats})
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # must not need pickled objects
    assert set(raw) == {"state_dict", "bn_eval_stats"}
    state, meta, tensors = load_checkpoint(tmp_path / "m.pt")
    cfg = dict(meta["model"])
    clone = build_classifier(cfg.pop("arch"), cfg.pop("in_dim"), cfg.pop("num_classes"), **cfg).eval()
    clone.load_state_dict(state)
    x, ei, b = torch.randn(4, 5), torch.tensor([[0, 1], [1, 0]]), torch.zeros(4, dtype=torch.long)
    assert torch.equal(model(x, ei, b), clone(x, ei, b))
    assert torch.equal(tensors["bn_eval_stats"]["convs.0.norm.mean"], stats["convs.0.norm.mean"])
    assert not list(tmp_path.glob(".*tmp*"))


def test_truncated_checkpoint_is_a_one_line_error(tmp_path):
    model = build_classifier("gin", 3, 2, layers=2, hidden=4)
    path, _ = save_checkpoint(tmp_path / "m.pt", model.state_dict(), {"model": model.config()})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="m.pt"):
        load_checkpoint(path)


def test_missing_checkpoint_names_file(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.pt"):
        load_checkpoint(tmp_path / "nothere.pt")
