"""The history of generated images a CycleGAN discriminator is trained on (Shrivastava et al. 2017).

Showing the discriminator older generated images beside new ones damps the oscillation of the two
players. Until the pool is full every image goes in and comes back out; afterwards each new image is,
with probability one half, swapped for a random stored one (which the discriminator sees instead),
or passed through. Its contents are part of the checkpoint, so a resumed run sees the same history.
"""

from __future__ import annotations

import torch

from gantrain.options import non_negative_int


class ImagePool:
    def __init__(self, size: int) -> None:
        self.size = non_negative_int(size, "model.pool_size (0: no pool)")
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """The images the discriminator sees for this batch of generated ``images`` (detached).

        The coin flips come from torch's global generator, whose state every checkpoint keeps.
        """
        images = images.detach()
        if self.size == 0:
            return images
        shown = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                shown.append(image)
            elif float(torch.rand(())) < 0.5:
                slot = int(torch.randint(len(self.images), ()))
                shown.append(self.images[slot])
                self.images[slot] = image.clone()
            else:
                shown.append(image)
        return torch.stack(shown)

    def state_dict(self) -> dict[str, torch.Tensor]:
        stored = torch.stack(self.images).cpu() if self.images else torch.empty(0)
        return {"images": stored}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device) -> None:
        stored = state.get("images", torch.empty(0))
        self.images = [image.to(device) for image in stored] if stored.numel() else []
