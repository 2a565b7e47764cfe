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
