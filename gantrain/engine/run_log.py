"""Where a run reports: the progress bar, TensorBoard scalars and images, PNGs in the run folder."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text
from torch.utils.tensorboard import SummaryWriter

from gantrain.engine.visuals import image_grid, save_picture, scatter_image
from gantrain.recipes.base import Preview


def format_scalars(values: dict[str, float], limit: int = 6) -> str:
    return "  ".join(f"{name} {value:.4g}" for name, value in list(values.items())[:limit])


class TrainingProgress(Progress):
    """A progress bar with the latest scalars on their own line below it, so neither crowds the other."""

    scalars = ""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        if self.scalars:
            yield Text(self.scalars, style="dim", overflow="fold")


class RunLog:
    """One per run; a no-op sink for what it is not asked to show (``progress=False``)."""

    def __init__(self, run_dir: Path, total_steps: int | None, start_step: int, progress: bool = True,
                 console: Console | None = None) -> None:
        self.run_dir = run_dir
        self.samples_dir = run_dir / "samples"
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        # on resume, hide what an interrupted run logged after its checkpoint: those steps are trained again
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)
        self.console = console or Console(stderr=True)
        self.interactive = progress and self.console.is_terminal
        self.plain = progress and not self.interactive  # log lines instead of a live bar (CI, clusters)
        self._rate_start = (time.perf_counter(), start_step)
        self.progress = TrainingProgress(
            TextColumn("[bold]train"), BarColumn(bar_width=None), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=self.console, disable=not self.interactive, refresh_per_second=4, expand=True,
        )
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step, rate="")
        self._shown: dict[str, float] | None = None  # the scalars on the progress display now
        self.total_steps = total_steps

    def __enter__(self) -> "RunLog":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rate(self, step: int) -> float:
        started, first_step = self._rate_start
        elapsed = time.perf_counter() - started
        return (step - first_step) / elapsed if elapsed > 0 else 0.0

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        if self.plain:
            total = f"/{self.total_steps}" if self.total_steps else ""
            shown = {name: value for name, value in values.items() if name not in SPEED}
            self.console.print(f"step {step}{total}  {speed_text(self.rate(step), values)}  {format_scalars(shown, 8)}",
                               highlight=False, soft_wrap=True)

    def advance(self, step: int, values: dict[str, float]) -> None:
        if not self.interactive:
            return
        if values is not self._shown:  # new scalars come every log_every steps: format them then, not every step
            self._shown = values
            self.progress.scalars = format_scalars({k: v for k, v in values.items() if k not in SPEED}, len(values))
        self.progress.update(self.task, completed=step, rate=speed_text(self.rate(step), values))

    def preview(self, step: int, preview: Preview) -> Path:
        """Write the preview to TensorBoard and ``samples/step_XXXXXXX.png``."""
        if preview.samples.dim() == 4:
            picture = image_grid(preview.samples, preview.nrow)
        else:
            picture = scatter_image(preview.samples, preview.reference)
        self.writer.add_image("samples", picture, step)
        path = self.samples_dir / f"step_{step:07d}.png"
        save_picture(picture, path)
        return path

    def augmented_reals(self, step: int, images: torch.Tensor, nrow: int) -> Path:
        """Real images as the discriminator sees them (``augment``): TensorBoard ``augment/reals`` and a PNG."""
        picture = image_grid(images, nrow)
        self.writer.add_image("augment/reals", picture, step)
        path = self.samples_dir / "augmented_reals.png"
        save_picture(picture, path)
        return path

    def metrics(self, step: int, values: dict[str, float], seconds: float) -> None:
        """An evaluation: TensorBoard ``metrics/NAME`` and one console line."""
        for name, value in values.items():
            self.writer.add_scalar(f"metrics/{name}", value, step)
        if self.interactive or self.plain:
            self.note(f"eval at step {step} ({seconds:.1f} s): {format_scalars(values, limit=len(values))}")

    def note(self, message: str) -> None:
        self.console.print(message, highlight=False, soft_wrap=True)

    def close(self) -> None:
        self.progress.stop()
        self.writer.close()


class SilentLog(RunLog):
    """What data-parallel ranks other than 0 log to: nothing (rank 0 reports for all)."""

    def __init__(self) -> None:  # noqa: D107 - no folder, no writer, no console
        pass

    def __enter__(self) -> "SilentLog":
        return self

    def scalars(self, step: int, values: dict[str, float]) -> None:
        pass

    def advance(self, step: int, values: dict[str, float]) -> None:
        pass

    def preview(self, step: int, preview: Preview) -> None:
        pass

    def augmented_reals(self, step: int, images: torch.Tensor, nrow: int) -> None:
        pass

    def metrics(self, step: int, values: dict[str, float], seconds: float) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


IMAGES_PER_SECOND, DATA_SHARE = "speed/images_per_s", "speed/data_wait_share"
SPEED = (IMAGES_PER_SECOND, DATA_SHARE)


def speed_text(steps_per_second: float, values: Mapping[str, float]) -> str:
    """'12.3 it/s  788 img/s  data 2%': the rate, and (once measured) whether the input pipeline holds it back."""
    text = f"{steps_per_second:.1f} it/s"
    if IMAGES_PER_SECOND in values:
        text += f"  {values[IMAGES_PER_SECOND]:.0f} img/s  data {values[DATA_SHARE]:.0%}"
    return text


class Throughput:
    """Samples per second and the share of wall time spent waiting for batches, between two reports.

    A data-wait share near 0 means the networks set the pace; a large one means the input pipeline
    does (more workers, ``data.on_device``, or a cached image folder help). On a GPU the wait is the
    host's: batches drawn on the device are queued, not waited for.
    """

    def __init__(self, ranks: int = 1) -> None:
        self.ranks = ranks  # each rank counts its own share; the report is for all of them
        self._reset()

    def _reset(self) -> None:
        self.samples = 0
        self.waiting = 0.0
        self.since = time.perf_counter()

    @contextmanager
    def waiting_for_data(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.waiting += time.perf_counter() - started

    def count(self, batch: Mapping[str, torch.Tensor]) -> None:
        self.samples += next(iter(batch.values())).shape[0]

    def report(self) -> dict[str, float]:
        """Images/s (all ranks) and the data-wait share since the last report; starts a new interval."""
        seconds = max(time.perf_counter() - self.since, 1e-9)
        values = {IMAGES_PER_SECOND: self.samples * self.ranks / seconds, DATA_SHARE: self.waiting / seconds}
        self._reset()
        return values


def to_floats(values: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """One device sync for all scalars of a step."""
    return {name: float(value) for name, value in values.items()}
