"""Run configuration: one frozen pydantic model per stage, composed into `RunConfig`.

Defaults live here, in code. A TOML file overrides them section by section, then `key=value` arguments override
single keys (`teacher.epochs=50`, `data.dataset=PROTEINS`). Every value is type-checked by pydantic; an unknown key
is an error naming the key and the closest valid one.

    >>> cfg = resolve_config(None, ["teacher.epochs=5", "data.dataset=PTC_MR"])
    >>> cfg.teacher.epochs, cfg.data.dataset
    (5, 'PTC_MR')
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gfkd.errors import ConfigError


_FOLDER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def folder_name(text: str, what: str, example: str) -> str:
    """`text` when it is one plain folder name (letters, digits, '.', '_', '-'; not starting with '.': no '/', no '..');
    else a ValueError that says `what` the value is and gives `example`."""
    if _FOLDER_NAME.fullmatch(text) is None:
        raise ValueError(f"{what} (letters, digits, '.', '_', '-'; no '/' or '..'): e.g. {example}")
    return text


Fraction = Annotated[float, Field(gt=0, le=1)]  # a share of something: (0, 1]
Probability = Annotated[float, Field(ge=0, le=1)]


class CrossKeyError(ValueError):
    """A check across keys (a model validator) failed; its message names the keys and the fix, and is printed as is."""


STAGES = ("teacher", "generate", "distill", "group", "evaluate")  # stages that exist today, in pipeline order


SEED_MAX = 1_000_000  # the stages seed numpy with 1000 · (protocol seed + run seed) + k, which must stay below 2**32

# Upper bounds of the other numbers: far above any run in docs/ or benchmarks/, so that only an absurd value is refused,
# here and by name, instead of deep inside a stage (teacher.model.hidden=1000000: a 4 TB allocation, a traceback).
WIDTH_MAX = 4096  # a layer's width (docs/: 128, GIN-5-128); at 65536 a GIN-5 teacher's weights alone need ~140 GB
EPOCHS_MAX = 1_000_000  # epochs, warm-ups, ramps and every-N-epochs intervals
STEPS_MAX = 1_000_000  # generator steps and every-N-steps intervals (the kill tests run 100 000)
GRAPHS_MAX = 1_000_000  # graphs of a bank, and of a batch (which holds at most a bank or a training set)
NODES_MAX = 10_000  # nodes of a pseudo-graph: above every TU set's largest graph (DD: 5748); dense pairs grow as N²
DEGREE_MAX = 100_000  # the degree one-hot's cap; only a dataset's largest degree below it is used
HEADS_MAX = 64  # GAT heads (the paper's 8)
LR_MAX = 1e30  # learning rates: a diverging loss is refused by the stage, naming the lr (docs/reliability.md: lr 1e30)
WEIGHT_MAX = 1_000_000  # loss weights and scale factors (docs/: 30 at most)
TEMPERATURE_MAX = 1000  # temperatures (docs/: 21 at most, ctkd_paper's τ range)
WEIGHT_DECAY_MAX = 1  # Adam weight decay (docs/: 5e-4)
RESERVED_RUN_NAMES = ("benchmark",)  # folders the tool makes in run.runs_dir: `gfkd benchmark`'s default --name

Weight = Annotated[float, Field(ge=0, le=WEIGHT_MAX)]  # a loss weight


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _scalars_as_written(cls, v: Any, info) -> Any:
        """pydantic's lax mode reads true as 1, '10' as 10 and 1e3 as 1000: refuse a bool where the key takes none
        (teacher.epochs=true), text where the key takes only numbers or true/false (teacher.epochs='10'), and a
        float where it takes an integer (teacher.epochs=1e3, as 3.5 is)."""
        ann = cls.model_fields[info.field_name].annotation
        kinds = _leaf_types(ann)
        if isinstance(v, bool) and bool not in kinds:
            raise ValueError("true/false is not a value of this key")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and kinds <= {bool, type(None)}:
            raise ValueError("a number is not a value of this key: write true or false")
        items = _item_types(ann)  # a pair such as [lo, hi]: each item is read as a value is
        for x, want in ([(x, items) for x in v] if isinstance(v, (list, tuple)) else [(v, kinds)]):
            if isinstance(x, float) and int in want and float not in want:
                raise ValueError(_whole_number(x))
        if isinstance(v, str) and kinds <= {int, float, bool, type(None)}:
            want = "true or false" if kinds <= {bool, type(None)} else "a number"
            raise ValueError(f"text is not a value of this key: write {want}, without quotes")
        return v

    @field_validator("*", mode="before")
    @classmethod
    def _paths_as_meant(cls, v: Any, info) -> Any:
        """A path key: `~` expanded (the shell leaves `key=~/runs` alone), and an empty value refused (Path('') would
        be the current folder)."""
        if Path not in _leaf_types(cls.model_fields[info.field_name].annotation) or not isinstance(v, (str, Path)):
            return v
        if not str(v).strip():
            raise ValueError("an empty path: give a folder, or leave the key unset for its default")
        try:
            return Path(v).expanduser()
        except RuntimeError:  # ~name of no user: pydantic reports only a ValueError as the key's error
            raise ValueError(f"cannot expand {str(v).split('/')[0]}: no such user; write the folder out") from None


def _whole_number(x: float) -> str:
    """The error for a float where a key takes an integer: 1e3 and 10.0 are refused as 3.5 is (pydantic's lax mode
    would read the first two as 1000 and 10), with the integer to write where there is one."""
    fix = f"write {int(x)}" if x.is_integer() and abs(x) < 1e15 else "write an integer"
    return f"a float is not a value of this key: {fix}"


def _item_types(ann: Any) -> set:
    """What the items of a tuple field admit (`tuple[int, int]` -> {int}); an empty set for any other field."""
    if typing.get_origin(ann) is not tuple:
        return set()
    return set().union(*(_leaf_types(a) for a in typing.get_args(ann) if a is not Ellipsis))


def _leaf_types(ann: Any) -> set:
    """What a field's annotation admits, Annotated bounds and unions unwrapped: int, float, bool, NoneType, or
    anything else as itself (str, Path, a section) or as Literal (whose values are text here)."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Annotated:
        return _leaf_types(args[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_leaf_types(a) for a in args))
    return {Literal if origin is Literal else ann}


class RunSection(_Frozen):
    """Where the run lives and how it is seeded."""

    name: str | None = Field(None, description="run folder name; default derives from dataset, protocol and split; "
                             "not benchmark nor starting with '_' or '.' (the tool's own folders in runs_dir)")
    runs_dir: Path = Field(Path("runs"), description="parent folder of all run folders and the dataset cache")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="offset added to the protocol's per-split seed")
    device: Literal["auto", "cpu", "cuda"] = Field("cpu", description="auto: cuda when available")
    checkpoint_every: int = Field(
        5, ge=1, le=EPOCHS_MAX, description="teacher and group: save a resumable training state every N epochs "
        "(results do not depend on it)")
    deterministic: bool = Field(True, description="torch's deterministic kernels: with more than one thread, a rerun "
                                "repeats bit for bit (docs/pipeline.md); the floats still depend on run.threads")
    threads: Literal["auto"] | int = Field(1, description="torch intra-op threads, 1..1024 [1, as the benchmarks]; auto: leave "
                                           "torch's setting as it is (its default: the core count). Two threads "
                                           "ran 7-24x slower beside other jobs (docs/pipeline.md)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        """One folder name, and not one of the tool's own folders in run.runs_dir: names starting with '_' or '.'
        (<runs_dir>/_cache holds the datasets) and `gfkd benchmark`'s default folder."""
        if v is None:
            return v
        if v[:1] in ("_", ".") and "/" not in v and ".." not in v:  # '../x' gets the folder-name error below
            raise ValueError("run.name may not start with '_' or '.': those folders in run.runs_dir are the tool's own "
                             "(_cache: the datasets); e.g. run.name=mutag-try2")
        folder_name(v, "run.name is one folder name inside run.runs_dir", "run.name=mutag-try2")
        if v.lower() in RESERVED_RUN_NAMES:
            raise ValueError("the folder in run.runs_dir that `gfkd benchmark` writes its table and tracking to (its "
                             "default --name): choose another, e.g. run.name=mutag-try2")
        return v

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, v: Any) -> str | int:
        if v == "auto":
            return v
        try:
            n = int(v)
        except (TypeError, ValueError):
            n = 0
        if isinstance(v, bool) or not 1 <= n <= 1024 or str(n) != str(v).strip():
            raise ValueError("run.threads must be auto or an integer in 1..1024, e.g. run.threads=1")
        return n


