import re
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from gfkd.config import RunConfig, _fields, _item_types, _leaf_types, config_hash, resolve_config
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
    ("seed=3", "every key is in a section: did you mean 'run.seed' or 'protocol.seed'?"),  # not one picked at random
    ("graph=1", "'graph' is the section 'group.graph': set one of its keys, e.g. group.graph."),
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
    # every number has an upper bound, named with the key's range: an int, an int past int64, auto or an int, a float,
    # auto or a float, a float or none, a learning rate (pydantic alone writes 1e30 in 31 digits), a [lo, hi] pair
    ("teacher.model.hidden=1000000", "teacher.model.hidden=1000000 is invalid: Input should be less than or equal to "
     "4096 (allowed: int ≥ 1 and ≤ 4096)"),  # was a 4 TB allocation's traceback in the teacher stage
    ("teacher.epochs=99999999999999999999", "less than or equal to 1000000 (allowed: int ≥ 1 and ≤ 1000000)"),
    ("generate.num_graphs=100000000", "generate.num_graphs=100000000 is invalid: Input should be 'auto' or less than "
     "or equal to 1000000 (allowed: auto or int > 0 and ≤ 1000000)"),
    ("generate.max_nodes=100000000", "(allowed: int ≥ 2 and ≤ 10000)"),
    ("group.graph.anchor_tau=1001", "group.graph.anchor_tau=1001 is invalid: Input should be less than or equal to "
     "1000 (allowed: float > 0 and ≤ 1000)"),
    ("generate.acgkd.beta_deg=1e7", "'auto' or less than or equal to 1000000 (allowed: auto or float ≥ 0 and ≤ 1000000)"),
    ("teacher.weight_decay=2", "(allowed: float ≥ 0 and ≤ 1 or none)"),
    ("teacher.lr=1e31", "teacher.lr=1e+31 is invalid: Input should be less than or equal to 1e+30 (allowed: float > 0 "
     "and ≤ 1e+30)"),
    ("generate.node_range=[10, 20000]", "node_range must be [lo, hi] with 2 <= lo <= hi <= 10000"),
    ("teacher.epochs=0", "greater than or equal to 1 (allowed: int ≥ 1 and ≤ 1000000)"),  # a lower bound: the range too
    # an integer key takes no float, whole or not (pydantic alone reads 1e3 as 1000 and refuses only 3.5)
    ("teacher.epochs=1e3", "teacher.epochs=1000.0 is invalid: a float is not a value of this key: write 1000"),
    ("teacher.epochs=3.5", "a float is not a value of this key: write an integer"),
    ("distill.epochs=2.0", "distill.epochs=2.0 is invalid: a float is not a value of this key: write 2"),  # auto or int
    ("generate.node_range=[10.0, 29]", "a float is not a value of this key: write 10"),  # each item of a pair
    ("run.threads=2.0", "run.threads must be auto or an integer"),
    # the tool's own folders in run.runs_dir: _cache (datasets), benchmark (`gfkd benchmark`'s default folder)
    ("run.name=_cache", "run.name may not start with '_' or '.': those folders in run.runs_dir are the tool's own"),
    ("run.name='.hidden'", "run.name may not start with '_' or '.'"),
    ("run.name=benchmark", "the folder in run.runs_dir that `gfkd benchmark` writes its table and tracking to"),
    ("run.name=Benchmark", "`gfkd benchmark`"),  # the same folder on a case-insensitive file system
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
    f.write_text("epochs = 3\n")  # outside any section: every section that has the key, not one close match
    with pytest.raises(ConfigError, match=re.escape("did you mean 'teacher.epochs' or 'distill.epochs' or "
                                                    "'group.epochs' or 'group.graph.epochs' (in the file: under its "
                                                    "[section])?")):
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


# Numeric keys whose upper bound is checked by a validator instead of Field(le=...), and where.
BOUNDED_BY_VALIDATOR = {
    "run.threads": "RunSection._threads: auto or 1..1024",
    "distill.width_mult": "DistillConfig._width: teacher or 1..16",
    "generate.node_range": "GenerateConfig._range_ordered: 2 <= lo <= hi <= NODES_MAX",
}
UNBOUNDED: dict[str, str] = {}  # numeric keys that may take any size, with the reason: none today


