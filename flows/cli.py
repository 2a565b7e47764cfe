"""The `gfkd` command line: run the pipeline, show the resolved config, open the MLflow UI.

    gfkd run [CONFIG.toml] [key=value ...] [--data-root DIR] [--force STAGE] [--until STAGE]
    gfkd group --dataset Cora|CiteSeer|PubMed [--backbone B] [--method M] [--seeds 0..9] [key=value ...]
    gfkd config [CONFIG.toml] [key=value ...] [--data-root DIR] | --reference
    gfkd ui [RUN_DIR] [--port 5000]
    gfkd benchmark [CONFIG.toml] [key=value ...] [--datasets A,B] [--generators G,H] [--splits 0..2] [--workers N]
                   [--dask | --dask-address tcp://HOST:8786] [--out FILE.md]
    gfkd serve --cron "0 2 * * *" [the benchmark's arguments]
    gfkd --version

A `GfkdError` (bad config, missing data, invalid file) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, get_args

import typer

from gfkd.config import STAGES, RunConfig, resolve_config
from gfkd.errors import ConfigError, GfkdError
from gfkd.io.atomic import write_json
from gfkd.layout import RunLayout
from gfkd.versions import command_text, record_command, versions_line
from flows.env import check_prefect_api, check_prefect_home, local_env, prefect_api_url, scratch_tmp
from flows.signals import exit_on_signals
from flows.watchdog import reap_descendants_on_kill


def _flags_take_no_value() -> None:
    """Typer 0.29's --help labels flags `<bool>` (`--dask <bool>`), as if they took a value: show no type for them."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "_gfkd", False):
        return
    patched = lambda self, ctx: None if self.is_flag else shown(self, ctx)  # noqa: E731
    patched._gfkd = True
    option.display_type_rich = patched


_flags_take_no_value()
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="gfkd: data-free distillation of graph neural networks, as a tracked Prefect pipeline.")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(versions_line())
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print gfkd's version and its main dependencies' and exit.")) -> None:
    pass


# The metrics the line per stage after `gfkd run` shows (summary.json keeps them all). The stage's seconds stand
# beside them, so no `time/wall_s`: distill's is the mean per student, not the stage's.
HEADLINE = {
    "teacher": ("teacher/val/acc", "teacher/test/acc"),
    "generate": ("generate/quality/num_graphs", "generate/quality/teacher_agreement",
                 "generate/quality/edge_density_mean"),
    "distill": ("distill/test/acc", "distill/test/acc_kd_real"),
    "group": ("group/test/acc_mean", "group/test/acc_ensemble"),
    "evaluate": (),
}


def stage_line(record: dict) -> str:
    """One stage's line: its status, seconds and headline metrics (those it logged of HEADLINE's)."""
    metrics = record.get("metrics") or {}
    shown = lambda v: f"{v:.0f}" if float(v).is_integer() else f"{v:.4g}"  # noqa: E731  (17262 graphs, not 1.726e+04)
    head = ", ".join(f"{k}={shown(metrics[k])}" for k in HEADLINE.get(record["stage"], ()) if k in metrics)
    return f"{record['stage']:>9}: {record['status']:<6} {record['wall_s']:6.1f}s  {head}".rstrip()


INTERRUPTED = 130  # 128 + SIGINT, the shell's code for a Ctrl-C