class DataConfig(_Frozen):
    """Which dataset, and where to find it."""

    dataset: str = Field("MUTAG", min_length=1, description="TU or Planetoid dataset name (folder name in the root)")
    root: Path | None = Field(None, description="data root (--data-root sets it, over a config file; not both it and data.root=); default: GFKD_DATA_ROOT, ./data, ../shared/datasets")
    cache_dir: Path | None = Field(None, description="writable folder PyG processes into; default <runs_dir>/_cache/datasets")
    max_degree_cap: int = Field(
        1000, ge=1, le=DEGREE_MAX, description="D cap for degree one-hot features of featureless sets")
    download: bool = Field(True, description="let PyG download a dataset missing from the root when the network allows")
    selfloop_skip_isolated: bool | None = Field(
        None, description="None: from generate.gfkd.parity (reference: true); true, with teacher.model."
        "self_loops_in_data: a node without out-edges gets no self-loop (gfkd.md §8; the teacher applies it to every "
        "graph it reads)")

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        return folder_name(v, "data.dataset is a dataset's folder name in the data root", "data.dataset=MUTAG")


class ProtocolConfig(_Frozen):
    """Evaluation protocol (protocol.md §2-§3)."""

    name: Literal["cv10", "holdout"] = Field("cv10", description="cv10: protocol B (reports); holdout: protocol A (GFKD parity)")
    fold: int = Field(0, ge=0, le=9, description="cv10: test fold i, validation fold i-1")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="holdout: permutation seed of the 70/30 split")
    val: bool = Field(True, description="holdout: carve a stratified 1/7 of the 70 % for validation")


class ModelConfig(_Frozen):
    """A GIN/GCN graph classifier ARCH-L-H: L counts the input layer, so L-1 message-passing layers of width H."""

    arch: Literal["gin", "gcn"] = Field("gin", description="message-passing layer")
    layers: int = Field(5, ge=2, le=16, description="L, counting the input layer: L - 1 message-passing layers")
    hidden: int = Field(128, ge=1, le=WIDTH_MAX, description="H, width of every message-passing layer")
    pooling: Literal["sum", "mean"] = Field("sum", description="readout over the nodes of a graph")
    bn: bool = Field(True, description="BatchNorm in every layer (GIN: inside the MLP and after it)")
    residual: bool = Field(True, description="h <- h' + h from the second message-passing layer on")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout before the classifier")
    self_loops_in_data: bool | None = Field(
        None, description="None: from generate.gfkd.parity (reference: true); true: an explicit self-loop edge on "
        "every node, so GIN counts a node's own feature twice and GCN takes its loops from the graph (gfkd.md §8)")
    logit_dropout: bool | None = Field(
        None, description="None: from generate.gfkd.parity (reference: true); true: the dropout acts on the logits "
        "while training, not before the classifier (gfkd.md §8)")


MODEL_SWITCH_KEYS = ("self_loops_in_data", "logit_dropout")  # teacher.model's parity switches (gfkd.md §8)


class TeacherConfig(_Frozen):
    """Teacher training recipe (protocol.md §4)."""

    model: ModelConfig = ModelConfig()
    epochs: int = Field(
        300, ge=1, le=EPOCHS_MAX, description="training epochs; the epoch of lowest validation loss is kept")
    batch_size: int = Field(32, ge=1, le=GRAPHS_MAX, description="graphs per batch")
    lr: float = Field(0.01, gt=0, le=LR_MAX, description="Adam learning rate")
    lr_step: int = Field(50, ge=1, le=EPOCHS_MAX, description="halve the learning rate every lr_step epochs")
    lr_gamma: float = Field(0.5, gt=0, le=1, description="decay factor every lr_step epochs")
    profile: Literal["smoothed", "gfkd"] = Field("smoothed", description="smoothed: label smoothing 0.1 + wd 5e-4; gfkd: 0 and 0")
    label_smoothing: float | None = Field(None, ge=0, lt=1, description="overrides the profile's value")
    weight_decay: float | None = Field(None, ge=0, le=WEIGHT_DECAY_MAX, description="overrides the profile's value")

    @property
    def resolved_label_smoothing(self) -> float:
        if self.label_smoothing is not None:
            return self.label_smoothing
        return 0.1 if self.profile == "smoothed" else 0.0

    @property
    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 5e-4 if self.profile == "smoothed" else 0.0


class ACGKDConfig(_Frozen):
    """ACGKD generator (acgkd.md §3-§7)."""

    sample: Literal["st", "soft"] = Field("st", description="st: straight-through hard samples; soft: relaxed graphs")
    kappa_schedule: Literal["geometric", "constant"] = Field("geometric", description="Concrete temperature schedule")
    kappa0: float = Field(1.0, gt=0, le=TEMPERATURE_MAX, description="Concrete temperature at the first step")
    kappa1: float = Field(0.1, gt=0, le=TEMPERATURE_MAX, description="Concrete temperature at the last step (geometric)")
    init_density: Literal["auto"] | Fraction = Field("auto", description="auto: clamp(mean degree/(n-1), 1e-3, 0.95)")
    init_degrees: Literal["auto", "uniform", "teacher"] = Field(
        "auto", description="structure start: uniform density, or teacher: per-node degrees drawn from the degree "
        "histogram read off a featureless GIN teacher's first layer (auto: teacher where that applies, else uniform)")
    degree_coupling: float = Field(0.0, ge=0, lt=1, description="with the teacher degree start: copula correlation ρ "
                                   "between a graph's size rank and its nodes' degree quantiles (0: degrees drawn "
                                   "independently of size; larger graphs draw larger degrees as ρ grows)")
    finalize: Literal["best_of_k", "mode", "sample"] = Field("best_of_k", description="how the stored graph is drawn")
    final_draws: int = Field(4, ge=1, le=64, description="k of best_of_k")
    xi_mode: Literal["auto", "none", "lowrank", "budget"] = Field("auto", description="auto: none if N <= 128 else budget")
    xi: Literal["auto"] | Fraction = Field("auto", description="storage ratio; auto = min(1, max(0.02, 3 * density))")
    xi_refresh: int = Field(
        50, ge=1, le=STEPS_MAX, description="budget mode: re-select candidate pairs every so many steps")
    checkpoint: bool = Field(False, description="budget mode: recompute the teacher's layers in backward (less memory "
                             "at 1.3-1.4x the step time; docs/generate.md); the same graphs, so not in the cache key")
    hold_density: bool = Field(False, description="keep each pseudo-graph's expected edge count at its start's: "
                               "after every step its pair logits are shifted by the one scalar that restores it, so "
                               "the structure can rewire but not thin or thicken (docs/generate.md)")
    lr_structure: float = Field(0.1, gt=0, le=LR_MAX, description="Adam lr of the structure parameters")
    lr_features: float = Field(0.05, gt=0, le=LR_MAX, description="Adam lr of the feature logits")
    beta_oh: float = Field(0.1, ge=0, le=WEIGHT_MAX, description="weight of the one-hot (entropy) prior on features")
    beta_deg: Literal["auto"] | Weight = Field("auto", description="degree prior; auto: 1 for featureless sets, else 0")
    beta_hist: Literal["auto"] | Weight = Field(
        "auto", description="with the teacher degree start: weight of the earth mover's distance (in degrees) between "
        "the chunk's expected degree histogram and its start's (auto: 10 with that start, else 0)")
    features: Literal["softmax", "gumbel_st"] = Field("softmax", description="node types: tempered softmax, or "
                                                      "hard one-hot forward with Gumbel-softmax backward")


