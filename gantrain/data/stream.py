"""An endless, resumable stream of batches over epochs.

The order of each epoch is a permutation drawn from its own generator seeded by
(seed, epoch), independent of every other random number. Per-position randomness
comes from other generators of that (seed, epoch): the coin of ``data.hflip``, and the
uniform numbers a dataset asks for (``random_numbers`` per sample: crop offsets, flips,
the unpaired partner of a translation batch). So the position in the data is just
(epoch, samples taken), and resuming replays nothing.

A recipe may ask for a batch of another size than ``trainer.batch_size`` (``next_batch(n)``,
e.g. a growing network's per-resolution batch): the stream takes the next n positions of
the same epoch order, so the position stays exact in samples whatever sizes were asked for.
An epoch ends when fewer positions remain than the batch asked for (they are dropped, as
``drop_last`` does); with ``drop_last=False`` the remainder is served as a short batch.

Data-parallel ranks all cut the same global batch and each keeps its own contiguous
slice, so their positions stay identical and their slices together are the global batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from gantrain.data.source import DataSource
from gantrain.errors import UserError
from gantrain.registry import unknown_choice

ON_DEVICE_CHOICES = ("auto", "true", "false")
ACCELERATORS = ("cuda", "mps")  # where on_device=auto keeps tensor data
FLIP_STREAM = 1  # the flips' generator stream; 0 orders the epoch
AUGMENT_STREAM = 2  # the stream of the uniform numbers a dataset asks for per sample


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator of its own for one (seed, epoch, stream): the same numbers on every device and rank."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch + (stream << 40))


def mirror(images: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) with those where ``flips`` is true mirrored left-right: whole batch, no host sync."""
    if images.dim() != 4:
        raise ValueError(f"horizontal flips need images (N, C, H, W), got shape {tuple(images.shape)}")
    return torch.where(flips.view(-1, 1, 1, 1), images.flip(-1), images)


def keeps_on_device(on_device: Any, device: torch.device) -> bool:
    """``data.on_device``: true, false, or auto (true on an accelerator, where it spares the host copy)."""
    if isinstance(on_device, bool):
        return on_device
    if on_device == "auto":
        return device.type in ACCELERATORS
    raise UserError(unknown_choice("data.on_device", on_device, list(ON_DEVICE_CHOICES)))


