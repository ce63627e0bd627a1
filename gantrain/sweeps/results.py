"""A sweep's results table, built from its folders alone: sweep.json and each job's summary.json.

One row per job (its varying overrides, status, steps, wall time, objective, final and best value of every
metric), sorted by the objective; jobs that differ only in ``trainer.seed`` grouped as mean +- std.
Written as SWEEP_DIR/results.csv (tools) and results.md (people); SWEEP_DIR/best links the best job.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from gantrain.engine.checkpoint import write_atomic
from gantrain.engine.summary import DONE, FAILED, INTERRUPTED, NOT_STARTED, read_summary
from gantrain.errors import UserError
from gantrain.sweeps.arguments import override_key
from gantrain.sweeps.plan import SEED_KEY, SweepPlan, job_folder_name, job_number, load_plan

CSV, MARKDOWN, BEST = "results.csv", "results.md", "best"
FIXED_COLUMNS = ("job", "folder", "status", "steps", "wall_time_s", "objective")
NUMERIC = ("steps", "wall_time_s", "objective")
DIRECTIONS = ("minimize", "maximize")


@dataclass
class Row:
    """One job of the sweep."""

    job: int
    folder: str
    overrides: dict[str, str]  # the varying keys' values
    status: str
    reason: str = ""
    values: dict[str, float | None] = field(default_factory=dict)  # steps, wall_time_s, objective, metric columns


@dataclass
class Table:
    """The rows, their column names, and how they are ranked."""

    sweep_dir: Path
    plan: SweepPlan
    rows: list[Row]
    metric_columns: list[str]
    higher: dict[str, bool]  # per numeric column: is higher better
    sort: str | None = None
    maximize: bool = False

    @property
    def value_columns(self) -> list[str]:
        return [*NUMERIC, *self.metric_columns]

    @property
    def shown_columns(self) -> list[str]:
        """The value columns some job has a number in (no empty objective column when none was set)."""
        return [c for c in self.value_columns if any(_number(r.values.get(c)) for r in self.rows)]

    def failed(self) -> int:
        return sum(row.status == FAILED for row in self.rows)

    def best(self) -> Row | None:
        ranked = [row for row in self.sorted_rows() if row.status == DONE and _number(row.values.get(self.sort))]
        return ranked[0] if ranked else None

    def sorted_rows(self) -> list[Row]:
        return sorted(self.rows, key=lambda row: (*self.rank_key(row.values.get(self.sort)), row.job))

    def rank_key(self, value: float | None) -> tuple[int, float]:
        if self.sort is None or not _number(value):
            return (1, 0.0)  # no value: after every ranked row
        return (0, -value if self.maximize else value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def job_overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []


def expected_jobs(plan: SweepPlan) -> dict[int, list[str]]:
    """Every job a grid sweep (Hydra's basic sweeper) launches, by number; {} for sweepers that choose as they go."""
    if plan.sweeper != "basic":
        return {}
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(plan.arguments)
    try:
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:  # noqa: BLE001 - a sweep kind only the sweeper itself can expand: list the folders only
        return {}
    return dict(enumerate(job for batch in batches for job in batch))


def collect(sweep_dir: str | Path, purpose: str = "tabulate") -> Table:
    """The table of a sweep folder; a folder that is not a sweep is a one-line error."""
    folder = Path(sweep_dir).expanduser()
    plan = load_plan(folder, purpose)
    found = [(job_number(child.name), child) for child in folder.iterdir()  # a resumed Optuna study repeats numbers
             if job_number(child.name) is not None and not child.is_symlink() and (child / ".hydra").is_dir()]
    numbers = {num for num, _ in found}
    expected = expected_jobs(plan)
    jobs = found + [(num, None) for num in expected if num not in numbers]
    rows, higher, metric_columns = [], {"steps": True, "wall_time_s": False}, []
    for num, job_dir in sorted(jobs, key=lambda job: (job[0], job[1].name if job[1] else "")):
        overrides = job_overrides(job_dir) if job_dir else expected[num]
        chosen = {key: value for key, value in map(_split, overrides) if key in plan.varying}
        if job_dir is None:
            rows.append(Row(num, job_folder_name(num, overrides, plan.varying), chosen, NOT_STARTED))
            continue
        summary = read_summary(job_dir)
        if summary is None:  # a folder but no summary: killed outright (SIGKILL, a node lost), or still running
            status = INTERRUPTED if (job_dir / "checkpoints").is_dir() else NOT_STARTED
            rows.append(Row(num, job_dir.name, chosen, status))
            continue
        values: dict[str, float | None] = {"steps": summary.get("steps"), "wall_time_s": summary.get("wall_time_s"),
                                           "objective": (summary.get("objective") or {}).get("value")}
        for name, record in (summary.get("metrics") or {}).items():
            for column, kind in ((name, "final"), (f"{name}_best", "best")):
                if column not in metric_columns:
                    metric_columns.append(column)
                values[column] = record.get(kind)
                if record.get("higher_is_better") is not None:
                    higher[column] = bool(record["higher_is_better"])
        rows.append(Row(num, job_dir.name, chosen, str(summary.get("status")), summary.get("reason") or "", values))
    if plan.objective is not None:
        objective_metric = next((c for c in metric_columns if c.split("@")[0].split("/")[0] == plan.objective), None)
        if objective_metric in higher:
            higher["objective"] = higher[objective_metric]
    return Table(folder, plan, rows, metric_columns, higher)


def _split(override: str) -> tuple[str | None, str]:
    return override_key(override), override.split("=", 1)[1] if "=" in override else ""


def rank(table: Table, sort: str | None = None, direction: str | None = None) -> Table:
    """Choose the sort column (``results.sort``, else the objective, else the first metric) and its direction
    (``results.direction``, else the sweeper's for the objective, else the metric's own, else minimize)."""
    logged = table.shown_columns
    if sort is not None and sort not in table.value_columns:
        raise UserError(f"results.sort={sort} is not a column of this sweep; choose from: "
                        f"{', '.join(logged) or '(nothing was logged yet)'}")
    if direction is not None and direction not in DIRECTIONS:
        raise UserError(f"results.direction={direction} is not a direction; choose from: {', '.join(DIRECTIONS)}")
    if sort is None:
        sort = "objective" if "objective" in logged else next((c for c in table.metric_columns if c in logged), None)
    table.sort = sort
    if direction is None and sort == "objective" and table.plan.direction in DIRECTIONS:
        direction = table.plan.direction
    table.maximize = direction == "maximize" if direction else table.higher.get(sort, False)
    return table


@dataclass
class Group:
    """Jobs that differ only in their seed."""

    overrides: dict[str, str]
    rows: list[Row]

    def stats(self, column: str | None) -> tuple[float | None, float | None]:
        values = [r.values.get(column) for r in self.rows if r.status == DONE and _number(r.values.get(column))]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    def status(self) -> str:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        return ", ".join(f"{n} {status}" for status, n in counts.items())


def group_seeds(table: Table) -> list[Group] | None:
    """Rows that differ only in trainer.seed, ranked by their mean; None when the seed is not swept."""
    if SEED_KEY not in table.plan.varying:
        return None
    groups: dict[tuple, Group] = {}
    for row in table.rows:
        rest = {k: v for k, v in row.overrides.items() if k != SEED_KEY}
        groups.setdefault(tuple(rest.items()), Group(rest, [])).rows.append(row)
    ranked = list(groups.values())
    ranked.sort(key=lambda g: table.rank_key(g.stats(table.sort)[0]))
    return ranked


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _mean_std(group: Group, column: str) -> str:
    mean, std = group.stats(column)
    return "" if mean is None else f"{mean:.4g} ± {std:.2g}"


def job_table(table: Table) -> tuple[list[str], list[list[str]]]:
    header = ["job", *table.plan.varying, "status", *table.shown_columns, "reason"]
    body = [[str(r.job), *(r.overrides.get(k, "") for k in table.plan.varying), r.status,
             *(_format(r.values.get(c)) for c in table.shown_columns), r.reason] for r in table.sorted_rows()]
    return header, body


def group_table(table: Table, groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    keys = [k for k in table.plan.varying if k != SEED_KEY]
    columns = [c for c in table.shown_columns if c != "steps"]
    header = [*keys, "seeds", "status", *columns]
    body = [[*(g.overrides.get(k, "") for k in keys), str(len(g.rows)), g.status(), *(_mean_std(g, c) for c in columns)]
            for g in groups]
    return header, body


def to_csv(table: Table) -> str:
    """One row per job in job order: folder, varying overrides, status, numbers, the failure reason."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["job", "folder", *table.plan.varying, "status", *table.value_columns, "reason"])
    for r in sorted(table.rows, key=lambda r: r.job):
        writer.writerow([r.job, r.folder, *(r.overrides.get(k, "") for k in table.plan.varying), r.status,
                         *(_format(r.values.get(c)) for c in table.value_columns), r.reason])
    return out.getvalue()


def _markdown(header: list[str], body: list[list[str]]) -> str:
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(escape, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(escape, row)) + " |" for row in body]) + "\n"


def headline(table: Table) -> str:
    """Who won, by what, and how many jobs did not finish."""
    best = table.best()
    order = "highest" if table.maximize else "lowest"
    counts = f"{len(table.rows)} jobs, {table.failed()} failed"
    if best is None:
        if table.sort:
            return f"{counts}; no finished job has a value to rank by ({table.sort})"
        return (f"{counts}; nothing to rank by: sweep with 'metrics.names=[...]' (fid for images, coverage on "
                "toy2d) or objective=NAME so the table can say which setting won")
    return f"{counts}; best: {best.folder} ({table.sort} {_format(best.values.get(table.sort))}, {order} wins)"


def to_markdown(table: Table, groups: list[Group] | None) -> str:
    parts = [f"# Sweep results: {table.sweep_dir.name}\n", headline(table) + "\n", "## Jobs\n",
             _markdown(*job_table(table))]
    if groups is not None:
        parts += ["\n## Grouped over seeds (mean ± std of finished jobs)\n", _markdown(*group_table(table, groups))]
    return "\n".join(parts)


def link_best(table: Table) -> Path | None:
    """SWEEP_DIR/best -> the best job's folder (a relative symlink, replaced atomically): a run folder for
    ``task=sample checkpoint=SWEEP_DIR/best`` and ``resume=``."""
    best = table.best()
    if best is None:
        return None
    link = table.sweep_dir / BEST
    tmp = table.sweep_dir / f".{BEST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(best.folder, tmp, target_is_directory=True)
    os.replace(tmp, link)
    return link


def write_results(table: Table, group: bool = True) -> list[Group] | None:
    """results.csv, results.md and the best link; returns the seed groups shown (None: not grouped)."""
    groups = group_seeds(table) if group else None
    write_atomic(to_csv(table).encode("utf-8"), table.sweep_dir / CSV)
    write_atomic(to_markdown(table, groups).encode("utf-8"), table.sweep_dir / MARKDOWN)
    link_best(table)
    return groups


def show(table: Table, groups: list[Group] | None, stderr: bool = False) -> None:
    """The table on the terminal (wide enough for its columns when the output is a file or a pipe), then who won."""
    from rich.console import Console

    probe = Console(stderr=stderr)
    console = probe if probe.is_terminal else Console(stderr=stderr, width=220)
    console.print(rich_table(table, groups))
    console.print(f"{headline(table)}\nresults: {table.sweep_dir / MARKDOWN}", highlight=False, soft_wrap=True)


def rich_table(table: Table, groups: list[Group] | None) -> Any:
    from rich.table import Table as RichTable

    header, body = group_table(table, groups) if groups is not None else job_table(table)
    order = f"sorted by {table.sort}, {'higher' if table.maximize else 'lower'} is better" if table.sort else "job order"
    shown = RichTable(title=f"{table.sweep_dir} ({order})", title_justify="left")
    for name in header:
        shown.add_column(name, overflow="fold")
    for row in body:
        shown.add_row(*row)
    return shown


def tabulate(sweep_dir: str | Path, sort: str | None = None, direction: str | None = None,
             group: bool = True, purpose: str = "tabulate") -> tuple[Table, list[Group] | None]:
    """Collect, rank and write a sweep's results."""
    table = rank(collect(sweep_dir, purpose), sort, direction)
    return table, write_results(table, group)
