"""prepare_runtime: threads and deterministic kernels, so a stage rerun with several threads repeats bit for bit;
the code version in the cache key; publishing a stage."""

from pathlib import Path

import pytest
import torch

from gfkd.config import resolve_config
from gfkd.errors import ConfigError
from gfkd.stages.common import prepare_runtime


@pytest.fixture
def restore_runtime():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


def _accumulate() -> list[torch.Tensor]:
    """Six runs of the backward of a gather (x[idx] accumulates into x's gradient by index_put_): [500, 64] each."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 64, generator=g)
    idx = torch.randint(0, 500, (200_000,), generator=g)
    return [torch.zeros(500, 64).index_put_((idx,), x, accumulate=True) for _ in range(6)]


def test_deterministic_runtime_repeats_accumulations_bitwise_with_two_threads(restore_runtime):
    run = resolve_config(None, ["run.threads=2"]).run
    assert run.deterministic  # the default
    device = prepare_runtime(run)
    assert device == torch.device("cpu") and torch.get_num_threads() == 2
    assert torch.are_deterministic_algorithms_enabled()
    outs = _accumulate()  # without deterministic kernels these differ from run to run on a 2-core machine
    assert all(torch.equal(outs[0], o) for o in outs[1:])


def test_runtime_switches(restore_runtime):
    prepare_runtime(resolve_config(None, ["run.deterministic=false", "run.threads=1"]).run)
    assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
    with pytest.raises(ConfigError, match="threads"):
        resolve_config(None, ["run.threads=0"])


def test_runtime_settings_enter_every_cache_key_and_checkpointing_does_not():
    from gfkd.config import STAGES

    base = resolve_config(None, [])
    assert base.run.threads == 1  # the benchmarks' setting: a default run reproduces their cells (docs/pipeline.md)
    for over in (["run.threads=2"], ["run.threads=auto"], ["run.deterministic=false"]):
        other = resolve_config(None, over)
        assert all(base.stage_config(s) != other.stage_config(s) for s in STAGES)
    ck = resolve_config(None, ["generate.acgkd.checkpoint=true"])
    assert ck.stage_config("generate") == base.stage_config("generate")  # memory and speed only, the same graphs


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_cuda_without_a_gpu_is_a_config_error_for_every_stage(restore_runtime):
    with pytest.raises(ConfigError, match="run.device=cuda but no CUDA device"):
        prepare_runtime(resolve_config(None, ["run.device=cuda"]).run)
    assert prepare_runtime(resolve_config(None, ["run.device=auto"]).run) == torch.device("cpu")


def test_config_py_enters_every_stages_code_version(tmp_path, monkeypatch):
    """What config.py works out (resolved epochs, the plain recipe's effective settings) is not in the raw dump."""
    import shutil

    import gfkd
    from gfkd.config import STAGES
    from tasks import cache

    root = tmp_path / "gfkd"
    shutil.copytree(Path(gfkd.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "_ROOT", root)
    before = {s: cache.code_version(s) for s in STAGES}
    (root / "config.py").write_text((root / "config.py").read_text() + "\n# changed\n")
    assert all(cache.code_version(s) != before[s] for s in STAGES)


def test_a_stages_code_version_follows_its_imports(tmp_path, monkeypatch):
    """The hashed files are read off the imports: a hand-kept list had missed curriculum.py and train.py for group
    and train.py for evaluate, so editing them left those stages cached."""
    import shutil

    import gfkd
    from gfkd.config import STAGES
    from tasks import cache

    root = tmp_path / "gfkd"
    shutil.copytree(Path(gfkd.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "_ROOT", root)

    def changed_by(edit: str) -> set[str]:
        before = {s: cache.code_version(s) for s in STAGES}
        (root / edit).write_text((root / edit).read_text() + "\n# changed\n")
        return {s for s in STAGES if cache.code_version(s) != before[s]}

    assert changed_by("curriculum.py") == {"distill", "group"}
    assert changed_by("train.py") == set(STAGES)  # evaluate scores every model through train.logits_of
    assert changed_by("generators/gfkd.py") == {"generate"}  # the teacher's code is untouched
    assert changed_by("models/discriminator.py") == {"group"}
    assert changed_by("tracking.py") == set() and changed_by("errors.py") == set()  # logging and messages only
    # an import inside a function counts too, and so does the package __init__ it runs
    (root / "extra").mkdir()
    (root / "extra" / "__init__.py").write_text("")
    (root / "extra" / "helper.py").write_text("from .rel import Y\nfrom .. import augment\nX = 1\n")
    (root / "extra" / "rel.py").write_text("Y = 2\n")
    (root / "stages" / "evaluate.py").write_text((root / "stages" / "evaluate.py").read_text()
                                                  + "\ndef _later():\n    from gfkd.extra.helper import X\n")
    assert {"extra/__init__.py", "extra/helper.py"} <= set(cache.stage_files("evaluate", root))
    assert {"extra/rel.py", "augment.py"} <= set(cache.stage_files("evaluate", root))  # relative imports too
    assert changed_by("extra/helper.py") == {"evaluate"} and changed_by("extra/rel.py") == {"evaluate"}


def test_the_node_group_key_follows_its_code_and_its_config(tmp_path, monkeypatch):
    """`gfkd group` keeps a seed's file only under the key of the config and the node-level code that made it."""
    import shutil

    import gfkd
    from gfkd.config import resolve_config
    from tasks import cache

    root = tmp_path / "gfkd"
    shutil.copytree(Path(gfkd.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "_ROOT", root)
    assert {"group/runner.py", "group/node.py", "losses/group.py", "config.py"} <= set(
        cache.source_files("group/runner.py", root))
    cfg = resolve_config(None, ["data.dataset=Cora"])
    key = cache.node_group_key(cfg)
    assert cache.node_group_key(resolve_config(None, ["data.dataset=Cora", "group.epochs=5"])) != key
    (root / "group" / "node.py").write_text((root / "group" / "node.py").read_text() + "\n# changed\n")
    assert cache.node_group_key(cfg) != key
    key = cache.node_group_key(cfg)
    (root / "generators" / "gfkd.py").write_text((root / "generators" / "gfkd.py").read_text() + "\n# changed\n")
    assert cache.node_group_key(cfg) == key  # the pipeline's generator is not the node-level group's code


def test_a_published_stage_keeps_no_cache_key_and_its_staging_keeps_it_until_then(tmp_path):
    from gfkd.io.manifest import Manifest
    from gfkd.layout import RunLayout
    from gfkd.stages.common import publish, resumable_staging

    layout = RunLayout(tmp_path / "run")
    staging = resumable_staging(layout, "teacher", "key")
    (staging / "a.txt").write_text("a")
    assert resumable_staging(layout, "teacher", "key") == staging and (staging / "a.txt").is_file()  # kept on resume
    (staging / "_train.pt").write_bytes(b"damaged")  # --force STAGE: redone from scratch, the killed run's files gone
    assert not list(resumable_staging(layout, "teacher", "key", fresh=True).glob("*.pt"))
    (staging / "a.txt").write_text("a")
    publish(layout, "teacher", staging, Manifest.build("teacher", "key", staging, ["a.txt"]))
    assert not (layout.stage_dir("teacher") / ".cache_key").exists()


def test_prepare_runtime_sets_denormal_flushing_both_ways(restore_runtime):
    """Generation flushes denormals and the switch outlives it: prepare_runtime sets it, on or off, whatever ran before."""
    from gfkd.stages.common import flush_denormal_enabled

    run = resolve_config(None, ["run.threads=1"]).run
    try:
        prepare_runtime(run, flush_denormal=True)
        assert flush_denormal_enabled() and (torch.tensor([1e-39]) * 1.0).item() == 0.0
        prepare_runtime(run)
        assert not flush_denormal_enabled() and (torch.tensor([1e-39]) * 1.0).item() > 0.0
    finally:
        torch.set_flush_denormal(False)


class _Stop(Exception):
    pass


def test_each_stage_asks_for_its_denormal_flushing(tmp_path, monkeypatch):
    """On for generate and what follows it in a run (what a fresh run computed with), off for the teacher and the
    node-level group (what they computed with): each stage passes its own value to prepare_runtime."""
    from gfkd.group import runner
    from gfkd.layout import RunLayout
    from gfkd.stages import distill, evaluate, generate, group, teacher

    asked = {}

    def fake(name):
        def prepare(run, flush_denormal=False):
            asked[name] = flush_denormal
            raise _Stop
        return prepare

    cfg = resolve_config(None, [])
    for name, module in {"teacher": teacher, "generate": generate, "distill": distill, "group": group,
                         "evaluate": evaluate}.items():
        monkeypatch.setattr(module, "prepare_runtime", fake(name))
        with pytest.raises(_Stop):
            module.run(cfg, RunLayout(tmp_path / name), "k")
    monkeypatch.setattr(runner, "prepare_runtime", fake("node group"))
    with pytest.raises(_Stop):
        runner.run_node_group(resolve_config(None, ["data.dataset=Cora"]), [0], RunLayout(tmp_path / "node"))
    assert asked == {"teacher": False, "generate": True, "distill": True, "group": True, "evaluate": True,
                     "node group": False}