def _numeric_keys() -> dict[str, set]:
    """Every config key that takes a number (or a pair of numbers), with the number types it admits."""
    out = {}
    for key, field in _fields(RunConfig):
        kinds = (_leaf_types(field.annotation) | _item_types(field.annotation)) & {int, float}
        if kinds:
            out[key] = kinds
    return out


def _upper(field) -> tuple[str, float] | None:
    """A field's upper bound, ('le' or 'lt', value), from its own metadata or from an Annotated member of its type
    (`auto` or int ≤ N); None when it has neither."""
    found = list(field.metadata)
    stack = [field.annotation]
    while stack:
        ann = stack.pop()
        if typing.get_origin(ann) is typing.Annotated:
            found += [m for a in typing.get_args(ann)[1:] for m in getattr(a, "metadata", [a])]
        else:
            stack += typing.get_args(ann)
    return next(((k, getattr(m, k)) for m in found for k in ("le", "lt") if getattr(m, k, None) is not None), None)


def test_every_number_has_an_upper_bound():
    """docs/pipeline.md: every number is bounded. A new numeric key without one fails here: give it le=... (or name
    its validator in BOUNDED_BY_VALIDATOR, or its reason in UNBOUNDED)."""
    fields = dict(_fields(RunConfig))
    numeric = _numeric_keys()
    assert len(numeric) > 90  # the walk reaches every section
    missing = [k for k in numeric if _upper(fields[k]) is None and k not in BOUNDED_BY_VALIDATOR and k not in UNBOUNDED]
    assert not missing, f"numeric keys without an upper bound: {missing}"
    assert set(BOUNDED_BY_VALIDATOR) | set(UNBOUNDED) <= set(numeric)  # the lists name keys that exist
    assert all(_upper(fields[k]) is None for k in BOUNDED_BY_VALIDATOR)  # and only ones that need naming


@pytest.mark.parametrize("key", [k for k in _numeric_keys() if k not in UNBOUNDED])
def test_every_number_refuses_an_absurd_value_and_takes_its_bound(key):
    """Whatever holds the bound (Field, validator), an absurd value is a one-line error naming the key; a Field's
    inclusive bound itself is accepted (the range the error and the reference table give is the true one)."""
    kinds, field = _numeric_keys()[key], dict(_fields(RunConfig))[key]
    huge = "1e300" if float in kinds else str(10**18)
    with pytest.raises(ConfigError) as err:
        resolve_config(None, [f"{key}=[2, {huge}]" if _item_types(field.annotation) else f"{key}={huge}"])
    msg = str(err.value)
    assert "\n" not in msg and (f"config value {key}=" in msg or f"{key} must be" in msg), msg
    bound = _upper(field)
    if bound is not None and bound[0] == "le":
        value = resolve_config(None, [f"{key}={bound[1]!r}"])
        for part in key.split("."):
            value = getattr(value, part)
        assert value == bound[1]


@pytest.mark.parametrize("key", [k for k, kinds in _numeric_keys().items() if float not in kinds])
def test_every_integer_key_refuses_a_float(key):
    """1e3 and 2.0 are TOML floats: an integer key refuses them as it refuses 3.5, saying which integer to write."""
    pair = bool(_item_types(dict(_fields(RunConfig))[key].annotation))
    with pytest.raises(ConfigError) as err:
        resolve_config(None, [f"{key}=[2.0, 3]" if pair else f"{key}=2.0"])
    msg = str(err.value)
    assert "\n" not in msg and key in msg
    assert ("run.threads must be auto or an integer" if key == "run.threads"
            else "a float is not a value of this key: write 2") in msg


