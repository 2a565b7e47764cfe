"""The bad-input corpus: every case gives ONE `gfkd: error:` line naming what is wrong and how to fix it, exit
code 2, no traceback, and leaves the files of finished stages as they were.

CLI cases run the real `gfkd` command in-process (typer's CliRunner, no Prefect server: they fail before the
pipeline starts). Stage cases call the stage as the pipeline does and pass its error through the CLI's own
`GfkdError` → exit 2 mapping; `test_stage_error_through_the_pipeline_is_one_line` checks that path once end to end
(Prefect and MLflow in a subprocess). With GFKD_RELIABILITY_LOG set, each case appends its message to that file
(benchmarks/reliability.py turns it into docs/reliability.md). Also covered elsewhere: tests/flows/test_cli.py
(8 CLI cases), tests/io/test_shards.py, tests/io/test_checkpoint.py, tests/data/test_datasets.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from conftest import mlflow_db_file, tiny_graphs, write_tu
from flows.cli import _one_line_errors, app
from gfkd.config import resolve_config
from gfkd.errors import GfkdError
from gfkd.layout import RunLayout
from gfkd.stages import distill, generate, group, teacher

LOG = os.environ.get("GFKD_RELIABILITY_LOG")
REPO = Path(__file__).resolve().parents[2]
TINY = ["data.dataset=TINY", "data.download=false", "teacher.epochs=2", "teacher.model.layers=3",
        "teacher.model.hidden=8", "teacher.batch_size=8", "generate.banks=1", "generate.iterations=5",
        "distill.epochs=1", "distill.seeds=1", "distill.student.layers=2", "distill.student.hidden=8",
        "distill.baselines=[]", "group.graph.warmup_epochs=1", "group.graph.epochs=1", "group.graph.students=2"]


def _record(case: str, what: str, stderr: str) -> None:
    if LOG:
        with open(LOG, "a") as fh:
            fh.write(json.dumps({"kind": "bad_input", "case": case, "what": what, "message": stderr.strip()}) + "\n")


def _check(case: str, what: str, result, needles: list[str]) -> None:
    """Exit 2, exactly one stderr line `gfkd: error: ...` holding every needle, no traceback."""
    err = result.stderr
    _record(case, what, err)
    assert result.exit_code == 2, (result.exit_code, err, result.exception)
    assert "Traceback" not in err and result.stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gfkd: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """mtime and sha256 of every file under `root` (the finished results a case must leave alone)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(app, args, env=env)


def _through_cli(fn):
    """Run `fn` under the CLI's own error mapping (flows.cli._one_line_errors), as a command."""
    one = typer.Typer()

    @one.command()
    @_one_line_errors
    def main() -> None:
        fn()

    return CliRunner().invoke(one, [])