GFKD_LARGE_LR_SETS = ("PROTEINS", "COLLAB", "REDDIT-BINARY")  # the paper's structure lr 5.0 (gfkd.md §6)


class GFKDConfig(_Frozen):
    """GFKD baseline generator (gfkd.md); also the schedule DeepInvG borrows."""

    iterations: int | None = Field(
        None, ge=1, le=STEPS_MAX, description="T_g; default from the profile (paper 2500, reference 1500)")
    lr_structure: float | None = Field(
        None, gt=0, le=LR_MAX, description="Adam lr of the edge logits; default as published: 5.0 on PROTEINS, "
        "COLLAB, REDDIT-BINARY, else 1.0 (reference profile: 1.0; fair: 0.1)")
    lr_features: float = Field(0.01, gt=0, le=LR_MAX, description="Adam lr of the feature logits")
    lr_decay_every: int | None = Field(
        None, ge=1, le=STEPS_MAX, description="lr / 10 every so many steps; profile: 1000 or 700")
    profile: Literal["paper", "reference"] = Field("paper", description="schedule of the paper or of the reference code")
    parity: Literal["clean", "reference"] = Field("clean", description="reference: the reference code's schedule, "
                                                  "best-θ/last-Φ finalisation, uniform targets, MUTAG nodes 10..29, "
                                                  "and the teacher's model-level switches (teacher.model.self_loops_"
                                                  "in_data, logit_dropout, data.selfloop_skip_isolated)")
    beta_bn: float = Field(0.01, ge=0, le=WEIGHT_MAX, description="weight of R_BN (published, l2 form)")
    beta_oh: float = Field(1e-6, ge=0, le=WEIGHT_MAX, description="weight of the one-hot prior")
    bn_form: Literal["relative", "l2", "l2sq"] = Field("l2", description="R_BN form")
    bn_target: Literal["auto", "running", "eval"] = Field("running", description="BN statistics matched")
    init: Literal["uniform", "density"] = Field("uniform", description="uniform: p ~ U(0,1) per edge, as published")
    directed: bool = Field(True, description="directed edge logits, as published")
    arm_pairs: int = Field(1, ge=1, le=256, description="antithetic pairs averaged per step")
    finalize: Literal["best", "last", "reference"] = Field("best", description="which iteration's parameters are kept")
    fair: bool = Field(False, description="shared fixes: density init, relative R_BN, beta_bn 1, beta_oh 0.1, lr 0.1")

    @property
    def resolved_profile(self) -> str:
        return "reference" if self.parity == "reference" else self.profile

    @property
    def resolved_iterations(self) -> int:
        return self.iterations or (1500 if self.resolved_profile == "reference" else 2500)

    def resolved_lr_structure(self, dataset: str | None) -> float:
        """The structure lr for `dataset` (gfkd.md §6: the paper's 5.0 on the large sets, else and in the reference 1.0)."""
        if self.lr_structure is not None:
            return self.lr_structure
        return 5.0 if dataset in GFKD_LARGE_LR_SETS and self.resolved_profile == "paper" else 1.0

    @property
    def resolved_decay(self) -> int:
        return self.lr_decay_every or (700 if self.resolved_profile == "reference" else 1000)

    @property
    def resolved_finalize(self) -> str:
        return "reference" if self.parity == "reference" else self.finalize


class RandGConfig(_Frozen):
    edge_prob: Literal["auto"] | Probability = Field("auto", description="auto: the teacher metadata's edge density")
    directed: bool = Field(False, description="true: every ordered pair i != j an independent edge, GFKD's "
                                              "layout (gfkd.md §9), also DeepInvG's fixed structure; false: "
                                              "symmetric G(n, p)")


