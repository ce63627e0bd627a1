"""An endless, resumable stream of batches over epochs.

The order of each epoch is a permutation drawn from its own generator seeded by
(seed, epoch), independent of every other random number; random horizontal flips
are one coin per position of the epoch, from another generator of that (seed, epoch).
So the position in the data is just (epoch, batches taken), and resuming replays nothing.

Data-parallel ranks all cut the same global batch and each keeps its own contiguous
slice, so their positions stay identical and their slices together are the global batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from gantrain.data.source import DataSource, TensorSamples
from gantrain.errors import UserError
from gantrain.registry import unknown_choice

ON_DEVICE_CHOICES = ("auto", "true", "false")
ACCELERATORS = ("cuda", "mps")  # where on_device=auto keeps tensor data
FLIP_STREAM = 1  # the flips' generator stream; 0 orders the epoch


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
        self.rank, self.world_size = int(rank), int(world_size)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise UserError(f"rank {self.rank} is not one of world_size={self.world_size} ranks")
        if self.batch_size % self.world_size:
            raise UserError(f"trainer.batch_size={self.batch_size} (the global batch) is not divisible by "
                            f"world_size={self.world_size}")
        if len(dataset) < self.batch_size and drop_last:
            raise UserError(
                f"the dataset has {len(dataset)} samples, fewer than trainer.batch_size={self.batch_size}"
            )
        self.epoch = 0
        self.batches_taken = 0  # in the current epoch
        self._iterator: Any = None

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
        on_device = data_cfg.get("on_device", "auto")
        if keeps_on_device(on_device, device):
            if isinstance(source.dataset, TensorSamples):
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

    @property
    def _index_device(self) -> torch.device:
        """Where indices must lie: with the tensor storage, or on the CPU for a DataLoader."""
        return self.dataset.device if isinstance(self.dataset, TensorSamples) else torch.device("cpu")

    def epoch_batches(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """This rank's (indices, flips or None) for each batch of one epoch, identical every time it is asked for."""
        size = len(self.dataset)
        order = torch.randperm(size, generator=epoch_generator(self.seed, epoch)).to(self._index_device)
        batches = order.split(self.batch_size)
        flips: tuple[torch.Tensor | None, ...] = (None,) * len(batches)
        if self.hflip:
            coins = torch.rand(size, generator=epoch_generator(self.seed, epoch, FLIP_STREAM)) < 0.5
            flips = coins.to(self.device).split(self.batch_size)
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches, flips = batches[:-1], flips[:-1]
        return [(self._my_slice(indices), None if flip is None else self._my_slice(flip))
                for indices, flip in zip(batches, flips)]

    def _my_slice(self, global_batch: torch.Tensor) -> torch.Tensor:
        return global_batch if self.world_size == 1 else global_batch.tensor_split(self.world_size)[self.rank]

    def _start_epoch(self) -> None:
        remaining = self.epoch_batches(self.epoch)[self.batches_taken:]
        flips = [flip for _, flip in remaining]
        if hasattr(self.dataset, "get_batch"):
            batches: Any = (self.dataset.get_batch(indices) for indices, _ in remaining)
        else:
            batches = DataLoader(self.dataset, batch_sampler=[indices.tolist() for indices, _ in remaining],
                                 num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                                 persistent_workers=False)
        self._iterator = zip(batches, flips)

    def next(self) -> dict[str, torch.Tensor]:
        if self._iterator is None:
            self._start_epoch()
        try:
            batch, flips = next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self.batches_taken = 0
            self._start_epoch()
            batch, flips = next(self._iterator)
        self.batches_taken += 1
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if flips is not None:
            batch["real"] = mirror(batch["real"], flips)
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_taken": self.batches_taken}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.batches_taken = int(state["batches_taken"])
        self._iterator = None
