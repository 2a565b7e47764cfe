from gfkd.io.manifest import Manifest, load_manifest, valid_manifest


def _make(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    m = Manifest.build("teacher", "key1", tmp_path, ["a.bin"], metrics={"teacher/test/acc": 0.5})
    m.write(tmp_path / "manifest.json")
    return m


def test_valid_manifest_round_trip(tmp_path):
    m = _make(tmp_path)
    assert valid_manifest(tmp_path / "manifest.json", "key1") == m
    assert load_manifest(tmp_path / "manifest.json").digest == m.digest


def test_manifest_invalid_on_key_change_tamper_or_loss(tmp_path):
    _make(tmp_path)
    assert valid_manifest(tmp_path / "manifest.json", "other-key") is None
    (tmp_path / "a.bin").write_bytes(b"abd")
    assert valid_manifest(tmp_path / "manifest.json", "key1") is None
    (tmp_path / "a.bin").unlink()
    assert valid_manifest(tmp_path / "manifest.json", "key1") is None
    (tmp_path / "manifest.json").write_text("{not json")
    assert load_manifest(tmp_path / "manifest.json") is None


def test_digest_ignores_metrics_and_run_ids(tmp_path):
    m = _make(tmp_path)
    other = m.model_copy(update={"metrics": {"x": 1.0}, "mlflow_run_id": "r"})
    assert other.digest == m.digest


def test_volatile_files_are_checked_on_disk_but_left_out_of_the_digest(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "_time-b00.json").write_text('{"wall_s": 1.0}')
    m = Manifest.build("generate", "k", tmp_path, ["a.bin", "_time-b00.json"], volatile=("_time-*.json",))
    assert m.files["_time-b00.json"].volatile and not m.files["a.bin"].volatile
    (tmp_path / "_time-b00.json").write_text('{"wall_s": 2.0}')  # an identical rerun, another wall time
    rerun = Manifest.build("generate", "k", tmp_path, ["a.bin", "_time-b00.json"], volatile=("_time-*.json",))
    assert rerun.digest == m.digest
    m.write(tmp_path / "manifest.json")
    assert valid_manifest(tmp_path / "manifest.json", "k") is None  # but still checked against the file on disk
    (tmp_path / "a.bin").write_bytes(b"abd")
    assert Manifest.build("generate", "k", tmp_path, ["a.bin", "_time-b00.json"],
                          volatile=("_time-*.json",)).digest != m.digest