# ------------------------------------------------------------------------------------------------- CLI, config
CONFIG_CASES = {
    "unknown key (typo)": (["teacher.epoch=3"], ["teacher.epoch", "did you mean 'teacher.epochs'"]),
    "unknown section": (["teachr.epochs=3"], ["teachr.epochs", "did you mean"]),
    "unknown nested key": (["teacher.model.hiden=8"], ["did you mean 'teacher.model.hidden'"]),
    "wrong type": (["teacher.epochs=zero"], ["teacher.epochs", "'zero'"]),
    "out of range: epochs 0": (["teacher.epochs=0"], ["teacher.epochs", "greater than or equal to 1"]),
    "out of range: fold 10": (["protocol.fold=10"], ["protocol.fold", "less than or equal to 9"]),
    "out of range: dropout 1.0": (["teacher.model.dropout=1.0"], ["teacher.model.dropout", "less than 1"]),
    "out of range: negative lr": (["teacher.lr=-1"], ["teacher.lr", "greater than 0"]),
    "out of range: checkpoint_every 0": (["run.checkpoint_every=0"], ["run.checkpoint_every"]),
    "out of range: distill epochs 0": (["distill.epochs=0"], ["distill.epochs=0", "'auto' or greater than 0"]),
    "out of range: num_graphs -3": (["generate.num_graphs=-3"], ["generate.num_graphs", "'auto' or greater than 0"]),
    "out of range: edge_prob 5": (["generate.randg.edge_prob=5"], ["generate.randg.edge_prob", "less than or equal to 1"]),
    "run.name outside runs_dir": (["run.name='../elsewhere'"], ["run.name", "one folder name inside run.runs_dir"]),
    "unknown choice: arch": (["teacher.model.arch=gat"], ["teacher.model.arch", "'gin' or 'gcn'"]),
    "unknown choice: generator": (["generate.method=foo"], ["generate.method", "'acgkd'"]),
    "unknown choice: device": (["run.device=tpu"], ["run.device", "'cpu'"]),
    "argument not key=value": (["nonsense"], ["'nonsense'", "key=value"]),
    "section given a value": (["teacher=3"], ["'teacher'", "section", "teacher.epochs=..."]),
    "missing TOML file": (["missing.toml"], ["missing.toml", "not found"]),
    "unknown stage to --force": (["--force", "generat"], ["--force generat", "choose one of"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_case(case, tmp_path, tiny_root):
    args, needles = CONFIG_CASES[case]
    r = _cli(["run", *args, f"run.runs_dir='{tmp_path}'", f"--data-root={tiny_root}"])
    _check(case, " ".join(args), r, needles)
    assert not any(tmp_path.iterdir())  # nothing written


TOML_CASES = {
    "TOML syntax error": ("[teacher]\nepochs = = 3\n", ["bad.toml", "not valid TOML"]),
    "TOML unknown key": ("[teacher]\nepoch = 3\n", ["teacher.epoch", "bad.toml", "did you mean 'teacher.epochs'"]),
    "TOML wrong type": ("[teacher]\nepochs = \"many\"\n", ["teacher.epochs", "'many'"]),
    "TOML value for a section": ("teacher = 3\n", ["'teacher'", "section"]),
}


@pytest.mark.parametrize("case", list(TOML_CASES))
def test_toml_case(case, tmp_path, tiny_root):
    text, needles = TOML_CASES[case]
    (tmp_path / "bad.toml").write_text(text)
    r = _cli(["run", str(tmp_path / "bad.toml"), f"run.runs_dir='{tmp_path / 'runs'}'", f"--data-root={tiny_root}"])
    _check(case, f"bad.toml: {text!r}", r, needles)


# --------------------------------------------------------------------------------------------------- datasets
def _tu(root: Path, name: str, edit) -> Path:
    write_tu(root, name, tiny_graphs(8))
    edit(root / name / "raw")
    return root


DATA_CASES = {
    "dataset missing": (lambda raw: shutil.rmtree(raw.parent), ["BAD", "not found", "--data-root"]),
    "dataset file missing": (lambda raw: (raw / "BAD_graph_labels.txt").unlink(),
                             ["lacks BAD_graph_labels.txt", "copy it there"]),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_dataset_case_at_the_cli(case, tmp_path):
    edit, needles = DATA_CASES[case]
    root = _tu(tmp_path / "data", "BAD", edit)
    r = _cli(["run", "data.dataset=BAD", "data.download=false", f"run.runs_dir='{tmp_path / 'runs'}'",
              f"--data-root={root}"])
    _check(case, "data.dataset=BAD " + case, r, needles)


def test_data_root_that_does_not_exist(tmp_path):
    r = _cli(["run", "data.download=false", f"run.runs_dir='{tmp_path / 'runs'}'", f"--data-root={tmp_path / 'nope'}"])
    _check("data root missing", "--data-root=<missing folder>", r, [str(tmp_path / "nope"), "is not a folder", "leave it unset"])


def test_node_set_in_the_graph_pipeline(tmp_path):
    r = _cli(["run", "data.dataset=Cora", f"run.runs_dir='{tmp_path / 'runs'}'", f"--data-root={tmp_path}"])
    _check("node set in the graph pipeline", "data.dataset=Cora", r, ["node-classification set", "gfkd group --dataset Cora"])
    assert not (tmp_path / "runs").exists()  # refused before any folder was made, and without a download attempt


def test_dataset_name_in_the_wrong_case(tmp_path):
    root = _tu(tmp_path / "data", "BAD", lambda raw: None)
    r = _cli(["run", "data.dataset=bad", "data.download=false", f"run.runs_dir='{tmp_path / 'runs'}'", f"--data-root={root}"])
    _check("dataset name in the wrong case", "data.dataset=bad (the folder is BAD)", r, ["'bad' not found", "did you mean 'BAD'?"])


MALFORMED = {
    "malformed edge file": (lambda raw: (raw / "BAD_A.txt").write_text("1, x\n2, 1\n"), ["BAD", "could not be read"]),
    "labels fewer than graphs": (lambda raw: (raw / "BAD_graph_labels.txt").write_text("1\n2\n"),
                                 ["BAD", "label"]),
    "edge to a node outside every graph": (lambda raw: (raw / "BAD_A.txt").write_text(
        (raw / "BAD_A.txt").read_text() + "1, 9999\n9999, 1\n"), ["BAD", "check the raw files"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_dataset_in_the_teacher_stage(case, tmp_path):
    edit, needles = MALFORMED[case]
    root = _tu(tmp_path / "data", "BAD", edit)
    cfg = resolve_config(None, [*TINY, "data.dataset=BAD", f"data.root='{root}'", f"run.runs_dir='{tmp_path}'"])
    r = _through_cli(lambda: teacher.run(cfg, RunLayout(tmp_path / "run"), "k"))
    _check(case, case, r, needles)


# ------------------------------------------------------------------------------ checkpoints, shards, manifests
@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_root, tiny_teacher_dir):
    """A run folder whose teacher and generate stages are finished (tiny), and its config."""
    root = tmp_path_factory.mktemp("finished")
    cfg = resolve_config(None, [*TINY, f"data.root='{tiny_root}'", f"run.runs_dir='{root}'"])
    layout = RunLayout(root / "run")
    shutil.copytree(tiny_teacher_dir, layout.stage_dir("teacher"))
    generate.run(cfg, layout, "gen-key", teacher_dir=layout.stage_dir("teacher"))
    return layout, cfg


@pytest.fixture(scope="module")
def gcn_teacher_dir(tmp_path_factory, tiny_root):
    runs = tmp_path_factory.mktemp("gcn")
    cfg = resolve_config(None, [*TINY, "teacher.model.arch=gcn", f"data.root='{tiny_root}'", f"run.runs_dir='{runs}'"])
    return teacher.run(cfg, RunLayout(runs / "run"), "k") and RunLayout(runs / "run").stage_dir("teacher")


def _copy(finished, tmp_path) -> tuple[RunLayout, object]:
    layout, cfg = finished
    run = RunLayout(tmp_path / "run")
    shutil.copytree(layout.root, run.root)
    return run, cfg


def _rewrite_shard(path: Path, edit) -> None:
    table = pq.read_table(path)
    table = edit(table)
    pq.write_table(table, path)


def _rehash(shards: Path) -> None:
    m = json.loads((shards / "_manifest.json").read_text())
    for name in m["files"]:
        m["files"][name]["sha256"] = hashlib.sha256((shards / name).read_bytes()).hexdigest()
    (shards / "_manifest.json").write_text(json.dumps(m))


def _first_shard(run: RunLayout) -> Path:
    return sorted((run.stage_dir("generate") / "shards").glob("shard-*.parquet"))[0]


def _nan_x(table: pa.Table) -> pa.Table:
    x = table.column("x").to_pylist()
    x[0][0][0] = float("nan")
    return table.set_column(table.column_names.index("x"), "x", pa.array(x, type=table.schema.field("x").type))


def _version(table: pa.Table, v: str) -> pa.Table:
    meta = dict(table.schema.metadata)
    meta[b"gfkd.schema_version"] = v.encode()
    return table.replace_schema_metadata(meta)


def _truncate(p: Path, keep: int = 300) -> None:
    p.write_bytes(p.read_bytes()[:keep])


def _flip_last_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-20] ^= 0xFF
    p.write_bytes(bytes(data))


def _mixed_teacher(run: RunLayout, gcn_dir: Path) -> None:
    shutil.copy(gcn_dir / "teacher.pt", run.stage_dir("teacher") / "teacher.pt")


def _set_json(p: Path, **kw) -> None:
    p.write_text(json.dumps(json.loads(p.read_text()) | kw))


# case -> (stage to run, how to break the finished run, needles); the stage reads the broken input
STAGE_CASES = {
    "teacher of another dataset → group": ("group", "other-dataset", ["trained on TINYDEG", "data.dataset"]),
    "teacher of another dataset → distill": ("distill", "other-dataset", ["trained on TINYDEG", "data.dataset"]),
    "teacher weights of another architecture → generate": ("generate", "other-arch", ["does not fit", "--force teacher"]),
    "teacher weights of another architecture → distill": ("distill", "other-arch", ["does not fit", "--force teacher"]),
    "truncated teacher checkpoint": ("generate", lambda r: _truncate(r.stage_dir("teacher") / "teacher.pt"),
                                     ["teacher.pt", "unreadable", "rerun"]),
    "teacher metadata missing": ("distill", lambda r: (r.stage_dir("teacher") / "teacher.json").unlink(),
                                 ["teacher.json", "not found", "--force teacher"]),
    "teacher checkpoint of another version": ("group", lambda r: _set_json(r.stage_dir("teacher") / "teacher.json",
                                                                           version=99), ["version 99", "retrain"]),
    "truncated shard": ("distill", lambda r: _truncate(_first_shard(r)), ["shard-b00-c000", "checksum", "rerun generate"]),
    "truncated shard, manifest rehashed": ("distill", lambda r: (_truncate(_first_shard(r)),
                                                                 _rehash(_first_shard(r).parent)),
                                           ["shard-b00-c000", "unreadable", "rerun generate"]),
    "shard checksum mismatch": ("group", lambda r: _flip_last_byte(_first_shard(r)), ["checksum", "rerun generate"]),
    "shard of another schema version": ("distill", lambda r: (_rewrite_shard(_first_shard(r), lambda t: _version(t, "2")),
                                                              _rehash(_first_shard(r).parent)),
                                        ["schema version 2", "expected 1", "--force generate"]),
    "shard manifest of another schema version": ("distill", lambda r: _set_json(
        r.stage_dir("generate") / "shards" / "_manifest.json", schema_version=0), ["schema version 0", "--force generate"]),
    "shard manifest missing": ("group", lambda r: (r.stage_dir("generate") / "shards" / "_manifest.json").unlink(),
                               ["_manifest.json", "missing", "rerun generate"]),
    "shard listed but missing": ("distill", lambda r: _first_shard(r).unlink(), ["missing", "rerun generate"]),
    "NaN node features in a shard": ("distill", lambda r: (_rewrite_shard(_first_shard(r), _nan_x),
                                                           _rehash(_first_shard(r).parent)),
                                     ["non-finite", "column 'x'", "--force generate"]),
    "corrupt stage manifest (teacher)": ("teacher", lambda r: r.manifest("teacher").write_text("{not json"),
                                         ["teacher", "manifest.json", "corrupt", "--force teacher"]),
    "finished stage modified (teacher.pt)": ("teacher", lambda r: _flip_last_byte(r.stage_dir("teacher") / "teacher.pt"),
                                             ["teacher.pt", "checksum", "--force teacher"]),
    "unreadable training state": ("teacher", "bad-train-state", ["_train.pt", "unreadable", "delete it"]),
}


@pytest.mark.parametrize("case", list(STAGE_CASES))
def test_stage_case(case, tmp_path, finished, tiny_deg_teacher_dir, gcn_teacher_dir, tiny_teacher_dir):
    stage, breaker, needles = STAGE_CASES[case]
    run, cfg = _copy(finished, tmp_path)
    teacher_key = "k"  # the key tiny_teacher_dir was made with
    teacher_dir = run.stage_dir("teacher")
    if breaker == "other-dataset":
        teacher_dir = tiny_deg_teacher_dir
    elif breaker == "other-arch":
        _mixed_teacher(run, gcn_teacher_dir)
    elif breaker == "bad-train-state":
        shutil.rmtree(run.stage_dir("teacher"))
        staging = run.staging_dir("teacher")
        staging.mkdir()
        (staging / ".cache_key").write_text(teacher_key)
        (staging / teacher.TRAIN_STATE).write_bytes(b"PK\x03\x04 not a checkpoint")
    else:
        breaker(run)
    finished_files = {s: _snapshot(run.stage_dir(s)) for s in ("teacher", "generate") if run.stage_dir(s).exists()}
    calls = {
        "teacher": lambda: teacher.run(cfg, run, teacher_key),
        "generate": lambda: generate.run(cfg, run, "other-gen-key", teacher_dir=teacher_dir),
        "distill": lambda: distill.run(cfg, run, "k", teacher_dir=teacher_dir,
                                       generate_dir=run.stage_dir("generate")),
        "group": lambda: group.run(cfg, run, "k", teacher_dir=teacher_dir, generate_dir=run.stage_dir("generate")),
    }
    r = _through_cli(calls[stage])
    _check(case, f"{case} ({stage} stage)", r, needles)
    assert {s: _snapshot(run.stage_dir(s)) for s in finished_files} == finished_files  # earlier results intact


# ---------------------------------------------------------------------------------------------- non-finite loss
NONFINITE = {
    "teacher lr 1e30": ("teacher", ["teacher.lr=1e30"], ["teacher: non-finite training loss at epoch 0, step",
                                                         "lower teacher.lr (now 1e+30)"]),
    "distill lr 1e30": ("distill", ["distill.lr=1e30", "distill.epochs=3"], ["distill: non-finite loss at epoch", ", step",
                                                         "lower distill.lr (now 1e+30)"]),
    "group lr 1e30": ("group", ["group.graph.lr=1e30"], ["group: non-finite loss term", "at epoch", ", step",
                                                         "lower group.graph.lr (now 1e+30)"]),
}


@pytest.mark.parametrize("case", list(NONFINITE))
def test_non_finite_loss_names_stage_step_and_cause(case, tmp_path, finished):
    stage, extra, needles = NONFINITE[case]
    run, cfg = _copy(finished, tmp_path)
    cfg = resolve_config(None, [*TINY, *extra, f"data.root='{cfg.data.root}'", f"run.runs_dir='{tmp_path}'"])
    before = _snapshot(run.stage_dir("generate"))
    dirs = {"teacher_dir": run.stage_dir("teacher"), "generate_dir": run.stage_dir("generate")}
    call = {"teacher": lambda: teacher.run(cfg, RunLayout(tmp_path / "fresh"), "k"),
            "distill": lambda: distill.run(cfg, run, "k", **dirs),
            "group": lambda: group.run(cfg, run, "k", **dirs)}[stage]
    _check(case, f"{' '.join(extra)} ({stage} stage)", _through_cli(call), needles)
    assert _snapshot(run.stage_dir("generate")) == before


# ------------------------------------------------------------------------------------- environment, run folder
def test_unwritable_output_folder(tmp_path, tiny_root):
    (tmp_path / "file").write_text("a file where the runs folder should be")
    r = _cli(["run", *TINY, f"run.runs_dir='{tmp_path / 'file' / 'runs'}'", f"--data-root={tiny_root}"])
    _check("unwritable output folder", "run.runs_dir under a file", r, ["is a file, not a folder", "set run.runs_dir"])


def test_a_run_folder_that_is_a_file(tmp_path, tiny_root):
    """It used to read "not writable (File exists): set run.runs_dir to a writable folder": a permission problem."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "tiny-cv10-fold0").write_text("a file where the run folder should be")
    r = _cli(["run", *TINY, f"run.runs_dir='{runs}'", f"--data-root={tiny_root}"])
    _check("run folder is a file", "a file at the run folder's path", r,
           ["tiny-cv10-fold0 is a file, not a folder: remove it or choose another run.name"])


def _refused_server(tmp_path: Path, tiny_root: Path, case: str, var: str, url: str, fix: str) -> None:
    """`gfkd run` with `var` naming a server on a closed port ({port} in `url`): one line, before the run folder."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    r = _cli(["run", *TINY, f"run.runs_dir='{tmp_path}'", f"--data-root={tiny_root}"], env={var: url.format(port=port)})
    _check(case, f"{var}={url.format(port='<closed port>')}", r, [url.format(port=port), "unreachable", fix])
    assert not any(tmp_path.iterdir())  # refused before the run folder (and Prefect)


def test_unreachable_tracking_server(tmp_path, tiny_root):
    _refused_server(tmp_path, tiny_root, "unreachable tracking server", "MLFLOW_TRACKING_URI", "http://127.0.0.1:{port}",
                    "unset MLFLOW_TRACKING_URI")


def test_unreachable_prefect_api(tmp_path, tiny_root):
    _refused_server(tmp_path, tiny_root, "unreachable Prefect API", "PREFECT_API_URL", "http://127.0.0.1:{port}/api",
                    "unset PREFECT_API_URL")


def test_cuda_on_a_machine_without_one(tmp_path, tiny_root, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = _cli(["run", *TINY, "run.device=cuda", f"run.runs_dir='{tmp_path}'", f"--data-root={tiny_root}"])
    _check("no CUDA device", "run.device=cuda on a CPU-only machine", r, ["run.device=cuda", "use run.device=cpu or auto"])
    assert not any(tmp_path.iterdir())  # refused before the run folder (and Prefect)


def test_second_writer_on_the_same_run_folder(tmp_path, tiny_root):
    run_dir = tmp_path / "tiny-cv10-fold0"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")  # the first writer's
    with open(run_dir / ".lock", "w") as held:  # a `gfkd run` holding the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = _snapshot(run_dir)
        r = _cli(["run", *TINY, f"run.runs_dir='{tmp_path}'", f"--data-root={tiny_root}"])
    _check("second writer", "a second gfkd run on a run folder in use", r,
           ["another gfkd run is writing", str(run_dir), "choose another run.name"])
    assert _snapshot(run_dir) == before


def test_ui_on_a_folder_without_a_run(tmp_path):
    r = _cli(["ui", str(tmp_path)])
    _check("ui without a run", "gfkd ui <empty folder>", r, ["no MLflow database", "gfkd run"])


def test_ui_on_a_port_in_use(tmp_path, tiny_root):
    mlflow_db_file(RunLayout(tmp_path).mlflow_db)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _cli(["ui", str(tmp_path), "--port", str(port)])
    _check("ui on a port in use", "gfkd ui <run> --port <a port something listens on>", r,
           [f"cannot listen on 127.0.0.1:{port}", "pass another --port"])


@pytest.mark.parametrize("args,needles", [
    (["--dataset", "MUTAG"], ["MUTAG", "Cora"]),
    (["--seeds", "a..b"], ["a..b"]),
    (["--dataset", "Cora", "data.dataset=MUTAG"], ["takes data.dataset from --dataset"]),
    (["--backbone", "gat", "group.backbone=gcn"], ["takes group.backbone from --backbone"]),
])
def test_group_command_bad_arguments(args, needles, tmp_path):
    r = _cli(["group", *args, f"run.runs_dir='{tmp_path}'"])
    _check(f"gfkd group {' '.join(args)}", f"gfkd group {' '.join(args)}", r, needles)


@pytest.mark.e2e
def test_stage_error_through_the_pipeline_is_one_line(tmp_path, tiny_root):
    """A stage's GfkdError inside the Prefect flow: one error line, exit 2, no traceback; the finished teacher
    stays as it was (generate fails on a non-finite loss after the teacher finished)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env |= {"DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "flows.cli", "run", *TINY, f"run.runs_dir='{tmp_path}'", f"--data-root={tiny_root}"]
    ok = subprocess.run([*args, "generate.banks=1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-3000:]
    run_dir = tmp_path / "tiny-cv10-fold0"
    before = _snapshot(run_dir / "teacher")
    bad = subprocess.run([*args, "distill.lr=1e30", "distill.epochs=3"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    _record("non-finite loss through the pipeline", "gfkd run distill.lr=1e30 (after a finished run)",
            "\n".join(l for l in bad.stderr.splitlines() if l.startswith("gfkd: error:")))
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr, bad.stderr[-3000:]
    errors = [l for l in bad.stderr.splitlines() if l.startswith("gfkd: error:")]
    assert len(errors) == 1 and "distill: non-finite loss at epoch" in errors[0] and "distill.lr" in errors[0]
    assert _snapshot(run_dir / "teacher") == before
    assert json.loads((run_dir / "summary.json").read_text())["stages"]["distill"]["status"] == "failed"


@pytest.mark.parametrize("args,expect", [
    ([], "Cora"),
    (["data.dataset=CiteSeer"], "CiteSeer"),
    (["{file}"], "CiteSeer"),  # used to train on Cora, the flag's default, without a word
    (["{file}", "--dataset", "Cora"], "Cora"),  # the flag wins over the file
])
def test_group_takes_its_dataset_from_the_flag_else_the_config_else_cora(args, expect, tmp_path, monkeypatch):
    import gfkd.group.runner

    (tmp_path / "c.toml").write_text('[data]\ndataset = "CiteSeer"\n')
    seen = []

    def stop(cfg, *a, **kw):  # before training: the config is what this test reads
        seen.append(cfg)
        raise GfkdError("stopped by the test")

    monkeypatch.setattr(gfkd.group.runner, "run_node_group", stop)
    monkeypatch.setattr(gfkd.group.runner, "start_folder", lambda *a, **kw: None)
    r = CliRunner().invoke(app, ["group", *[a.format(file=tmp_path / "c.toml") for a in args],
                                 f"run.runs_dir='{tmp_path}'", "--seeds", "0"])
    assert [c.data.dataset for c in seen] == [expect] and "stopped by the test" in r.output, r.output
