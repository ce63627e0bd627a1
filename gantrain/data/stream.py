"""An endless, resumable stream of batches over epochs.

The order of each epoch is a permutation drawn from its own generator seeded by
(seed, epoch), independent of every other random number; so the position in the
data is just (epoch, batches taken), and resuming replays nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from gantrain.errors import UserError


class BatchStream:
    """Yields batch dicts on ``device``; ``state_dict`` records the exact position."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, device: torch.device,
                 num_workers: int = 0, drop_last: bool = True) -> None:
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = device
        self.num_workers = int(num_workers)
        self.drop_last = drop_last
        if len(dataset) < self.batch_size and drop_last:
            raise UserError(
                f"the dataset has {len(dataset)} samples, fewer than trainer.batch_size={self.batch_size}"
            )
        self.epoch = 0
        self.batches_taken = 0  # in the current epoch
        self._iterator: Any = None

    @property
    def batches_per_epoch(self) -> int:
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """The index batches of one epoch, identical every time it is asked for."""
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        batches = list(order.split(self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def _start_epoch(self) -> None:
        remaining = self.epoch_batches(self.epoch)[self.batches_taken:]
        if hasattr(self.dataset, "get_batch"):
            self._iterator = (self.dataset.get_batch(indices) for indices in remaining)
        else:
            loader = DataLoader(self.dataset, batch_sampler=[b.tolist() for b in remaining],
                                num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                                persistent_workers=False)
            self._iterator = iter(loader)

    def next(self) -> dict[str, torch.Tensor]:
        if self._iterator is None:
            self._start_epoch()
        try:
            batch = next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self.batches_taken = 0
            self._start_epoch()
            batch = next(self._iterator)
        self.batches_taken += 1
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_taken": self.batches_taken}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.batches_taken = int(state["batches_taken"])
        self._iterator = None
