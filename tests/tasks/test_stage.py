"""tasks/stage.py's Prefect cache key (stack.md: the cache lives in result storage, keyed by the stage's key while its
manifest on disk is valid for it)."""

from gfkd.config import resolve_config
from gfkd.io.manifest import Manifest
from gfkd.layout import RunLayout
from tasks.cache import stage_key
from tasks.stage import prefect_cache_key


def test_the_prefect_key_is_the_stage_key_only_while_its_manifest_is_valid(tmp_path):
    cfg = resolve_config(None, [])
    layout = RunLayout(tmp_path / "run")
    key_fn = prefect_cache_key("teacher")
    params = {"cfg": cfg, "run_root": str(layout.root), "upstream": (), "force": False}
    assert key_fn(None, params) is None  # no manifest: the task runs
    folder = layout.stage_dir("teacher")
    folder.mkdir(parents=True)
    (folder / "teacher.pt").write_bytes(b"weights")
    key = stage_key(cfg, "teacher")
    Manifest.build("teacher", key, folder, ["teacher.pt"]).write(layout.manifest("teacher"))
    assert key_fn(None, params) == f"gfkd-teacher-{key}"
    assert key_fn(None, params | {"force": True}) is None  # --force teacher
    assert key_fn(None, params | {"upstream": ("other",)}) is None  # another upstream digest: another key
    other = resolve_config(None, ["teacher.epochs=7"])
    assert key_fn(None, params | {"cfg": other}) is None  # another config of the stage
    (folder / "teacher.pt").write_bytes(b"changed")
    assert key_fn(None, params) is None  # a file that no longer matches its checksum


def test_a_stage_run_after_a_failed_attempt_is_tagged_with_the_run_it_resumes(tmp_path):
    """stack.md: params are immutable, so a resumed stage starts a new MLflow run tagged with the run it resumes."""
    import pytest
    from mlflow.tracking import MlflowClient

    from gfkd.stages.common import StageOutcome
    from tasks.stage import run_stage

    cfg = resolve_config(None, [])
    layout = RunLayout(tmp_path / "run")

    def fails(*_a, **_k):
        raise RuntimeError("killed mid-stage")

    def finishes(cfg, layout, key, logger, force):
        folder = layout.stage_dir("teacher")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "teacher.pt").write_bytes(b"weights")
        return StageOutcome(Manifest.build("teacher", key, folder, ["teacher.pt"], mlflow_run_id=logger.run_id), "ran")

    with pytest.raises(RuntimeError):
        run_stage("teacher", fails, cfg, str(layout.root), None, (), False, None)
    client = MlflowClient(f"sqlite:///{layout.mlflow_db}")
    (failed,) = client.search_runs([e.experiment_id for e in client.search_experiments()], "attributes.status = 'FAILED'")
    rec = run_stage("teacher", finishes, cfg, str(layout.root), None, (), False, None)
    assert client.get_run(rec["mlflow_run_id"]).data.tags["gfkd.resumes_run"] == failed.info.run_id
    again = run_stage("teacher", finishes, cfg, str(layout.root), None, (), False, None)  # after a finished run: none
    assert "gfkd.resumes_run" not in client.get_run(again["mlflow_run_id"]).data.tags
    with pytest.raises(RuntimeError):
        run_stage("teacher", fails, cfg, str(layout.root), None, (), False, None)
    forced = run_stage("teacher", finishes, cfg, str(layout.root), None, (), True, None)  # --force starts afresh
    assert "gfkd.resumes_run" not in client.get_run(forced["mlflow_run_id"]).data.tags
    other = resolve_config(None, ["teacher.epochs=7"])  # another key: not the failed attempt's stage
    with pytest.raises(RuntimeError):
        run_stage("teacher", fails, cfg, str(layout.root), None, (), False, None)
    moved = run_stage("teacher", finishes, other, str(layout.root), None, (), False, None)
    assert "gfkd.resumes_run" not in client.get_run(moved["mlflow_run_id"]).data.tags
