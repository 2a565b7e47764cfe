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
