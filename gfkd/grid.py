"""The benchmark grid without Prefect: `BenchmarkSpec` (the command line, validated) and its cells, so that
`gfkd benchmark` refuses bad input in a second, before the flow and its imports load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from gfkd.config import RunConfig, folder_name, resolve_config


class BenchmarkSpec(BaseModel):
    """A benchmark grid and how to run it (the flow's one parameter; `gfkd benchmark` builds it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field("benchmark", min_length=1, description="folder <runs_dir>/<name> and MLflow run name")
    config: str | None = Field(None, description="TOML file of overrides for every cell")
    overrides: tuple[str, ...] = Field((), description="key=value overrides for every cell")
    datasets: tuple[str, ...] = Field(("MUTAG", "PROTEINS"), min_length=1)
    generators: tuple[Literal["acgkd", "gfkd", "randg", "deepinvg", "deepinv"], ...] = Field(("acgkd", "gfkd", "randg"),
                                                                                 min_length=1)
    splits: tuple[int, ...] = Field((0, 1, 2), min_length=1, description="folds (cv10) or split seeds (holdout)")
    workers: int = Field(1, ge=1, description="cells at once (threads, or Dask workers of a local cluster)")
    dask: bool = Field(False, description="run cells on a Dask LocalCluster")
    dask_address: str | None = Field(None, description="run cells on the Dask scheduler at this address")
    dask_processes: bool = Field(True, description="local cluster: worker processes (False: threads in one)")
    retries: int = Field(1, ge=0, description="retries of a failed cell within one benchmark run")
    out: str | None = Field(None, description="also write the Markdown table here")
    command: str = Field("", description="the command line, quoted in the Markdown table")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = folder_name(v, "the benchmark folder is one folder name inside run.runs_dir", "--name nightly")
        if v.startswith(("_", ".")):  # <runs_dir>/_cache holds the datasets
            raise ValueError(f"--name {v}: names starting with '_' or '.' are the tool's own folders in run.runs_dir "
                             "(_cache: the datasets); e.g. --name nightly")
        return v

    @field_validator("datasets", "generators", "splits")
    @classmethod
    def _once_each(cls, v: tuple) -> tuple:
        """A name given twice (deepinv is deepinvg's alias; MUTAG is mutag's folder) would run its cells twice."""
        seen: dict[str, object] = {}
        for item in v:
            same = {"deepinv": "deepinvg"}.get(str(item).lower(), str(item).lower())
            if same in seen:
                raise ValueError(f"{item} repeats {seen[same]}: give each once")
            seen[same] = item
        return v

    @field_validator("dask_address")
    @classmethod
    def _address(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if info.data.get("dask"):
            raise ValueError("give --dask (a local cluster) or --dask-address (a running scheduler), not both")
        parts = urlsplit(v if "://" in v else f"tcp://{v}")
        try:
            port = parts.port
        except ValueError:  # not a number, or out of range
            port = None
        if not parts.hostname or port is None:
            raise ValueError("write the scheduler's address as tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786")
        return v

    @property
    def fanned_out(self) -> bool:
        return self.workers > 1 or self.dask or self.dask_address is not None


class Cell(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    dataset: str
    generator: str
    split: int
    root: str
    cfg: RunConfig
    command: str = ""  # the benchmark's command line, named in the cell's report


def base_config(spec: BenchmarkSpec) -> RunConfig:
    return resolve_config(spec.config, list(spec.overrides))


def benchmark_dir(spec: BenchmarkSpec) -> Path:
    return (base_config(spec).run.runs_dir / spec.name).resolve()


def grid_cells(spec: BenchmarkSpec) -> list[Cell]:
    """Every dataset × generator × split of the grid, with its resolved config and run folder."""
    base = base_config(spec)
    key, word = ("protocol.fold", "fold") if base.protocol.name == "cv10" else ("protocol.seed", "seed")
    cells = []
    for ds in spec.datasets:
        for gen in spec.generators:
            for s in spec.splits:
                name = f"{ds.lower()}-{gen}-{word}{s}"
                cfg = resolve_config(spec.config, [*spec.overrides, f"data.dataset='{ds}'", f"generate.method={gen}",
                                                   f"{key}={s}", f"run.name='{name}'"])
                cells.append(Cell(name=name, dataset=ds, generator=gen, split=s, cfg=cfg,
                                  root=str((cfg.run.runs_dir / name).resolve()), command=spec.command))
    return cells