def _one_line_errors(fn):
    """Turn a GfkdError into `gfkd: error: ...` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GfkdError as exc:
            typer.echo(f"gfkd: error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:  # typer alone exits 130 without a word
            typer.echo("\ngfkd: interrupted: finished results are kept; run the same command again to resume",
                       err=True)
            raise typer.Exit(INTERRUPTED) from None

    return wrapper


def _split_args(args: list[str]) -> tuple[Optional[Path], list[str]]:
    """CONFIG.toml (at most one, anywhere) and key=value overrides."""
    config, overrides = None, []
    for a in args:
        if "=" in a:
            overrides.append(a)
        elif config is None and a.endswith(".toml"):
            config = Path(a)
        elif a.endswith(".toml"):
            raise ConfigError(f"two config files, '{config}' and '{a}': pass one (merge them, or set the second's keys "
                              "as key=value overrides)")
        else:
            raise ConfigError(f"argument '{a}' is neither a .toml config file nor a key=value override")
    return config, overrides


def _override_keys(overrides: list[str]) -> set[str]:
    """The keys of key=value overrides, as the config reads them (spaces around '=' allowed)."""
    return {o.split("=", 1)[0].strip() for o in overrides if "=" in o}


def _toml_path(path: Path) -> str:
    """A path as a TOML basic string (JSON's escaping is TOML's): a quote or backslash in it stays itself."""
    return json.dumps(str(path), ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML forbids a raw DEL


def _load(args: list[str], data_root: Optional[str | Path]) -> RunConfig:
    config, overrides = _split_args(args or [])
    if data_root is not None:
        if not str(data_root).strip():  # typer would make "" the current folder: `--data-root "$UNSET"`
            raise ConfigError("--data-root is empty (an unset shell variable?): give the folder that holds "
                              "<Dataset>/raw/, or drop the flag to use $GFKD_DATA_ROOT, ./data or ../shared/datasets")
        given = [o for o in overrides if o.split("=", 1)[0].strip() == "data.root"]
        if given:  # which would win is a guess either way
            raise ConfigError(f"the data root is given twice, as --data-root and as {given[0].strip()}: keep one")
        overrides.append(f"data.root={_toml_path(Path(data_root))}")
    return resolve_config(config, overrides)


class _Stderr(logging.Handler):
    """Plain `%(message)s` lines on the stderr of the moment (a test's captured one included)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")
        sys.stderr.flush()


def _show_progress() -> None:
    """Show flows.pipeline's per-stage lines (logger `gfkd.progress`) on stderr as they come, once per process."""
    log = logging.getLogger("gfkd.progress")
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        log.addHandler(_Stderr())
    log.setLevel(logging.INFO)
    log.propagate = False  # not a second time through Prefect's or the root's handlers


def _prefect_env(layout: RunLayout, runs_dir: Path) -> None:
    """Point Prefect's home, database and result storage into the run folder, and matplotlib's config and font cache
    at `<runs_dir>/_cache/matplotlib` (unless the user set them); the servers Prefect and MLflow start from here on
    stop even if this process is killed outright."""
    for k, v in local_env(layout.prefect_home.resolve(), layout.prefect_storage.resolve()).items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("MPLCONFIGDIR", str((runs_dir / "_cache" / "matplotlib").resolve()))  # not the user's home
    reap_descendants_on_kill()


def _check_prefect_home(layout: RunLayout) -> None:
    """`check_prefect_home` for this folder, before anything is written: a refusal leaves the folder as it was."""
    note = check_prefect_home(layout.prefect_home.resolve())
    if note:
        typer.echo(f"gfkd: note: {note}", err=True)


@contextmanager
def _run_lock(layout: RunLayout, name_key: str = "run.name") -> Iterator[None]:
    """One writer per run folder: a second `gfkd run` on the same folder refuses instead of interleaving writes
    (`name_key`: the option that names another folder, for the refusal)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.lock, "a") as fh:  # "a": a refused second writer changes nothing
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GfkdError(f"another gfkd run is writing to {layout.root}: wait for it to finish or choose "
                            f"another {name_key}") from None
        yield


def _reaches_a_stage(before: RunConfig, key: str, value: object) -> bool:
    """Whether setting dotted `key` to `value` alone in `before` changes some stage's cache key (data.root does not)."""
    probe = before.model_dump(mode="json")
    *path, last = key.split(".")
    node = probe
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value
    try:
        after = RunConfig.model_validate(probe)
    except ValueError:  # valid only together with another change (a pair of keys checked jointly): keep it
        return True
    return any(before.stage_config(s) != after.stage_config(s) for s in STAGES)


def _note_other_settings(layout: RunLayout, cfg: RunConfig) -> None:
    """Say so when the run folder holds a run whose stages had other settings: the run name depends only on the
    dataset, protocol, split and seed, so `gfkd run generate.method=gfkd` reuses the default run's folder and redoes
    the stages the change reaches, over that run's results. Keys outside every stage's cache key (data.root,
    run.runs_dir, ...) change no stage and are not worth a note."""
    try:
        before = RunConfig.model_validate(json.loads(layout.config.read_text()))
    except (OSError, ValueError):  # no earlier run, or a config.json of an older gfkd: nothing to compare
        return
    first = next((s for s in STAGES if before.stage_config(s) != cfg.stage_config(s)), None)
    if first is None:
        return
    from gfkd.tracking import flatten

    old, new = flatten(before.model_dump(mode="json")), flatten(cfg.model_dump(mode="json"))
    changed = [f"{k}: {json.dumps(old.get(k))} → {json.dumps(new.get(k))}" for k in sorted(old.keys() | new.keys())
               if old.get(k) != new.get(k) and _reaches_a_stage(before, k, new.get(k))]
    more = f"; {len(changed) - 3} more" if len(changed) > 3 else ""
    after = "" if first == STAGES[-1] else " and the stages after it"
    typer.echo(f"gfkd: note: {layout.root} holds a run of other settings ({', '.join(changed[:3])}{more}): {first}"
               f"{after} run again over its results; pass run.name=NAME to keep both", err=True)


def _quiet_user_errors(record: logging.LogRecord) -> bool:
    """A logging filter for Prefect's task-run logger: drop its report (traceback included) of a task that failed
    with a GfkdError; the CLI reports that error as its one `gfkd: error:` line."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, GfkdError):
        return False
    names = {cls.__name__ for cls in (GfkdError, *GfkdError.__subclasses__())}
    return not any(f"exception {name}:" in record.getMessage() for name in names)


def _check_device(cfg: RunConfig) -> None:
    """run.device=cuda on a machine without one: the one-line error now, not after Prefect has started."""
    if cfg.run.device == "cuda":
        from gfkd.stages.common import resolve_device

        resolve_device("cuda")


def _check_data_root(cfg: RunConfig) -> None:
    """A data root given by --data-root, data.root or GFKD_DATA_ROOT is a folder (a typo would go unnoticed while the
    cache holds the files)."""
    given = cfg.data.root if cfg.data.root is not None else os.environ.get("GFKD_DATA_ROOT") or None
    if given is not None and not Path(given).is_dir():
        source = "data.root (or --data-root)" if cfg.data.root is not None else "GFKD_DATA_ROOT"
        raise ConfigError(f"data root {given} from {source} is not a folder: give the folder that holds "
                          f"<Dataset>/raw/, or leave it unset to use ./data or ../shared/datasets")


def _check_data(cfg: RunConfig, graphs: bool = True) -> None:
    """The dataset is in the data root or the cache, or can be downloaded, and is of the kind the command trains on
    (`graphs`: a TU graph-classification set); else the one-line error, in seconds."""
    from gfkd.data.datasets import check_available, require_graph_dataset, resolve_data_root

    if graphs:
        require_graph_dataset(cfg.data.dataset)
    cache = cfg.data.cache_dir
    if cache is not None and cache.exists() and not cache.is_dir():
        raise ConfigError(f"data.cache_dir '{cache}' is a file: set data.cache_dir to a folder (or leave it unset)")
    _check_data_root(cfg)
    check_available(cfg.data.dataset, resolve_data_root(cfg.data.root), cfg.data_cache, cfg.data.download)


def _check_writable(path: Path, key: str = "run.runs_dir") -> None:
    what = "run folder" if key == "run.runs_dir" else key
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:  # mkdir would say "File exists", which reads as a permission problem
        fix = "remove it or choose another run.name" if blocker == path and key == "run.runs_dir" else \
            f"remove it or set {key} elsewhere"
        raise GfkdError(f"{what} {path} cannot be made: {blocker} is a file, not a folder: {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise GfkdError(f"{what} {path} is not writable ({exc.strerror}): set {key} to a writable folder") from exc


def _check_folder_kind(layout: RunLayout, node: bool) -> None:
    """A `gfkd run` folder and a node-level `gfkd group` folder both keep their results in `group/`: refuse to write
    one kind over the other (a changed config would clear or redo that stage), before anything is written."""
    try:
        before = json.loads(layout.config.read_text())["data"]["dataset"]
    except (OSError, ValueError, KeyError, TypeError):  # no earlier run (or an unreadable one: the stages say so)
        return
    from gfkd.data.datasets import PLANETOID

    if (str(before).lower() in PLANETOID) == node:
        return
    if node:
        raise ConfigError(f"{layout.root} holds a `gfkd run` pipeline run on {before}, whose group stage this command "
                          "would replace: pass run.name=NAME (or another run.runs_dir) for the node-level group")
    raise ConfigError(f"{layout.root} holds a node-level `gfkd group` run on {before}, whose results this command "
                      "would replace: pass run.name=NAME (or another run.runs_dir) for the pipeline run")


def _check_run_folders(layout: RunLayout, cfg: RunConfig) -> None:
    """The data cache (when set) and the run folder are writable: the cache first, so that a refused run leaves no
    run folder behind."""
    if cfg.data.cache_dir is not None:
        _check_writable(cfg.data.cache_dir, "data.cache_dir")
    _check_writable(layout.root)


@app.command()
@_one_line_errors
def run(args: list[str] = typer.Argument(None, help="optional CONFIG.toml, then key=value overrides"),
        data_root: Optional[str] = typer.Option(None, "--data-root", help="data root (else $GFKD_DATA_ROOT, ./data, ../shared/datasets)"),
        force: list[str] = typer.Option([], "--force", metavar="STAGE", help=f"redo this stage even if it is cached (repeatable): {', '.join(STAGES)}"),
        until: Optional[str] = typer.Option(None, "--until", help=f"stop after this stage, one of {', '.join(STAGES)} (the same command without it goes on from there)")) -> None:
    """Run the pipeline (teacher → generate → distill → group → evaluate); print the run folder as the last line.

    The run goes to <run.runs_dir>/<run.name> (default ./runs/<dataset>-<protocol>-fold<k>, e.g.
    runs/mutag-cv10-fold0; seed<k> under holdout, and -s<run.seed> when run.seed is not 0); every key with its
    default and range: gfkd config --reference."""
    cfg = _load(args, data_root)
    for flag, s in [*(("--force", s) for s in force), *([("--until", until)] if until is not None else [])]:
        if s not in STAGES:
            raise ConfigError(f"{flag} {s}: unknown stage, choose one of {', '.join(STAGES)}")
    late = [s for s in force if until is not None and STAGES.index(s) > STAGES.index(until)]
    if late:
        raise ConfigError(f"--force {late[0]} comes after --until {until}, so it would not run: drop one of the two")
    _check_data(cfg)  # fail fast, before any folder is made
    _check_device(cfg)
    layout = RunLayout(cfg.run.runs_dir / cfg.run_name)
    from gfkd.tracking import check_tracking

    check_tracking(layout)  # the servers, if any: before the run folder and Prefect
    check_prefect_api()
    _check_folder_kind(layout, node=False)
    _check_run_folders(layout, cfg)
    _check_prefect_home(layout)
    with _run_lock(layout), scratch_tmp(layout.scratch):
        _note_other_settings(layout, cfg)
        write_json(layout.config, cfg.model_dump(mode="json"))
        _prefect_env(layout, cfg.run.runs_dir)
        logging.getLogger("gfkd").setLevel(logging.INFO)
        _show_progress()
        t0 = time.perf_counter()
        from flows.pipeline import pipeline

        logging.getLogger("prefect.task_runs").addFilter(_quiet_user_errors)
        with exit_on_signals(layout.root, tuple(force), scratch=layout.scratch):
            records = pipeline(cfg, str(layout.root.resolve()), list(force), until)
        summary = {"run": cfg.run_name, "run_dir": str(layout.root.resolve()), "dataset": cfg.data.dataset,
                   "wall_s": time.perf_counter() - t0, "until": until, "stages": {r["stage"]: r for r in records}}
        write_json(layout.summary, summary)
    for r in records:
        typer.echo(stage_line(r), err=True)
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        typer.echo(f"gfkd: error: stage {failed[0]['stage']} failed: {failed[0]['error']}", err=True)
        typer.echo(str(layout.root))
        raise typer.Exit(2 if failed[0].get("user_error") else 1)
    if until is not None and until != STAGES[-1]:
        typer.echo(f"gfkd: stopped after {until} (--until); the same command without --until goes on from there", err=True)
    typer.echo(str(layout.root))


_GROUP_DEFAULTS = RunConfig().group
_PIPELINE_ONLY = ("protocol.", "teacher.", "generate.", "distill.", "group.graph.")  # keys `gfkd group` never reads


@app.command()
@_one_line_errors
def group(args: list[str] = typer.Argument(None, help="optional CONFIG.toml, then key=value overrides (group.*)"),
          dataset: Optional[str] = typer.Option(None, "--dataset", help="Cora, CiteSeer or PubMed (default: the "
                                                "config file's data.dataset when it sets one, else Cora)"),
          backbone: Optional[str] = typer.Option(None, "--backbone", help="gcn | gat | sage (group.backbone; "
                                                 f"default: {_GROUP_DEFAULTS.backbone})"),
          method: Optional[str] = typer.Option(None, "--method", help="oad | independent | dml | kdcl | oad_global "
                                               "| oad_local | oad_agnostic | oad_l2 (group.method; default: "
                                               f"{_GROUP_DEFAULTS.method})"),
          seeds: str = typer.Option("0..9", "--seeds", help="seeds: 0..9, 0,1,2 or 3"),
          data_root: Optional[str] = typer.Option(None, "--data-root", help="data root (else $GFKD_DATA_ROOT, ./data, ../shared/datasets)")) -> None:
    """Node-level online group distillation (OAD or a baseline) on a citation graph; print the run folder last."""
    from gfkd.group.runner import check_node_dataset, run_name, run_node_group, start_folder
    from gfkd.seed_list import parse_seeds

    flagged, keys = dataset is not None, _override_keys(args or [])
    if dataset is None:  # a data.dataset of the file (or of an override) is not replaced silently by a default
        base = _load(args, None)
        dataset = "Cora"
        if "dataset" in base.data.model_fields_set:
            source = ("an override" if "data.dataset" in keys
                      else f"the config file '{_split_args(args or [])[0]}'")
            dataset = check_node_dataset(base.data.dataset, source)
    elsewhere = sorted(k for k in keys if k.startswith(_PIPELINE_ONLY))
    if elsewhere:  # accepted silently before: a user would think it took effect
        raise ConfigError(f"{elsewhere[0]} is a pipeline key, unused by `gfkd group` on a citation graph (it reads "
                          "group.*, data.* and run.*): drop the override, or run it with `gfkd run`")
    extra = [f"data.dataset={check_node_dataset(dataset)}"]
    for flag, key, given in (("--dataset", "data.dataset", flagged), ("--backbone", "group.backbone", backbone),
                             ("--method", "group.method", method)):
        if given and key in keys:
            raise ConfigError(f"gfkd group takes {key} from {flag}: drop the {key}=... override")
    for flag, key, given in (("--backbone", "backbone", backbone), ("--method", "method", method)):
        allowed = get_args(type(_GROUP_DEFAULTS).model_fields[key].annotation)
        if given and given.lower() not in allowed:  # named by the flag typed, not as group.<key>
            raise ConfigError(f"{flag} '{given}' is invalid: choose one of {', '.join(allowed)}")
    extra += [f"group.backbone={backbone.lower()}"] if backbone else []  # as --dataset: any case
    extra += [f"group.method={method.lower()}"] if method else []
    cfg = _load([*(args or []), *extra], data_root)
    seed_list = parse_seeds(seeds)
    twice = sorted({x for x in seed_list if seed_list.count(x) > 1})
    if twice:  # the second was reported as a second seed, kept from the first
        raise ConfigError(f"--seeds '{seeds}' lists seed {twice[0]} twice: give each seed once")
    _check_device(cfg)
    _check_data(cfg, graphs=False)  # fail fast, before any folder is made
    layout = RunLayout(cfg.run.runs_dir / run_name(cfg))
    from gfkd.tracking import check_tracking

    check_tracking(layout)  # before the folder's earlier results are cleared for a changed config
    _check_folder_kind(layout, node=True)
    _check_run_folders(layout, cfg)
    with _run_lock(layout), scratch_tmp(layout.scratch):
        logging.basicConfig(format="%(message)s")
        logging.getLogger("gfkd").setLevel(logging.INFO)
        start_folder(layout, cfg)
        from gfkd.tracking import Tracker

        from tasks.cache import node_group_key

        tracker = Tracker(layout, f"group-{cfg.data.dataset.lower()}")
        tracker.end_orphans()  # a killed earlier command's runs would show RUNNING in the UI for ever
        try:
            res = run_node_group(cfg, seed_list, layout, tracker, key=node_group_key(cfg))
        except KeyboardInterrupt:  # as `gfkd run` words it, naming what is kept where
            typer.echo(f"\ngfkd: interrupted: the finished seeds in {layout.root} are kept; run the same command "
                       "again to resume", err=True)
            raise typer.Exit(INTERRUPTED) from None
    for key, stats in res["summary"].items():
        typer.echo(f"{key:>16}: {100 * stats['mean']:.2f} ± {100 * stats['std']:.2f} (n = {stats['n']})", err=True)
    typer.echo(str(layout.root))


@app.command()
@_one_line_errors
def config(args: list[str] = typer.Argument(None, help="optional CONFIG.toml, then key=value overrides"),
           reference: bool = typer.Option(False, "--reference", help="print every key as a Markdown table"),
           data_root: Optional[str] = typer.Option(None, "--data-root", help="data root, as `gfkd run` takes it")) -> None:
    """Print the resolved config as JSON (defaults ← file ← overrides)."""
    if reference:
        if args or data_root is not None:
            raise ConfigError("gfkd config --reference lists the keys of every config and takes no config file or "
                              "overrides: drop them, or drop --reference to resolve them")
        from gfkd.config import config_reference

        typer.echo(config_reference(), nl=False)
        return
    cfg = _load(args, data_root)
    _check_data_root(cfg)  # as `gfkd run` refuses it (the dataset itself is not looked for: this only shows)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))


@app.command()
@_one_line_errors
def ui(run_dir: Path = typer.Argument(Path("."), help="a run folder made by `gfkd run`"),
       port: int = typer.Option(5000, min=1, max=65535, help="port to serve on (at --host)"),
       host: str = typer.Option("127.0.0.1", help="bind address (keep 127.0.0.1 unless you mean to share it)")) -> None:
    """Open the MLflow UI over a run folder's tracking backend; Ctrl-C stops it."""
    from gfkd.tracking import serve_ui

    reap_descendants_on_kill()  # `mlflow ui` and its workers stop with this command, however it ends
    try:
        code = serve_ui(RunLayout(run_dir), host=host, port=port)
    except KeyboardInterrupt:  # the way to stop a server: nothing to resume, so no "run it again" line
        code = INTERRUPTED
    raise typer.Exit(code)


_GRID_HELP = {
    "datasets": "comma-separated datasets", "generators": "comma-separated generators (acgkd, gfkd, randg, deepinvg or its alias deepinv)",
    "splits": "folds under protocol cv10, split seeds under holdout: 0..2, 0,3 or 4",
    "workers": "cells at once (threads, or Dask workers of --dask's local cluster)",
}


def _benchmark_spec(args: list[str], data_root: Optional[str], datasets: str, generators: str, splits: str,
                    workers: int, dask: bool, dask_address: Optional[str], retries: int, out: Optional[Path],
                    name: str, serving: bool = False):
    """The BenchmarkSpec of the command line, with every path made absolute (a served flow runs elsewhere), and the
    benchmark folder's layout; nothing is written until the input is valid."""
    config, overrides = _split_args(args or [])
    command, given = ("gfkd serve" if serving else "gfkd benchmark"), _override_keys(overrides)
    refuse = lambda key, flag: ConfigError(  # noqa: E731  the grid sets it per cell: the override was ignored
        f"{command} sets {key} per cell from {flag}: drop the {key}=... override")
    for key, flag in (("data.dataset", "--datasets"), ("generate.method", "--generators")):
        if key in given:  # before the config resolves: a bad value would be named first, then the key refused
            raise refuse(key, flag)
    if "run.name" in given:
        raise ConfigError(f"{command} names each cell <dataset>-<generator>-<split> (--name names the benchmark "
                          "folder): drop the run.name=... override")
    base = _load(args, data_root)
    split_key = "protocol.fold" if base.protocol.name == "cv10" else "protocol.seed"
    splits_flag = "--folds" if base.protocol.name == "cv10" else "--seeds"  # one option, three names: the apt one
    if split_key in given:
        raise refuse(split_key, splits_flag)
    in_file = []  # the file's cell keys give way to the grid's (an override's are refused): said once input is valid
    if config is not None:
        import tomllib

        from gfkd.tracking import flatten

        set_in_file = flatten(tomllib.loads(config.read_text()))  # dotted keys; read by _load already: valid
        in_file = [k for k in ("data.dataset", "generate.method", split_key, "run.name") if k in set_in_file]
    _check_device(base)
    overrides += [f"run.runs_dir={_toml_path(base.run.runs_dir.resolve())}"]
    if data_root is not None:  # as resolved by the config (a leading ~ expanded), then made absolute
        overrides.append(f"data.root={_toml_path(base.data.root.resolve())}")
    if out is not None and out.is_dir():
        raise ConfigError(f"--out {out} is a folder: give a file, e.g. --out {out / 'results.md'}")
    if out is not None and not out.resolve().parent.is_dir():
        raise ConfigError(f"--out {out}: its folder {out.resolve().parent} does not exist: create it or give another path")
    from pydantic import ValidationError

    from gfkd.seed_list import parse_seeds
    from gfkd.grid import BenchmarkSpec, grid_cells  # not flows.benchmark: Prefect loads after the input is valid

    items = lambda text: tuple(t.strip() for t in text.split(",") if t.strip())  # noqa: E731
    try:
        split_list = tuple(parse_seeds(splits))
    except ConfigError:
        raise ConfigError(f"{splits_flag} {splits!r} is not a list of splits: write e.g. 0..2, 0,3 or 4") from None
    try:
        spec = BenchmarkSpec(name=name, config=str(config.resolve()) if config else None, overrides=tuple(overrides),
                             datasets=items(datasets), generators=items(generators), splits=split_list,
                             workers=workers, dask=dask, dask_address=dask_address, retries=retries,
                             out=str(out.resolve()) if out else None, command=command_text(sys.argv[1:]))
    except ValidationError as exc:
        err = exc.errors()[0]
        option, given = str(err["loc"][0]), err.get("input")
        msg = err["msg"].removeprefix("Value error, ")
        if option in ("datasets", "generators", "splits"):  # name the text typed, not the parsed tuple
            given = {"datasets": datasets, "generators": generators, "splits": splits}[option]
            if err["type"] == "too_short":
                msg = f"give at least one name, e.g. --{option} {'MUTAG' if option == 'datasets' else 'acgkd'}"
        flag = splits_flag if option == "splits" else f"--{option.replace('_', '-')}"
        raise ConfigError(f"{flag} {given!r} is invalid: {msg}") from None
    try:
        cells = grid_cells(spec)  # every cell's config resolves, or a one-line error
    except ConfigError as exc:
        if "protocol.fold=" in str(exc) or "protocol.seed=" in str(exc):
            raise ConfigError(f"{splits_flag} {splits!r}: {exc}") from None
        raise
    for cfg in {c.dataset: c.cfg for c in cells}.values():
        _check_data(cfg)
    bench = RunLayout(base.run.runs_dir / name)  # the name is one folder name now
    from gfkd.tracking import check_tracking

    check_tracking(bench)  # the input is valid: now the servers, then the folders (none is made for a refusal)
    check_prefect_api(local_fallback=not serving)
    _check_writable(bench.root)
    for cache in {c.cfg.data.cache_dir for c in cells} - {None}:
        _check_writable(cache, "data.cache_dir")
    _check_prefect_home(bench)
    _prefect_env(bench, base.run.runs_dir)
    if in_file:
        typer.echo(f"gfkd: note: {config} sets {', '.join(in_file)}, which {command} sets per cell (--datasets, "
                   f"--generators, {splits_flag}; cell folders <dataset>-<generator>-<split>): the file's "
                   f"{'value is' if len(in_file) == 1 else 'values are'} not used", err=True)
    return spec, bench


@app.command()
@_one_line_errors
def benchmark(args: list[str] = typer.Argument(None, help="optional CONFIG.toml, then key=value overrides for every cell"),
              datasets: str = typer.Option("MUTAG,PROTEINS", help=_GRID_HELP["datasets"]),
              generators: str = typer.Option("acgkd,gfkd,randg", help=_GRID_HELP["generators"]),
              splits: str = typer.Option("0..2", "--splits", "--folds", "--seeds", help=_GRID_HELP["splits"]),
              workers: int = typer.Option(1, help=_GRID_HELP["workers"]),
              dask: bool = typer.Option(False, "--dask", help="run the cells on a local Dask cluster"),
              dask_address: Optional[str] = typer.Option(None, help="run the cells on this Dask scheduler"),
              retries: int = typer.Option(1, help="retries of a failed cell"),
              out: Optional[Path] = typer.Option(None, help="also write the Markdown table here (it is always in <runs_dir>/<name>/results.md)"),
              name: str = typer.Option("benchmark", help="benchmark folder <runs_dir>/<name>, MLflow run name"),
              data_root: Optional[str] = typer.Option(None, "--data-root", help="data root")) -> None:
    """Run the pipeline over datasets × generators × splits; write the table; print the benchmark folder last."""
    spec, bench = _benchmark_spec(args, data_root, datasets, generators, splits, workers, dask, dask_address, retries,
                                  out, name)
    logging.getLogger("gfkd").setLevel(logging.INFO)
    _show_progress()
    from contextlib import ExitStack

    remote = spec.dask_address is not None or (spec.dask and spec.dask_processes)
    kept = f"the finished cells and stages in {bench.root.parent.resolve()}"  # run.runs_dir
    with ExitStack() as stack:
        # before the imports (torch's writes a folder there), and before the flow takes the folder's lock: per process
        scratch = stack.enter_context(scratch_tmp(bench.scratch, per_process=True))
        from flows.benchmark import benchmark as benchmark_flow
        from flows.serve import prefect_api

        if remote:  # workers need an API to reach
            stack.enter_context(prefect_api())
        # as `gfkd run`: at once, one line, no retries to a dead server
        with exit_on_signals(bench.root, kept=kept, scratch=scratch, shared_scratch=bench.scratch):
            result = benchmark_flow(spec)
    for rec in result["cells"]:
        stages = " ".join(f"{k}={v}" for k, v in rec["stages"].items())
        typer.echo(f"{rec['cell']:>28}: {rec['status']:<8} {stages or rec.get('error', '')[:300]}", err=True)
    typer.echo(result["table"], err=True)
    if result["failed"]:
        typer.echo(f"gfkd: error: {len(result['failed'])} cell(s) failed: rerun the same command to resume them",
                   err=True)
        typer.echo(result["folder"])
        raise typer.Exit(1)
    typer.echo(result["folder"])


@app.command()
@_one_line_errors
def serve(args: list[str] = typer.Argument(None, help="optional CONFIG.toml, then key=value overrides for every cell"),
          cron: str = typer.Option(..., help='cron schedule of the benchmark, e.g. "0 2 * * *"'),
          datasets: str = typer.Option("MUTAG,PROTEINS", help=_GRID_HELP["datasets"]),
          generators: str = typer.Option("acgkd,gfkd,randg", help=_GRID_HELP["generators"]),
          splits: str = typer.Option("0..2", "--splits", "--folds", "--seeds", help=_GRID_HELP["splits"]),
          workers: int = typer.Option(1, help=_GRID_HELP["workers"]),
          dask: bool = typer.Option(False, "--dask", help="run the cells on a local Dask cluster"),
          dask_address: Optional[str] = typer.Option(None, help="run the cells on this Dask scheduler"),
          retries: int = typer.Option(1, help="retries of a failed cell"),
          out: Optional[Path] = typer.Option(None, help="also write the Markdown table here (it is always in <runs_dir>/<name>/results.md)"),
          name: str = typer.Option("benchmark", help="benchmark folder <runs_dir>/<name>, MLflow run name"),
          data_root: Optional[str] = typer.Option(None, "--data-root", help="data root")) -> None:
    """Serve the benchmark as the Prefect deployment gfkd-benchmark/scheduled on a cron schedule (needs PREFECT_API_URL)."""
    from flows.serve import check_cron, serve_benchmark

    check_cron(cron)  # input first, then the server
    if not prefect_api_url()[0]:
        raise GfkdError("gfkd serve needs a running Prefect server: run `prefect server start` and set "
                        "PREFECT_API_URL=http://127.0.0.1:4200/api")
    spec, bench = _benchmark_spec(args, data_root, datasets, generators, splits, workers, dask, dask_address, retries,
                                  out, name, serving=True)
    with scratch_tmp(bench.scratch, per_process=True):  # held for the server's life without the folder's lock
        serve_benchmark(spec, cron)


def _command_path(argv: list[str]) -> str:
    """`gfkd <subcommand>` named in argv, else `gfkd`: click gives some usage errors no context to read it from."""
    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    return next((f"gfkd {a}" for a in argv if a in names), "gfkd")


def main() -> None:
    """The `gfkd` command: click's own usage errors (an unknown option, an option's bad value) are one line too."""
    try:
        from typer._click import exceptions as click  # typer >= 0.2x carries its own click
    except ImportError:
        from click import exceptions as click
    record_command(sys.argv[1:])  # named in each run's report (gfkd/stages/evaluate.py)
    try:
        code = app(standalone_mode=False)
    except click.NoArgsIsHelpError as exc:  # bare `gfkd` or `gfkd <cmd>` without arguments: the help
        exc.show()
        sys.exit(2)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else _command_path(sys.argv[1:])
        typer.echo(f"gfkd: error: {exc.format_message().rstrip('.')} (see `{where} --help`)", err=True)
        sys.exit(2)
    except click.ClickException as exc:  # e.g. an unreadable file given to a click.File option
        typer.echo(f"gfkd: error: {exc.format_message().rstrip('.')}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:  # typer >= 0.2x keeps Abort in typer.exceptions, not in its click copy
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except BrokenPipeError:  # `gfkd config | head -1`: the reader left; say nothing more
        sys.stdout = open(os.devnull, "w")  # so that the interpreter's last flush does not raise again
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
