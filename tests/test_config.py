import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from gfkd.config import RunConfig, config_hash, resolve_config
from gfkd.errors import ConfigError


def test_defaults_follow_the_spec():
    cfg = resolve_config(None)
    assert cfg.teacher.model.arch == "gin" and cfg.teacher.model.layers == 5 and cfg.teacher.model.hidden == 128
    assert cfg.teacher.epochs == 300 and cfg.teacher.lr == 0.01 and cfg.teacher.batch_size == 32
    assert cfg.teacher.resolved_label_smoothing == 0.1 and cfg.teacher.resolved_weight_decay == 5e-4
    assert cfg.protocol.name == "cv10" and cfg.data.dataset == "MUTAG" and cfg.data.max_degree_cap == 1000
    assert cfg.run_name == "mutag-cv10-fold0"


def test_overrides_are_typed():
    cfg = resolve_config(None, ["teacher.epochs=7", "teacher.model.arch=gcn", "protocol.name=holdout",
                                "protocol.seed=29", "data.download=false", "teacher.profile=gfkd"])
    assert cfg.teacher.epochs == 7 and cfg.teacher.model.arch == "gcn" and cfg.data.download is False
    assert cfg.run_name == "mutag-holdout-seed29" and cfg.split_seed == 29
    assert cfg.teacher.resolved_label_smoothing == 0.0 and cfg.teacher.resolved_weight_decay == 0.0
    edge = resolve_config(None, ["generate.randg.edge_prob=1", "generate.acgkd.xi=1", "distill.epochs=3", "run.name=a.b_c-2"])
    assert (edge.generate.randg.edge_prob, edge.generate.acgkd.xi, edge.distill.epochs) == (1, 1, 3)


@pytest.mark.parametrize("override,needle", [
    ("teacher.epoch=5", "did you mean 'teacher.epochs'"),
    ("techer.lr=0.1", "did you mean 'teacher.lr'"),
    ("teacher.epochs=abc", "teacher.epochs"),
    ("teacher.epochs=-1", "teacher.epochs"),
    ("teacher.model.arch=gat", "teacher.model.arch"),
    ("protocol.fold=10", "protocol.fold"),
    ("teacher.model=3", "is a section"),
    ("epochs", "not key=value"),
    # "auto or a number" keys are bounded too (auto stays valid)
    ("distill.epochs=0", "distill.epochs=0 is invalid: Input should be 'auto' or greater than 0"),
    ("generate.num_graphs=-3", "generate.num_graphs"),
    ("generate.randg.edge_prob=5", "generate.randg.edge_prob"),
    ("generate.acgkd.init_density=7", "generate.acgkd.init_density"),
    ("generate.acgkd.xi=-2", "generate.acgkd.xi"),
    ("generate.acgkd.beta_deg=-1", "generate.acgkd.beta_deg"),
    # the run folder stays inside run.runs_dir
    ("run.name='../../etc'", "run.name is one folder name"),
    ("run.name='a/b'", "run.name is one folder name"),
    ("teacher.epochs=true", "true/false is not a value of this key"),  # pydantic alone reads it as 1
    ("teacher.epochs='10'", "teacher.epochs='10' is invalid: text is not a value of this key: write a number"),
    ("teacher.lr='0.1'", "write a number"),  # pydantic alone reads both as numbers
    ("data.download='yes'", "write true or false"),  # and this as true
    ("teacher.epochs=abc", "text is not a value of this key"),
    ("run.deterministic=1", "a number is not a value of this key: write true or false"),  # pydantic reads 1 as true
    ("teacher.lr=inf", "teacher.lr=inf is invalid: Input should be a finite number"),
    ("generate.beta_bn=inf", "generate.beta_bn"),
    ("run.seed=99999999999", "run.seed"),  # numpy seeds stop at 2**32 - 1, deep inside a stage
    ("protocol.seed=4294967296", "protocol.seed"),
    ("data.dataset='/etc'", "data.dataset is a dataset's folder name"),  # the cache path would be /etc/raw
    ("data.dataset='../x'", "data.dataset is a dataset's folder name"),
    ("teacher.epochs=3\nteacher.lr=5", "spans more than one line"),  # TOML would read the second line as a key
    # a fixed-length pair: pydantic alone says "Field required" or "Input should be a valid tuple"
    ("generate.node_range=[12]", "generate.node_range takes exactly 2 items: write e.g. generate.node_range=[10, 29]"),
    ("generate.node_range=[1, 2, 3]", "takes exactly 2 items"),
    ("generate.node_range=12", "takes exactly 2 items"),
    ("generate.node_range=[5, 3]", "node_range must be [lo, hi]"),
    # a list given as a word, as the shell leaves `["kd_real"]`: pydantic alone says "Input should be a valid tuple"
    ("distill.baselines=[kd_real]", """is not a list: write e.g. 'distill.baselines=["kd_real"]' (in single quotes"""),
    ("distill.baselines=kd_real", "or 'distill.baselines=[]' for none"),
    ("run.runs_dir=''", "run.runs_dir='' is invalid: an empty path"),  # Path('') would be the current folder
    ("data.cache_dir=' '", "data.cache_dir=' ' is invalid: an empty path"),
    ("data.root='~nosuchuser-gfkd/d'", "cannot expand ~nosuchuser-gfkd: no such user"),  # was a RuntimeError's traceback
    ("run.threads=1025", "run.threads must be auto or an integer in 1..1024"),
])
def test_bad_overrides_are_one_line_errors(override, needle):
    with pytest.raises(ConfigError) as err:
        resolve_config(None, [override])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_text_still_reaches_keys_that_take_text():
    cfg = resolve_config(None, ["distill.epochs=auto", "run.threads='2'", "data.dataset=PTC_MR", "run.runs_dir=r"])
    assert (cfg.distill.epochs, cfg.run.threads, cfg.data.dataset, str(cfg.run.runs_dir)) == ("auto", 2, "PTC_MR", "r")