class GenerateConfig(_Frozen):
    """Pseudo-graph generation (acgkd.md §2, §7; gfkd.md)."""

    method: Literal["acgkd", "gfkd", "randg", "deepinvg", "deepinv"] = Field("acgkd", description="generator")
    num_graphs: Literal["auto"] | Annotated[int, Field(gt=0, le=GRAPHS_MAX)] = Field(
        "auto", description="M per bank; auto = the protocol's training portion (cv10: the 8 "
                    "training folds; holdout: floor(0.7 N), validation included)")
    banks: int = Field(6, ge=1, le=64, description="independent banks; later stages train on their union")
    nodes: Literal["empirical", "uniform", "range"] = Field("empirical", description="empirical: the metadata "
                                                            "histogram; uniform: [0.5, 1.5] x mean; range: node_range")
    node_range: tuple[int, int] = Field((10, 29), description=f"nodes = range: n ~ Uniform{{lo..hi}}, 2 <= lo <= hi "
                                        f"<= {NODES_MAX}")
    max_nodes: int = Field(256, ge=2, le=NODES_MAX, description="node counts above are clamped (and counted)")
    targets: Literal["balanced", "uniform", "prior"] = Field(
        "balanced", description="target labels of the pseudo-graphs; prior: in the training class shares (metadata "
        "class_counts: not data-free, protocol.md §1; a diagnostic)")
    confidence_low: float = Field(1.0, ge=0, le=1, description="acgkd: 1 = hard targets; below 1, soft targets: each "
                                  "graph's label gets teacher probability c ~ U(max(this, 1/C), 1) (docs/generate.md)")
    iterations: int = Field(
        400, ge=1, le=STEPS_MAX, description="Adam steps per chunk (acgkd, deepinvg uses gfkd.iterations)")
    batch_size: int = Field(
        256, ge=1, le=GRAPHS_MAX, description="graphs per chunk; one chunk = one optimisation = one shard")
    workers: int = Field(1, ge=1, le=256, description="CPU processes that optimise chunks side by side, each at "
                         "run.threads threads (auto: the cores shared out); at run.threads=1 the same shards as 1, "
                         "sooner where cores are free; CUDA runs one process. Not in the cache key (docs/generate.md)")
    size_buckets: int = Field(4, ge=1, le=64, description="gfkd, deepinvg, randg: the teacher's dense forward on a "
                              "chunk runs in at most this many node-count groups, each padded to its own largest graph "
                              "(1: one padded batch); the same values up to float rounding, less work on padding")
    bn_form: Literal["relative", "l2", "l2sq"] = Field("relative", description="R_BN form")
    bn_target: Literal["auto", "running", "eval"] = Field("auto", description="auto: eval stats when stored")
    beta_bn: float = Field(1.0, ge=0, le=WEIGHT_MAX, description="weight of R_BN")
    bn_first_weight: Literal["auto"] | Weight = Field(
        "auto", description="acgkd: weight of the first BN layer's R_BN term (the layer that sees the node types) "
        "relative to the others; auto: 1 with the teacher degree start (featureless sets), else 10")
    acgkd: ACGKDConfig = ACGKDConfig()
    gfkd: GFKDConfig = GFKDConfig()
    randg: RandGConfig = RandGConfig()

    @field_validator("node_range")
    @classmethod
    def _range_ordered(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 2 <= v[0] <= v[1] <= NODES_MAX:
            raise ValueError(f"node_range must be [lo, hi] with 2 <= lo <= hi <= {NODES_MAX}")
        return v


class StudentConfig(_Frozen):
    """The student network ARCH-L-H (protocol.md §5: GIN-5-128 → GIN-3-32, GCN-5-64 → GCN-3-32)."""

    arch: Literal["auto", "gin", "gcn"] = Field("auto", description="auto: the teacher's layer type")
    layers: int = Field(3, ge=2, le=16, description="L, counting the input layer")
    hidden: int = Field(32, ge=1, le=WIDTH_MAX, description="H before widening (distill.width_mult)")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout before an own classifier (none before a reused head)")


class TemperatureConfig(_Frozen):
    """KD temperature (acgkd.md §9): learnable and adversarial (CTKD-style), or fixed."""

    mode: Literal["global", "instance", "fixed", "ctkd_paper"] = Field("global", description="global: one learnable "
                                                                         "τ; instance: per-graph MLP; fixed: τ = value")
    value: float = Field(2.0, gt=0, le=TEMPERATURE_MAX, description="τ of mode = fixed (and of recipe = plain)")
    tau_min: float = Field(1.0, gt=0, le=TEMPERATURE_MAX, description="τ = tau_min + tau_range·σ(t)")
    tau_range: float = Field(9.0, gt=0, le=TEMPERATURE_MAX, description="width of τ's range (ctkd_paper: 20)")
    tau_init: float = Field(2.0, gt=0, le=TEMPERATURE_MAX, description="τ at the start (ctkd_paper: t0 = 0)")
    lambda_max: float = Field(1.0, ge=0, le=WEIGHT_MAX, description="full strength of the adversary after the ramp")
    ramp_epochs: int = Field(10, ge=1, le=EPOCHS_MAX, description="E_λ: epochs of the cosine ramp from 0 to lambda_max")
    lr: float = Field(0.01, gt=0, le=LR_MAX, description="η_t: Adam lr of t, scaled by λ_e each epoch")


# the top of group.graph.anchor_temperature=calibrated's search: the distill temperature's default upper bound (10)
ANCHOR_TAU_MAX = TemperatureConfig.model_fields["tau_min"].default + TemperatureConfig.model_fields["tau_range"].default


class CurriculumConfig(_Frozen):
    """Easy-to-hard order over pseudo-graphs (acgkd.md §10)."""

    measure: Literal["teacher_entropy", "teacher_margin", "student_kl", "size"] = Field(
        "teacher_entropy", description="difficulty d_g of a pseudo-graph")
    pace: Literal["linear", "root", "step", "off"] = Field("linear", description="q_e: fraction admitted at epoch e")
    q0: float = Field(0.3, gt=0, le=1, description="fraction of the easiest graphs at epoch 0")
    until: float = Field(0.5, gt=0, le=1, description="E_c as a fraction of the epochs: all graphs from then on")


class AugmentConfig(_Frozen):
    """Online perturbation of pseudo-graphs in the distill loop, relabelled by the teacher (gfkd/augment.py)."""

    edge_flip: float = Field(0.0, ge=0, lt=1, description="p: drop each edge with probability p, add as many random pairs")
    node_noise: float = Field(0.0, ge=0, lt=1, description="q: redraw each node's one-hot type with probability q")
    edge_add: float = Field(0.0, ge=0, le=2, description="a: then add about f·m random pairs to each graph of m edges, "
                            "f ~ U(0, 2a) per graph (densifies by a on average)")
    hub: float = Field(0.0, ge=0, le=1, description="h: then, with probability h per graph, join its highest-degree node "
                       "to every other node (the centre of an ego network; IMDB-BINARY's and COLLAB's graphs have one)")

    @property
    def edits_edges(self) -> bool:
        """Whether a knob rebuilds the edge lists (as undirected graphs: a directed bank would lose its directions)."""
        return self.edge_flip > 0 or self.edge_add > 0 or self.hub > 0

    @property
    def on(self) -> bool:
        """Whether any perturbation is applied."""
        return self.edits_edges or self.node_noise > 0


class AdversarialConfig(_Frozen):
    """Adversarial rounds (acgkd.md §7, schedule = alternate; gfkd/generators/rounds.py): before every epoch the saved
    ACGKD generators take `steps` steps against the current student, and their re-finalised graphs replace that
    epoch's training set."""

    rounds: bool = Field(False, description="on: alternate generator rounds and student epochs (ACGKD banks only)")
    steps: int = Field(5, ge=1, le=STEPS_MAX, description="adv_steps: generator steps per chunk per epoch")
    beta: float = Field(1.0, ge=0, le=WEIGHT_MAX, description="β_adv: weight of the teacher-student divergence "
                        "the generator maximises")
    div: Literal["js", "kl", "l1"] = Field("js", description="adv_div: the divergence D(p_T ‖ p_S)")
    lr_scale: float = Field(
        0.01, gt=0, le=WEIGHT_MAX, description="generator learning rates as a fraction of generation's")


class DistillConfig(_Frozen):
    """Student distillation on pseudo-graphs, and the real-data baselines (acgkd.md §8-§11; gfkd.md §5)."""

    recipe: Literal["acgkd", "plain"] = Field("acgkd", description="plain: own head, fixed τ = 2, no curriculum, no "
                                             "feature loss, no class weights or CE to the targets, whatever those keys "
                                             "say (gfkd.md §5); acgkd: the switches below")
    profile: Literal["default", "paper"] = Field("default", description="paper: 400 epochs")
    epochs: Literal["auto"] | Annotated[int, Field(gt=0, le=EPOCHS_MAX)] = Field(
        "auto", description="auto: 50 on a union of banks, 150 on one bank or real graphs")
    batch_size: int = Field(32, ge=1, le=GRAPHS_MAX, description="graphs per batch")
    lr: float = Field(0.01, gt=0, le=LR_MAX, description="Adam lr, linear decay to 0")
    seeds: int = Field(3, ge=1, le=20, description="student seeds 0..seeds-1 per variant")
    student: StudentConfig = StudentConfig()
    head: Literal["reuse", "own"] = Field("reuse", description="reuse: the teacher's frozen classifier behind a projector")
    projector: Literal["gat", "linear"] = Field("gat", description="projector d_S → d_T in front of a reused head")
    width_mult: Literal["teacher"] | int = Field(1, description="widen every student layer by this factor, 1..16, or to teacher (d_T)")
    feat_weight: float = Field(1.0, ge=0, le=WEIGHT_MAX, description="γ: weight of the projected-embedding loss")
    feat_level: Literal["node", "graph"] = Field("node", description="match node or pooled embeddings")
    beta_ce: float = Field(0.0, ge=0, le=WEIGHT_MAX, description="weight of CE to the generation targets")
    class_weight: Literal["auto", "none", "balanced", "prior"] = Field(
        "auto", description="auto: balanced on featureless sets; prior: the teacher's predicted classes reweighted to "
        "the training class shares (metadata class_counts: not data-free, protocol.md §1; a diagnostic)")
    temperature: TemperatureConfig = TemperatureConfig()
    curriculum: CurriculumConfig = CurriculumConfig()
    augment: AugmentConfig = AugmentConfig()
    adversarial: AdversarialConfig = AdversarialConfig()
    resample: bool = Field(False, description="a fresh hard sample of every saved ACGKD generator each epoch, no "
                           "generator steps (acgkd.md §11); the rounds already resample: set one of the two")
    baselines: tuple[Literal["kd_real", "student_real"], ...] = Field(
        ("kd_real", "student_real"), description="real-data rows trained by the same code (they read the training split)")

    @field_validator("width_mult")
    @classmethod
    def _width(cls, v: str | int) -> str | int:
        if v != "teacher" and not 1 <= int(v) <= 16:
            raise ValueError("width_mult must be teacher or an integer in 1..16")
        return v

    @model_validator(mode="after")
    def _widened_width(self) -> "DistillConfig":
        """A widened student's layers are student.hidden · width_mult wide: bounded as a teacher's are."""
        if self.width_mult != "teacher" and self.student.hidden * int(self.width_mult) > WIDTH_MAX:
            raise CrossKeyError(f"distill.student.hidden × distill.width_mult = {self.student.hidden} × "
                                f"{self.width_mult} is wider than a layer may be ({WIDTH_MAX}): lower one of them")
        return self

    @model_validator(mode="after")
    def _one_resampler(self) -> "DistillConfig":
        if self.recipe == "acgkd" and self.resample and self.adversarial.rounds:
            raise CrossKeyError("distill.resample and distill.adversarial.rounds are both on: the rounds already "
                                "draw a fresh sample every epoch; set distill.resample=false")
        return self

    @property
    def redraws(self) -> bool:
        """Whether each epoch's graphs are redrawn from the saved generator states (resample or rounds)."""
        return self.resample or self.adversarial.rounds

    def resolved_epochs(self, pseudo: bool, banks: int) -> int:
        """Epochs of a student on pseudo-graphs (a union of `banks` banks) or on real graphs."""
        if self.epochs != "auto":
            return int(self.epochs)
        if self.profile == "paper":
            return 400
        return 50 if (pseudo and banks > 1) else 150

    def effective(self) -> "DistillConfig":
        """The settings actually used: recipe = plain fixes the head, temperature, curriculum, feature loss,
        augmentation, adversarial rounds, resampling (off), the class weights and the CE to the generation targets
        (none: gfkd.md §5's unweighted KL with pseudo-labels unused; `class_weight`, `beta_ce` are ACGKD-recipe
        switches, acgkd.md §11)."""
        if self.recipe == "acgkd":
            return self
        return self.model_copy(update={
            "head": "own", "feat_weight": 0.0, "augment": AugmentConfig(), "adversarial": AdversarialConfig(),
            "resample": False, "class_weight": "none", "beta_ce": 0.0,
            "temperature": self.temperature.model_copy(update={"mode": "fixed"}),
            "curriculum": self.curriculum.model_copy(update={"pace": "off"})})


class GraphGroupConfig(_Frozen):
    """The group stage of the pipeline: OAD on pseudo-graphs for graph classification (oad.md §6)."""

    method: Literal["oad", "independent", "dml", "kdcl", "oad_global", "oad_local"] = Field(
        "oad_global", description="as group.method; default oad_global (peer-mean KL, no ring): with the ring "
        "adversarial term (oad) every student collapsed on MUTAG pseudo-graphs at lambda_adv 1 and 0.1, with the "
        "discriminators' lr then fixed at 0.01 (docs/group.md)")
    students: int = Field(4, ge=2, le=16, description="K students (copies of distill.student)")
    student: Literal["plain", "widened"] = Field("widened", description="widened: the distill stage's widened "
                                                 "student reusing the teacher's frozen classifier (distill.width_mult, "
                                                 "distill.projector); plain: own Linear heads, as oad.md §6 (MUTAG "
                                                 "10-fold: docs/group.md)")
    feat_weight: float = Field(
        1.0, ge=0, le=WEIGHT_MAX, description="student = widened: γ of the projected-embedding loss against the "
        "teacher's node embeddings (as distill.feat_weight, node level)")
    warmup_epochs: int = Field(30, ge=0, le=EPOCHS_MAX, description="W: epochs of supervised + teacher-anchor loss only")
    epochs: int = Field(120, ge=1, le=EPOCHS_MAX, description="E: distillation epochs after the warm-up")
    batch_size: int = Field(32, ge=1, le=GRAPHS_MAX, description="pseudo-graphs per batch")
    lr: float = Field(
        0.01, gt=0, le=LR_MAX, description="Adam lr of students and discriminators, linear decay to 0 over W + E")
    temperature: float = Field(3.0, gt=0, le=TEMPERATURE_MAX, description="T of the peer-mean KL")
    lambda_global: float = Field(1.0, ge=0, le=WEIGHT_MAX, description="λ_G")
    lambda_adv: float = Field(1.0, ge=0, le=WEIGHT_MAX, description="λ_adv")
    sup_weight: float = Field(
        0.0, ge=0, le=WEIGHT_MAX, description="weight of the CE term to ŷ (hard labels); default 0, not oad.md §6's "
        "1: with it the PROTEINS group fell 9.1 points below the single student, without it +1.0 (folds 0-2), MUTAG "
        "level (docs/group.md)")
    teacher_anchor: float = Field(
        1.0, ge=0, le=WEIGHT_MAX, description="λ_T: weight of τ²·KL(p_T^τ ‖ p_k^τ) to the teacher's logits; 0 "
        "(oad.md §6's ablation) needs sup_weight > 0")
    anchor_tau: float = Field(
        2.0, gt=0, le=TEMPERATURE_MAX, description="τ of the teacher anchor (anchor_temperature = fixed; calibrated: "
        "the low end of its search)")
    anchor_temperature: Literal["fixed", "inherit", "calibrated"] = Field(
        "fixed", description="inherit: each student's anchor τ as the distill stage's student has it "
        "(distill.temperature: learnable and adversarial by default), one per student; calibrated: one τ for all, "
        "read from the teacher's logits on the training pseudo-graphs before training (anchor_confidence)")
    anchor_confidence: float = Field(0.7, gt=0, lt=1, description="anchor_temperature = calibrated: τ is the "
                                     "smallest in [anchor_tau, 10] at which the teacher's mean top-class probability "
                                     "over the group's training graphs (the pseudo-graphs; the real ones under "
                                     "data = real) is at most this (docs/group.md)")
    label_source: Literal["teacher_argmax", "target"] = Field("teacher_argmax", description="ŷ of the CE term")
    local_level: Literal["node", "graph"] = Field("node", description="node: GCN discriminators over the batched "
                                                  "graphs; graph: MLP on mean-pooled embeddings")
    d_hidden: int = Field(16, ge=1, le=WIDTH_MAX, description="d_D")
    d_loss_scale: float = Field(1.0, gt=0, le=WEIGHT_MAX, description="c_D")
    d_input: Literal["raw", "unit"] = Field(
        "raw", description="what the discriminators see of each node embedding: raw: h as it is (oad.md §3); unit: "
        "h/‖h‖, its direction only (not in the spec; with raw h, oad collapsed MUTAG groups, docs/group.md)")
    pick_holdout: float = Field(0.1, ge=0, lt=1, description="share of pseudo-graphs held out to pick a student")
    curriculum: Literal["off", "inherit"] = Field("off", description="inherit: the distill stage's easy-to-hard "
                                                  "subsets (distill.curriculum: measure, pace, q0), all graphs from "
                                                  "distill.curriculum.until·(W + E) on (oad.md §6: ½·(W + E))")
    data: Literal["pseudo", "real"] = Field("pseudo", description="real: the same group on the real training graphs "
                                            "with their true labels and the teacher's logits, a with-data reference "
                                            "row (oad.md §6)")


class GroupConfig(_Frozen):
    """Online group distillation (oad.md): node-level OAD on citation graphs and its baselines (`gfkd group`)."""

    method: Literal["oad", "independent", "dml", "kdcl", "oad_global", "oad_local", "oad_agnostic", "oad_l2"] = Field(
        "oad", description="oad; independent students; DML; KDCL-MinLogit; OAD global only (λ_adv = 0) or local only "
        "(λ_G = 0); oad_agnostic: D an MLP per node; oad_l2: the ring's local term as ‖h_{k−1} − sg h_k‖², no D")
    backbone: Literal["gcn", "gat", "sage"] = Field("gcn", description="node students (oad.md §5)")
    students: int = Field(4, ge=2, le=16, description="K students, student k initialised from seed + k")
    warmup_epochs: int = Field(100, ge=0, le=EPOCHS_MAX, description="W: epochs of supervised loss only")
    epochs: int = Field(
        100, ge=1, le=EPOCHS_MAX, description="E: distillation epochs after the warm-up (ê is chosen among them)")
    lr: float = Field(5e-3, gt=0, le=LR_MAX, description="Adam lr of the students and of the discriminators")
    weight_decay: float = Field(
        5e-4, ge=0, le=WEIGHT_DECAY_MAX, description="students' Adam weight decay (discriminators: 0)")
    hidden: int = Field(16, ge=1, le=WIDTH_MAX, description="hidden width per head")
    heads: int = Field(8, ge=1, le=HEADS_MAX, description="GAT heads")
    dropout: float | None = Field(None, ge=0, lt=1, description="None: the backbone's default (GCN/SAGE 0.5, GAT 0.6)")
    temperature: float = Field(3.0, gt=0, le=TEMPERATURE_MAX, description="T of the peer-mean KL (and of KDCL)")
    dml_temperature: float = Field(1.0, gt=0, le=TEMPERATURE_MAX, description="T of DML")
    lambda_global: float = Field(1.0, ge=0, le=WEIGHT_MAX, description="λ_G, weight of the peer-mean KL")
    lambda_adv: float = Field(
        1.0, ge=0, le=WEIGHT_MAX, description="λ_adv, weight of the ring adversarial loss (of the L2 ring term under "
        "method oad_l2)")
    global_on: Literal["train", "all"] = Field("train", description="nodes of the KL terms: labelled ones, or all")
    d_hidden: int = Field(16, ge=1, le=WIDTH_MAX, description="d_D, the discriminator's hidden width")
    d_loss_scale: float = Field(1.0, gt=0, le=WEIGHT_MAX, description="c_D, scale of the discriminator loss")
    d_input: Literal["raw", "unit"] = Field("raw", description="what the discriminators see of each node embedding: "
                                            "raw: h as it is (oad.md §3); unit: h/‖h‖ (not in the spec)")
    parity: Literal["clean", "reference"] = Field("clean", description="reference: every switch below takes the "
                                                  "reference code's behaviour unless set explicitly")
    kl_scale: Literal["batchmean", "reference"] | None = Field(None, description="None: from parity; batchmean, or "
                                                               "reference = batchmean / (V·C), V the KL's nodes")
    d_out_relu: bool | None = Field(None, description="None: from parity; true: ReLU before D's sigmoid")
    gcn_student: Literal["clean", "reference"] | None = Field(None, description="None: from parity; clean, or reference: "
                                                              "no self-loops, no dropout, h before ReLU, D = GCN(16→1)")
    gat_self_loops: bool | None = Field(None, description="None: from parity (clean true, reference false)")
    sage_h: Literal["before_dropout", "after_dropout"] | None = Field(None, description="None: from parity; where SAGE's "
                                                                     "h is read (reference: after_dropout)")
    dml_stop_grad: bool | None = Field(None, description="None: from parity (clean true); peers detached in DML")
    graph: GraphGroupConfig = GraphGroupConfig()

    @model_validator(mode="after")
    def _gat_width(self) -> "GroupConfig":
        """A GAT student's first layer is heads · hidden wide: bounded as a teacher's layers are."""
        if self.backbone == "gat" and self.heads * self.hidden > WIDTH_MAX:
            raise CrossKeyError(f"group.heads × group.hidden = {self.heads} × {self.hidden} is wider than a GAT layer "
                                f"may be ({WIDTH_MAX}): lower one of them")
        return self

    def resolved(self, key: str):
        """A parity switch's value: the explicit setting, else the clean or reference behaviour."""
        value = getattr(self, key)
        if value is not None:
            return value
        ref = self.parity == "reference"
        return {"kl_scale": "reference" if ref else "batchmean", "d_out_relu": ref,
                "gcn_student": "reference" if ref else "clean", "gat_self_loops": not ref,
                "sage_h": "after_dropout" if ref else "before_dropout", "dml_stop_grad": not ref}[key]


class RunConfig(_Frozen):
    """Everything one pipeline run needs."""

    run: RunSection = RunSection()
    data: DataConfig = DataConfig()
    protocol: ProtocolConfig = ProtocolConfig()
    teacher: TeacherConfig = TeacherConfig()
    generate: GenerateConfig = GenerateConfig()
    distill: DistillConfig = DistillConfig()
    group: GroupConfig = GroupConfig()

    @model_validator(mode="after")
    def _resample_draws(self) -> "RunConfig":
        if self.distill.effective().resample and self.generate.acgkd.finalize == "mode":
            raise CrossKeyError("distill.resample with generate.acgkd.finalize=mode would redraw the same graphs "
                                "every epoch: set generate.acgkd.finalize=best_of_k or sample")
        return self

    @model_validator(mode="after")
    def _group_curriculum(self) -> "RunConfig":
        gg = self.group.graph
        if gg.curriculum == "inherit" and gg.data == "real":
            raise CrossKeyError("group.graph.curriculum=inherit orders pseudo-graphs by difficulty; real graphs have "
                                "none (the distill stage trains them without a curriculum too): set "
                                "group.graph.curriculum=off with group.graph.data=real")
        inherited = self.group_curriculum
        if inherited is not None and inherited.measure == "student_kl":
            raise CrossKeyError("group.graph.curriculum=inherit needs a difficulty fixed before training, and "
                                "distill.curriculum.measure=student_kl depends on one student: choose "
                                "teacher_entropy, teacher_margin or size")
        if inherited is not None and inherited.pace == "off":
            raise CrossKeyError("group.graph.curriculum=inherit inherits no curriculum when the distill stage trains "
                                "without one (distill.curriculum.pace=off, or distill.recipe=plain): set "
                                "group.graph.curriculum=off, or distill.recipe=acgkd with a pace")
        mode = self.group.graph.anchor_temperature
        if mode != "fixed" and self.group.graph.teacher_anchor == 0:
            raise CrossKeyError(f"group.graph.anchor_temperature={mode} sets the τ of the teacher anchor, which "
                                "group.graph.teacher_anchor=0 turns off: set teacher_anchor > 0, or "
                                "anchor_temperature=fixed")
        if mode == "calibrated" and self.group.graph.anchor_tau > ANCHOR_TAU_MAX:
            raise CrossKeyError(f"group.graph.anchor_temperature=calibrated searches τ in [anchor_tau, "
                                f"{ANCHOR_TAU_MAX:g}]: set group.graph.anchor_tau <= {ANCHOR_TAU_MAX:g} (now "
                                f"{self.group.graph.anchor_tau:g})")
        if self.group.graph.teacher_anchor == 0 and self.group.graph.sup_weight == 0:
            raise CrossKeyError("group.graph.teacher_anchor=0 with group.graph.sup_weight=0 leaves the students "
                                "neither the CE to ŷ nor the teacher anchor: set group.graph.sup_weight=1 (oad.md "
                                "§6's λ_T = 0 ablation keeps the CE)")
        return self

    @model_validator(mode="after")
    def _model_switches(self) -> "RunConfig":
        if self.model_switches["skip_isolated"] and not self.model_switches["loops_in_data"]:
            raise CrossKeyError("data.selfloop_skip_isolated=true leaves some nodes without the self-loop edges that "
                                "teacher.model.self_loops_in_data adds, and those are off: set "
                                "teacher.model.self_loops_in_data=true, or data.selfloop_skip_isolated=false")
        return self

    @property
    def model_switches(self) -> dict[str, bool]:
        """gfkd.md §8's model-level parity switches of the teacher, resolved: each explicit setting, else the
        reference code's behaviour (all true) under generate.gfkd.parity=reference, the clean one (false) otherwise.
        Keys are GraphClassifier's arguments: loops_in_data, skip_isolated, logit_dropout."""
        ref = self.generate.gfkd.parity == "reference"
        pick = lambda v: ref if v is None else v  # noqa: E731
        m = self.teacher.model
        return {"loops_in_data": pick(m.self_loops_in_data), "skip_isolated": pick(self.data.selfloop_skip_isolated),
                "logit_dropout": pick(m.logit_dropout)}

    @property
    def group_temperature(self) -> TemperatureConfig | None:
        """The teacher anchor's temperature of the pipeline group under group.graph.anchor_temperature=inherit: the
        distill stage's effective one (distill.recipe=plain: fixed at distill.temperature.value), else None (fixed
        at group.graph.anchor_tau)."""
        return self.distill.effective().temperature if self.group.graph.anchor_temperature == "inherit" else None

    @property
    def group_curriculum(self) -> CurriculumConfig | None:
        """The curriculum the pipeline group trains with: the distill stage's effective one under
        group.graph.curriculum=inherit (distill.recipe=plain has none: pace off), else None."""
        return self.distill.effective().curriculum if self.group.graph.curriculum == "inherit" else None

    @property
    def split_seed(self) -> int:
        """The seed of this split's models: fold i under cv10, the split seed under holdout, plus run.seed."""
        base = self.protocol.fold if self.protocol.name == "cv10" else self.protocol.seed
        return base + self.run.seed

    @property
    def run_name(self) -> str:
        if self.run.name:
            return self.run.name
        split = f"fold{self.protocol.fold}" if self.protocol.name == "cv10" else f"seed{self.protocol.seed}"
        suffix = f"-s{self.run.seed}" if self.run.seed else ""
        return f"{self.data.dataset.lower()}-{self.protocol.name}-{split}{suffix}"

    @property
    def data_cache(self) -> Path:
        """The writable folder PyG processes datasets into (data.cache_dir, else <runs_dir>/_cache/datasets)."""
        return self.data.cache_dir or self.run.runs_dir / "_cache" / "datasets"

    @property
    def _runtime_key(self) -> dict[str, Any]:
        """What the floats depend on besides the config: the device, the thread setting and the kernels."""
        return {"device": self.run.device, "threads": self.run.threads, "deterministic": self.run.deterministic}

    @property
    def _data_key(self) -> dict[str, Any]:
        """data.* without where the data lives and the raw parity switch (the teacher's key holds it resolved)."""
        return self.data.model_dump(mode="json", exclude={"root", "cache_dir", "download", "selfloop_skip_isolated"})

    @property
    def _generate_key(self) -> dict[str, Any]:
        """generate.* without the settings that change memory or speed but not the graphs."""
        return self.generate.model_dump(mode="json", exclude={"workers": True, "acgkd": {"checkpoint"}})

    def stage_config(self, stage: str) -> dict[str, Any]:
        """The part of the config that determines a stage's outputs (enters its cache key)."""
        if stage == "teacher":
            switches = self.model_switches  # resolved, the raw keys left out: only what the teacher becomes counts
            return {
                "data": self._data_key,
                "protocol": self.protocol.model_dump(mode="json"),
                "teacher": self.teacher.model_dump(mode="json", exclude={"model": set(MODEL_SWITCH_KEYS)}),
                **({"model_switches": switches} if any(switches.values()) else {}),  # a clean key stays as it was
                "seed": self.split_seed,
                **self._runtime_key,
            }
        if stage == "generate":
            return {"generate": self._generate_key, "seed": self.split_seed, **self._runtime_key}
        if stage == "distill":  # the data and split too: the real-data baselines and the evaluation read them
            return {"distill": self.distill.model_dump(mode="json"), "banks": self.generate.banks,
                    **({"generate": self._generate_key} if self.distill.effective().redraws else {}),
                    "data": self._data_key,
                    "protocol": self.protocol.model_dump(mode="json"), "seed": self.split_seed,
                    **self._runtime_key}
        if stage == "group":  # the pseudo-graph group; the student architecture comes from distill.student
            widened = self.group.graph.student == "widened"  # widened students also read these two
            return {"group": self.group.graph.model_dump(mode="json"),
                    "student": self.distill.student.model_dump(mode="json"),
                    **({"widen": {"width_mult": self.distill.width_mult, "projector": self.distill.projector}}
                       if widened else {}),
                    **({"curriculum": self.group_curriculum.model_dump(mode="json")}
                       if self.group_curriculum is not None else {}),
                    **({"temperature": self.group_temperature.model_dump(mode="json")}
                       if self.group_temperature is not None else {}),
                    "data": self._data_key,
                    "protocol": self.protocol.model_dump(mode="json"), "seed": self.split_seed,
                    **self._runtime_key}
        if stage == "evaluate":  # scores what the upstream stages made (their digests enter the key)
            return {"data": self._data_key,
                    "protocol": self.protocol.model_dump(mode="json"), "generate.method": self.generate.method,
                    "distill.recipe": self.distill.recipe, "seed": self.split_seed, **self._runtime_key}
        raise ConfigError(f"unknown stage '{stage}': choose one of {', '.join(STAGES)}")


def stages_hash(cfg: "RunConfig") -> str:
    """The report's config hash: of the settings that reach a stage (not run.runs_dir, data.root or other paths,
    which change no result)."""
    return config_hash({st: cfg.stage_config(st) for st in STAGES})[:16]


def config_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of a config (dict or model)."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, pydantic field) of every leaf value of `model`, sections flattened."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _fields(ann, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", field))
    return out


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return [key for key, _ in _fields(model)]


def _first_value_key(model: type[BaseModel]) -> str:
    """The first key of `model` that holds a value, not a section (for an example in an error message)."""
    for name, f in model.model_fields.items():
        if not (isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)):
            return name
    return next(iter(model.model_fields))


COMMAND_LINE = "the command line"  # the source of key=value overrides, in error messages


def _unknown_key_error(key: str, source: str) -> ConfigError:
    valid = _valid_keys(RunConfig)
    bare = "." not in key  # `epochs = 3` outside a section, or `graph=1`
    homes = [k for k in valid if bare and k.rsplit(".", 1)[-1] == key]
    sections = sorted({k.rsplit(".", 1)[0] for k in valid if "." in k} - set(RunConfig.model_fields))
    nested = [sec for sec in sections if bare and sec.rsplit(".", 1)[-1] == key]  # teacher.model, group.graph
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    where = "" if source == COMMAND_LINE else " (in the file: under its [section])"
    if homes:
        hint = f"every key is in a section: did you mean {' or '.join(repr(h) for h in homes)}{where}?"
    elif nested:
        example = next(k for k in valid if k.startswith(f"{nested[0]}."))
        hint = f"'{key}' is the section {' or '.join(repr(n) for n in nested)}: set one of its keys, e.g. {example}=..."
    else:
        hint = f"did you mean '{close[0]}'?" if close else "run `gfkd config --reference` to list the keys"
    return ConfigError(f"unknown config key '{key}' in {source}: {hint}")


def _parse_value(text: str) -> Any:
    """Parse the value of key=value as a TOML value; bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_dotted(tree: dict, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    model: type[BaseModel] = RunConfig
    node = tree
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            raise _unknown_key_error(key, source)
        ann = field.annotation
        is_section = isinstance(ann, type) and issubclass(ann, BaseModel)
        last = i == len(parts) - 1
        if last:
            if value is _SECTION:  # an empty [table] in a file: it must name a section
                if not is_section:
                    where = ".".join(parts[:-1])
                    raise ConfigError(f"[{key}] in {source} is a key, not a section: write `{part} = ...` "
                                      + (f"under [{where}]" if where else "at the top of the file"))
                node.setdefault(part, {})
                return
            if is_section:
                raise ConfigError(f"'{key}' in {source} is a section, not a value: set one of its keys, e.g. {key}.{_first_value_key(ann)}=...")
            node[part] = value
        else:
            if not is_section:
                raise _unknown_key_error(key, source)
            node = node.setdefault(part, {})
            model = ann


_SECTION = object()  # what _flatten gives for an empty table, so that [nonsense] is refused, not skipped


def _flatten(tree: dict, prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for k, v in tree.items():
        if isinstance(v, dict):
            items += _flatten(v, f"{prefix}{k}.") if v else [(f"{prefix}{k}", _SECTION)]
        else:
            items.append((f"{prefix}{k}", v))
    return items


def _field_at(loc: tuple) -> tuple[str, Any]:
    """The dotted config key of a pydantic error location (union-member tags such as 'float' dropped), and its field."""
    model: type[BaseModel] | None = RunConfig
    parts, leaf = [], None
    for p in loc:
        field = model.model_fields.get(p) if (model is not None and isinstance(p, str)) else None
        if field is None:
            break
        parts.append(p)
        leaf = field
        ann = field.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return ".".join(parts), leaf


def _field_path(loc: tuple) -> str:
    """The dotted config key of a pydantic error location."""
    return _field_at(loc)[0]


def _fixed_length(field: Any) -> int | None:
    """How many items a fixed-length tuple field takes (`tuple[int, int]` -> 2); None for any other field."""
    ann = getattr(field, "annotation", None)
    args = typing.get_args(ann)
    return len(args) if typing.get_origin(ann) is tuple and args and Ellipsis not in args else None


def resolve_config(path: Path | str | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Defaults ← TOML file ← key=value overrides, validated into a frozen RunConfig.

    Raises:
        ConfigError: one line naming the file, key or value at fault and the fix.
    """
    tree: dict = {}
    origin: dict[str, str] = {}  # key → " (in 'file.toml')" when the file set it last, so its error names the file
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"config file '{path}' is a folder: pass a .toml file")
        if not path.is_file():
            raise ConfigError(f"config file '{path}' not found: pass an existing .toml file")
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file '{path}' is not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"config file '{path}' could not be read ({exc.strerror or exc}): check that it is a "
                              "readable file") from exc
        for key, value in _flatten(raw):
            _set_dotted(tree, key, value, f"'{path}'")
            origin[key] = f" (in '{path}')"
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' is not key=value: write e.g. teacher.epochs=50")
        if "\n" in item or "\r" in item:
            raise ConfigError(f"override {item!r} spans more than one line: give one key=value per argument")
        _set_dotted(tree, key.strip(), _parse_value(value.strip()), COMMAND_LINE)
        origin[key.strip()] = ""
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        errs = exc.errors()
        path = lambda e: _field_path(e["loc"])  # noqa: E731
        loc, field = _field_at(errs[0]["loc"])
        msgs = dict.fromkeys(e["msg"] for e in errs if path(e) == loc)  # a union field reports one error per member
        if isinstance(errs[0].get("ctx", {}).get("error"), CrossKeyError):
            raise ConfigError(str(errs[0]["ctx"]["error"])) from exc
        n = _fixed_length(field)
        if n is not None and errs[0]["type"] in ("missing", "too_long", "too_short", "tuple_type"):  # a pair given 1
            example = json.dumps(list(field.default)) if isinstance(field.default, tuple) else f"[{', '.join('…' * n)}]"
            raise ConfigError(f"config value {loc}{origin.get(loc, '')} takes exactly {n} items: write e.g. "
                              f"{loc}={example}") from exc
        if n is None and errs[0]["type"] in ("tuple_type", "list_type"):  # a list given as a word: `[kd_real]`, `kd_real`
            items = list(field.default) if isinstance(field.default, (tuple, list)) and field.default else ["…"]
            example = json.dumps(items[:1])
            fix = (f"write e.g. {loc.rsplit('.', 1)[-1]} = {example} there" if origin.get(loc) else
                   f"write e.g. '{loc}={example}' (in single quotes, so that the shell keeps the double quotes), or "
                   f"'{loc}=[]' for none")
            raise ConfigError(f"config value {loc}={errs[0].get('input')!r}{origin.get(loc, '')} is not a list: "
                              f"{fix}") from exc
        msgs = [m.removeprefix("Value error, ") for m in msgs]
        said = " or ".join(m if i == 0 else m.removeprefix("Input should be ") for i, m in enumerate(msgs))
        if field is not None and any(e["type"] in _BOUND_ERRORS for e in errs if path(e) == loc):  # name the range
            said += f" (allowed: {_kind(field.annotation, field.metadata).replace('`', '')})"
        said = re.sub(r"\d{16,}", lambda m: f"{float(m[0]):g}", said)  # pydantic writes a bound of 1e30 in 31 digits
        raise ConfigError(f"config value {loc}={errs[0].get('input')!r}{origin.get(loc, '')} is invalid: {said}") from exc