def test_a_float_for_an_integer_key_is_refused_in_a_file_too(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[teacher]\nepochs = 1e3\n")
    with pytest.raises(ConfigError, match=f"teacher.epochs=1000.0 \\(in '{re.escape(str(f))}'\\) is invalid: a float is "
                       "not a value of this key: write 1000"):
        resolve_config(f)
    assert resolve_config(None, ["teacher.lr=1", "generate.beta_bn=2"]).teacher.lr == 1.0  # an int for a float: fine


@pytest.mark.parametrize("overrides,needle", [
    (["distill.student.hidden=4096", "distill.width_mult=2"], "distill.student.hidden × distill.width_mult = 4096 × 2 "
     "is wider than a layer may be (4096): lower one of them"),
    (["group.backbone=gat", "group.hidden=1024"], "group.heads × group.hidden = 8 × 1024 is wider than a GAT layer may "
     "be (4096): lower one of them"),
])
def test_widths_built_from_two_keys_are_bounded_too(overrides, needle):
    with pytest.raises(ConfigError) as err:
        resolve_config(None, overrides)
    assert str(err.value) == needle


def test_widths_within_the_bound_stay_valid():
    resolve_config(None, ["distill.student.hidden=256", "distill.width_mult=16"])  # 4096 wide
    resolve_config(None, ["distill.student.hidden=4096", "distill.width_mult=teacher"])  # d_T ≤ 4096 already
    resolve_config(None, ["group.backbone=gat", "group.heads=64", "group.hidden=64"])
    resolve_config(None, ["group.backbone=gcn", "group.hidden=4096"])  # GCN layers are hidden wide


def test_documented_and_used_values_stay_valid():
    """The values docs/, benchmarks/, configs/ and the other tests pass are inside the bounds."""
    cfg = resolve_config(None, ["teacher.lr=1e30", "distill.lr=1e30", "group.graph.lr=1e30",  # docs/reliability.md
                                "generate.max_nodes=512", "generate.iterations=100000", "generate.banks=12",
                                "generate.acgkd.beta_deg=30", "generate.acgkd.beta_hist=10", "group.graph.anchor_tau=12",
                                "generate.gfkd.iterations=2500", "distill.width_mult=16", "group.backbone=gat",
                                "run.name=mutag-quick", "run.name=my_benchmark", "run.name=benchmark-2"])
    assert (cfg.teacher.lr, cfg.generate.max_nodes, cfg.run.name) == (1e30, 512, "benchmark-2")
    for toml in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml")):
        resolve_config(toml)


def test_skipping_self_loops_needs_self_loops_in_the_data():
    with pytest.raises(ConfigError, match="data.selfloop_skip_isolated=true .* teacher.model.self_loops_in_data"):
        resolve_config(None, ["data.selfloop_skip_isolated=true"])
    with pytest.raises(ConfigError, match="selfloop_skip_isolated"):
        resolve_config(None, ["generate.gfkd.parity=reference", "teacher.model.self_loops_in_data=false"])
    ok = resolve_config(None, ["teacher.model.self_loops_in_data=true"])
    assert ok.model_switches == {"loops_in_data": True, "skip_isolated": False, "logit_dropout": False}


def test_auto_epochs_are_50_on_a_union_of_banks_150_on_one_bank_or_real_graphs_and_400_under_paper():
    """acgkd.md §11 (distill.epochs = auto) and gfkd.md §5 (the paper profile's 400)."""
    d = resolve_config(None, []).distill
    assert d.epochs == "auto"
    assert (d.resolved_epochs(True, 6), d.resolved_epochs(True, 1), d.resolved_epochs(False, 6)) == (50, 150, 150)
    paper = resolve_config(None, ["distill.profile=paper"]).distill
    assert paper.resolved_epochs(True, 6) == paper.resolved_epochs(False, 1) == 400
    assert resolve_config(None, ["distill.epochs=7"]).distill.resolved_epochs(True, 6) == 7


def test_a_key_given_twice_takes_its_last_value():
    """docs/config.md: scripts append to a base list of overrides (the suite's TINY + teacher.epochs=400)."""
    assert resolve_config(None, ["teacher.epochs=3", "teacher.epochs=400"]).teacher.epochs == 400