def test_toml_file_then_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[data]\ndataset = "PROTEINS"\n[teacher]\nepochs = 20\n[teacher.model]\nhidden = 64\n')
    cfg = resolve_config(f, ["teacher.epochs=30"])
    assert (cfg.data.dataset, cfg.teacher.epochs, cfg.teacher.model.hidden) == ("PROTEINS", 30, 64)
    f.write_text("[teacher]\nepohcs = 3\n")
    with pytest.raises(ConfigError, match="epohcs"):
        resolve_config(f)
    f.write_text('[teacher]\nepochs = "two"\n')  # a bad value names the file that set it, not an override
    with pytest.raises(ConfigError, match=f"teacher.epochs='two' \\(in '{re.escape(str(f))}'\\) is invalid"):
        resolve_config(f)
    with pytest.raises(ConfigError, match="teacher.epochs='x' is invalid"):  # the override set it last
        resolve_config(f, ["teacher.epochs=x"])
    f.write_text('[distill]\nbaselines = "kd_real"\n')
    with pytest.raises(ConfigError, match=re.escape("""is not a list: write e.g. baselines = ["kd_real"] there""")):
        resolve_config(f)
    f.write_text("[teacher\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_config(f)
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("text,needle", [
    ("[nonsense]\n", "unknown config key 'nonsense'"),  # an empty table used to be skipped
    ("[teacher.epochs]\n", "[teacher.epochs] in '{f}' is a key, not a section: write `epochs = ...` under [teacher]"),
    ("[teacher]\n[teacher.model]\n", None),  # empty known sections are fine
])
def test_empty_tables_must_name_sections(tmp_path, text, needle):
    f = tmp_path / "c.toml"
    f.write_text(text)
    if needle is None:
        assert resolve_config(f) == resolve_config(None)
        return
    with pytest.raises(ConfigError) as err:
        resolve_config(f)
    assert needle.format(f=f) in str(err.value)


def test_a_config_path_that_is_a_folder_or_unreadable_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "d.toml").mkdir()
    with pytest.raises(ConfigError, match="is a folder: pass a .toml file"):
        resolve_config(tmp_path / "d.toml")
    f = tmp_path / "c.toml"
    f.write_text("[teacher]\n")

    def denied(self, *a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)  # chmod 000 does not stop root, who runs CI here
    with pytest.raises(ConfigError, match=r"could not be read \(Permission denied\): check that it is a readable file"):
        resolve_config(f)


def test_config_is_frozen_and_hash_tracks_stage_inputs():
    cfg = resolve_config(None)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.teacher.epochs = 3  # type: ignore[misc]
    other = resolve_config(None, ["teacher.epochs=3"])
    renamed = resolve_config(None, ["run.name=elsewhere", "data.root='/x'"])
    assert config_hash(cfg.stage_config("teacher")) != config_hash(other.stage_config("teacher"))
    assert config_hash(cfg.stage_config("teacher")) == config_hash(renamed.stage_config("teacher"))
    assert isinstance(RunConfig.model_validate(cfg.model_dump()), RunConfig)
    # widened group students are built from distill.width_mult and distill.projector: both enter the group key
    wide = resolve_config(None, ["group.graph.student=widened"])
    wider = resolve_config(None, ["group.graph.student=widened", "distill.width_mult=2", "distill.projector=linear"])
    assert config_hash(wide.stage_config("group")) != config_hash(wider.stage_config("group"))


def test_docs_config_reference_is_current():
    from pathlib import Path

    from gfkd.config import config_reference

    doc = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    assert config_reference() in doc, "regenerate the table in docs/config.md with `gfkd config --reference`"


def test_a_path_key_expands_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # `key=~/x` reaches us unexpanded: the shell expands only a leading ~
    cfg = resolve_config(None, ["run.runs_dir='~/runs'", "data.root=~/data", "data.cache_dir='~/cache'"])
    assert (cfg.run.runs_dir, cfg.data.root, cfg.data.cache_dir) == (tmp_path / "runs", tmp_path / "data", tmp_path / "cache")
