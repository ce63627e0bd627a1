"""Mode coverage on the 2-D Gaussian-mixture toy data (8gaussians, 25gaussians).

The standard mode-collapse check (Metz et al. 2017; Srivastava et al. 2017; Lin et al. 2018): each
sample goes to its nearest mode and is "high quality" if within ``stds`` standard deviations of it.
Reported: ``coverage``, the number of modes covered (a mode is covered when it receives at least
``min_share`` × n/K high-quality samples: 20 of 2500 for 25 modes, PacGAN's rule), ``high_quality``,
the share of high-quality samples, and ``mode_kl``, the KL divergence of the histogram of nearest modes
from the uniform one (0: every mode equally used; log K: one mode only).
"""

from __future__ import annotations

import torch

from gantrain.data.toy2d import MIXTURE_MODES, mixture_modes
from gantrain.errors import UserError
from gantrain.metrics.base import GeneratedBatch, Metric, Reference
from gantrain.options import positive_number
from gantrain.registry import METRICS


def mode_statistics(points: torch.Tensor, centres: torch.Tensor, std: float, stds: float = 3.0,
                    min_share: float = 0.2) -> dict[str, float]:
    """Modes covered, share of high-quality samples and KL(mode histogram ‖ uniform) of 2-D ``points``."""
    distances = torch.cdist(points.float(), centres.float())
    nearest_distance, nearest = distances.min(dim=1)
    high_quality = nearest_distance <= stds * std
    modes = len(centres)
    counts = torch.bincount(nearest, minlength=modes).double()
    good_counts = torch.bincount(nearest[high_quality], minlength=modes).double()
    covered = int((good_counts >= min_share * len(points) / modes).sum())
    share = counts / counts.sum()
    used = share > 0
    kl = float((share[used] * (share[used] * modes).log()).sum())
    return {"coverage": float(covered), "high_quality": float(high_quality.double().mean()), "mode_kl": kl}


@METRICS.register("coverage")
class ModeCoverage(Metric):
    outputs = {"coverage": True, "high_quality": True, "mode_kl": False}
    uses_features = False

    def __init__(self, data_name: str, stds: float = 3.0, min_share: float = 0.2) -> None:
        modes = mixture_modes(str(data_name))
        if modes is None:
            raise UserError(f"the coverage metric needs a Gaussian-mixture toy dataset (data=toy2d data.name="
                            f"{' or '.join(MIXTURE_MODES)}), not '{data_name}'")
        self.centres, self.std = modes
        self.stds = positive_number(stds, "metrics.coverage.stds")
        self.min_share = positive_number(min_share, "metrics.coverage.min_share")
        self._points: list[torch.Tensor] = []

    def start(self) -> None:
        self._points = []

    def update(self, batch: GeneratedBatch) -> None:
        self._points.append(batch.samples.detach().cpu())

    def compute(self, reference: Reference) -> dict[str, float]:
        del reference  # the modes are known exactly
        return mode_statistics(torch.cat(self._points), self.centres, self.std, self.stds, self.min_share)