def _flag(value: Any, option: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{option} must be true or false, got {value!r}")
    return value


@dataclass
class EpochPlan:
    """Everything random about one epoch, drawn once: the order and the per-position draws."""

    epoch: int
    order: torch.Tensor  # a permutation of the dataset's indices (where the indices must lie)
    flips: torch.Tensor | None  # data.hflip's coin per position (on the training device)
    randoms: torch.Tensor | None  # (positions, dataset.random_numbers) uniforms in [0, 1), or None


class BatchStream:
    """Yields batch dicts on ``device``; ``state_dict`` records the exact position.

    ``batch_size`` is the global batch; rank ``rank`` of ``world_size`` gets its slice of it.
    """

    CONFIG_KEYS = ("num_workers", "on_device", "hflip")  # data-config keys the stream reads (not the dataset builder)

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, device: torch.device,
                 num_workers: int = 0, drop_last: bool = True, hflip: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = device
        self.num_workers = int(num_workers)
        self.drop_last = drop_last
        self.hflip = hflip
        self.random_numbers = int(getattr(dataset, "random_numbers", 0))
        self.rank, self.world_size = int(rank), int(world_size)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise UserError(f"rank {self.rank} is not one of world_size={self.world_size} ranks")
        self._check_size(self.batch_size, "trainer.batch_size")
        self.epoch = 0
        self.samples_taken = 0  # positions of the current epoch already served (all ranks together)
        self._plan: EpochPlan | None = None
        self._loader: tuple[tuple[int, int, int], Any] | None = None  # ((epoch, start, size), iterator): DataLoader path

    def _check_size(self, size: int, what: str) -> None:
        if size % self.world_size:
            raise UserError(f"{what}={size} (the global batch) is not divisible by world_size={self.world_size}")
        if len(self.dataset) < size and self.drop_last:
            raise UserError(f"the dataset has {len(self.dataset)} samples, fewer than {what}={size}")

    @classmethod
    def from_config(cls, source: DataSource, data_cfg: Mapping[str, Any], batch_size: int, seed: int,
                    device: torch.device, rank: int = 0, world_size: int = 1) -> "BatchStream":
        """The trainer's stream, set up from the ``data`` config group (keys in ``CONFIG_KEYS``).

        With ``on_device`` the source's tensor storage moves onto ``device`` in place, so previews and
        metrics read the same copy.
        """
        hflip = _flag(data_cfg.get("hflip", False), "data.hflip")
        if hflip and not source.spec.is_image:
            raise UserError(f"data.hflip=true mirrors images, but data={data_cfg.get('name')} holds points "
                            f"of shape {source.spec.shape}; set data.hflip=false")
        if hflip and "real" not in source.spec.batch_keys:
            raise UserError(f"data.hflip=true mirrors the images of noise-to-image data, but data="
                            f"{data_cfg.get('name')} hands out {', '.join(source.spec.batch_keys)}; set "
                            "data.hflip=false (image-to-image data flips with its own data.flip)")
        on_device = data_cfg.get("on_device", "auto")
        if keeps_on_device(on_device, device):
            if hasattr(source.dataset, "to") and hasattr(source.dataset, "get_batch"):
                source.dataset.to(device)
            elif on_device is True:
                raise UserError(f"data.on_device=true needs data decoded into tensors, which data="
                                f"{data_cfg.get('name')} is not (image_folder: set data.cache=true)")
        return cls(source.dataset, batch_size, seed, device, num_workers=data_cfg.get("num_workers", 0),
                   hflip=hflip, rank=rank, world_size=world_size)

    @property
    def batches_per_epoch(self) -> int:
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def epochs_done(self) -> float:
        """Epochs completed, fractions included, counted in samples of trainer.batch_size-sized epochs."""
        usable = len(self.dataset) if not self.drop_last else self.batches_per_epoch * self.batch_size
        return self.epoch + self.samples_taken / max(usable, 1)

    @property
    def _index_device(self) -> torch.device:
        """Where indices must lie: with the tensor storage, or on the CPU for a DataLoader."""
        return getattr(self.dataset, "device", torch.device("cpu")) if hasattr(self.dataset, "get_batch") \
            else torch.device("cpu")

    def plan(self, epoch: int) -> EpochPlan:
        """The epoch's order and per-position draws, identical every time it is asked for."""
        if self._plan is not None and self._plan.epoch == epoch:
            return self._plan
        size = len(self.dataset)
        order = torch.randperm(size, generator=epoch_generator(self.seed, epoch)).to(self._index_device)
        flips = randoms = None
        if self.hflip:
            flips = (torch.rand(size, generator=epoch_generator(self.seed, epoch, FLIP_STREAM)) < 0.5).to(self.device)
        if self.random_numbers:
            randoms = torch.rand(size, self.random_numbers, generator=epoch_generator(self.seed, epoch, AUGMENT_STREAM))
            randoms = randoms.to(self._index_device)
        self._plan = EpochPlan(epoch, order, flips, randoms)
        return self._plan

    def _my_slice(self, global_batch: torch.Tensor | None) -> torch.Tensor | None:
        if global_batch is None or self.world_size == 1:
            return global_batch
        return global_batch.tensor_split(self.world_size)[self.rank]

    def _room(self, size: int) -> int:
        """How many positions the next batch of ``size`` takes from this epoch (0: start the next epoch)."""
        left = len(self.dataset) - self.samples_taken
        if left >= size:
            return size
        return left if not self.drop_last and left > 0 else 0

    def next(self, batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """The next global batch's slice for this rank; ``batch_size`` (global) defaults to trainer.batch_size."""
        size = self.batch_size if batch_size is None else int(batch_size)
        if size != self.batch_size:
            self._check_size(size, "the batch size asked for")
        taken = self._room(size)
        if taken == 0:
            self.epoch += 1
            self.samples_taken = 0
            taken = self._room(size)
        plan = self.plan(self.epoch)
        start, end = self.samples_taken, self.samples_taken + taken
        indices = self._my_slice(plan.order[start:end])
        randoms = self._my_slice(plan.randoms[start:end] if plan.randoms is not None else None)
        flips = self._my_slice(plan.flips[start:end] if plan.flips is not None else None)
        if hasattr(self.dataset, "get_batch"):
            batch = self.dataset.get_batch(indices, randoms) if randoms is not None else self.dataset.get_batch(indices)
        else:
            batch = self._from_loader(plan, start, size)
        self.samples_taken = end
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if flips is not None:
            batch["real"] = mirror(batch["real"], flips)
        return batch

    def _from_loader(self, plan: EpochPlan, start: int, size: int) -> dict[str, torch.Tensor]:
        """Map-style datasets: a DataLoader (with workers) over the rest of the epoch at this batch size.

        It is rebuilt only when the epoch or the batch size changes, so workers keep prefetching.
        """
        key = (plan.epoch, start, size)
        if self._loader is None or self._loader[0] != key:
            usable = len(self.dataset) if not self.drop_last else start + (len(self.dataset) - start) // size * size
            sampler = [self._my_slice(plan.order[s:min(s + size, usable)]).tolist() for s in range(start, usable, size)]
            loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.num_workers,
                                pin_memory=self.device.type == "cuda", persistent_workers=False)
            self._loader = (key, iter(loader))
        batch = next(self._loader[1])
        self._loader = ((plan.epoch, start + size, size), self._loader[1])
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "samples_taken": self.samples_taken}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        if "samples_taken" in state:
            self.samples_taken = int(state["samples_taken"])
        else:  # older checkpoints counted whole batches of trainer.batch_size
            self.samples_taken = int(state["batches_taken"]) * self.batch_size
        self._plan = None
        self._loader = None