_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def _kind(ann: Any, metadata: list | tuple = ()) -> str:
    """How the reference table writes a type: `float in (0, 1]`-style bounds, Literal values in backticks."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin is Annotated:
        return _kind(args[0], [m for a in args[1:] for m in getattr(a, "metadata", [a])])
    if origin is tuple:
        return "[" + ", ".join("..." if a is Ellipsis else _kind(a) for a in args) + "]"
    if args:  # a union: field-level bounds belong to its numeric member
        return " or ".join(_kind(a, metadata) for a in args)
    if ann is type(None):
        return "none"
    name = getattr(ann, "__name__", str(ann))
    bounds = [f"{_BOUNDS[k]} {getattr(m, k)}" for m in metadata for k in _BOUNDS if getattr(m, k, None) is not None]
    return f"{name} {' and '.join(bounds)}".strip()


def config_reference() -> str:
    """A Markdown table of every config key with its type, default and description (docs/config.md)."""

    rows = []
    for key, field in _fields(RunConfig):
        default = json.dumps(field.default, default=str)
        rows.append(f"| `{key}` | {_kind(field.annotation, field.metadata)} | `{default}` | {field.description or ''} |")

    head = ["| key | type | default | meaning |", "|---|---|---|---|"]
    return "\n".join(head + rows) + "\n"
