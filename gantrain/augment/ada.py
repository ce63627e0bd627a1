"""ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data").

Every augmentation of the pipeline is applied to each image with probability p (times its own
multiplier, 1 for the ones a pipeline includes). The geometric ones are composed into one affine
transform per image and executed as ONE bilinear resampling (``torch.nn.functional.grid_sample``,
``padding_mode="reflection"``); the colour ones into one 4x4 matrix on (R, G, B, 1). Ranges are the
official code's (NVlabs/stylegan2-ada-pytorch, training/augment.py). Unlike it, the resampling is not
done at twice the resolution through a wavelet low-pass filter, so strong rotations and scalings alias a
little more; everything stays differentiable.

p is adapted (unless ``augment.p`` fixes it): r_t = E[sign(D(real) - boundary)] (the loss's decision
boundary: 0 for logits, midway between LSGAN's targets, the generated samples' mean score for a Wasserstein
critic) over the discriminator's scores on
reals since the last adjustment, and every ``interval`` training steps p moves by
sign(r_t - target) x (real images scored) / (speed_kimg x 1000), clamped to [0, 1]: at full speed,
p goes from 0 to 1 in ``speed_kimg`` thousand images. r_t near 1 means D is sure of every real: it
overfits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from gantrain.augment.base import Augmentation, per_sample
from gantrain.engine.distributed import current_world
from gantrain.errors import UserError
from gantrain.options import as_float, positive_int
from gantrain.registry import AUGMENTATIONS, unknown_choice

#: The official pipelines this one implements (train.py's augpipe_specs): which augmentations each includes.
BLIT = ("xflip", "rotate90", "xint")
GEOM = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
PIPELINES = {"blit": BLIT, "geom": GEOM, "color": COLOR, "bg": BLIT + GEOM, "bgc": BLIT + GEOM + COLOR}

# The official defaults of each augmentation's range
XINT_MAX = 0.125  # integer translation: up to 1/8 of the size
SCALE_STD = 0.2  # isotropic scaling: log2 standard deviation
ROTATE_MAX = 1.0  # arbitrary rotation: up to a full circle
ANISO_STD = 0.2  # anisotropic scaling: log2 standard deviation
XFRAC_STD = 0.125  # fractional translation: standard deviation, relative to the size
BRIGHTNESS_STD = 0.2  # brightness: standard deviation of the offset
CONTRAST_STD = 0.5  # contrast: log2 standard deviation
HUE_MAX = 1.0  # hue rotation: up to a full circle
SATURATION_STD = 1.0  # saturation: log2 standard deviation
LUMA = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)  # the luma axis in homogeneous RGB


def affine(rows: Sequence[Sequence[Any]], like: torch.Tensor) -> torch.Tensor:
    """(n, k, k) matrices from rows of per-sample tensors (n,) and constants."""
    n = like.shape[0]
    return torch.stack([torch.stack([e if torch.is_tensor(e) else like.new_full((n,), float(e)) for e in row], -1)
                        for row in rows], -2)


def translate2d(tx: Any, ty: Any, like: torch.Tensor) -> torch.Tensor:
    return affine([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def scale2d(sx: Any, sy: Any, like: torch.Tensor) -> torch.Tensor:
    return affine([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    return affine([[theta.cos(), -theta.sin(), 0], [theta.sin(), theta.cos(), 0], [0, 0, 1]], theta)


def rotate3d(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotation by theta (n,) about a unit axis (3,), homogeneous 4x4 (Rodrigues)."""
    x, y, z = (float(v) for v in axis[:3])
    s, c = theta.sin(), theta.cos()
    cc = 1 - c
    return affine([[x * x * cc + c, x * y * cc - z * s, x * z * cc + y * s, 0],
                   [y * x * cc + z * s, y * y * cc + c, y * z * cc - x * s, 0],
                   [z * x * cc - y * s, z * y * cc + x * s, z * z * cc + c, 0],
                   [0, 0, 0, 1]], theta)


@AUGMENTATIONS.register("ada")
class AdaptiveAugment(Augmentation):
    """The ADA pipeline with its probability p, adapted from the discriminator's signs on reals."""

    changes_images = True

    def __init__(self, p: float | None = None, target: float = 0.6, interval: int = 4, speed_kimg: float = 500,
                 pipeline: str = "bgc") -> None:
        super().__init__()
        if pipeline not in PIPELINES:
            raise UserError(unknown_choice("ADA pipeline (augment.pipeline)", pipeline, list(PIPELINES)))
        self.included = set(PIPELINES[pipeline])
        self.adaptive = p is None
        self.p = 0.0 if p is None else as_float("augment.p", p, minimum=0)
        if self.p > 1:
            raise UserError(f"augment.p is a probability: 0..1 (or null to adapt it), got {self.p:g}")
        self.target = as_float("augment.target", target, minimum=0, strictly_above=True)
        if self.target >= 1:
            raise UserError(f"augment.target is the r_t that p steers to: above 0 and below 1, got {self.target:g}")
        self.interval = positive_int(interval, "augment.interval")
        self.speed_images = as_float("augment.speed_kimg", speed_kimg, minimum=0, strictly_above=True) * 1000
        self.steps = 0  # training steps taken (adjustments fall on multiples of interval)
        self.signs = torch.zeros(2, dtype=torch.float64)  # sum of sign(D(real)), how many scores, since the last adjustment
        self.images = 0  # real images scored since the last adjustment (this process)
        self.rt: float | None = None  # the last r_t measured

    # --- the transform --------------------------------------------------------------------------------

    def chance(self, name: str, n: int, like: torch.Tensor, probability: float | None = None) -> torch.Tensor:
        """(n,) booleans: which images get augmentation ``name`` (always drawn, so the draws do not depend on p)."""
        draw = per_sample(torch.rand, n, like=like)
        return draw < (self.p if probability is None else probability) * (name in self.included)

    def geometry(self, images: torch.Tensor) -> torch.Tensor:
        """The inverse transform (output pixel -> input pixel) of each image, in pixels about its centre."""
        n, _, h, w = images.shape
        like = images.new_zeros(n, dtype=torch.float32)
        one, zero = like + 1, like
        inverse = torch.eye(3, device=images.device).expand(n, 3, 3)

        flip = (per_sample(torch.rand, n, like=like) * 2).floor()
        flip = torch.where(self.chance("xflip", n, like), flip, zero)
        inverse = inverse @ scale2d(1 - 2 * flip, one, like)
        quarter = (per_sample(torch.rand, n, like=like) * 4).floor()
        quarter = torch.where(self.chance("rotate90", n, like), quarter, zero)
        inverse = inverse @ rotate2d(-(-math.pi / 2 * quarter))  # rotate2d_inv(-pi/2 i)
        shift = (per_sample(torch.rand, n, 2, like=like) * 2 - 1) * XINT_MAX
        shift = torch.where(self.chance("xint", n, like)[:, None], shift, zero[:, None])
        inverse = inverse @ translate2d(-(shift[:, 0] * w).round(), -(shift[:, 1] * h).round(), like)

        scale = torch.exp2(per_sample(torch.randn, n, like=like) * SCALE_STD)
        scale = torch.where(self.chance("scale", n, like), scale, one)
        inverse = inverse @ scale2d(1 / scale, 1 / scale, like)
        rotate_p = 1 - math.sqrt(min(max(1 - self.p * ("rotate" in self.included), 0.0), 1.0))  # P(pre or post) = p
        for rotation in range(2):  # before and after the anisotropic scaling
            theta = (per_sample(torch.rand, n, like=like) * 2 - 1) * math.pi * ROTATE_MAX
            theta = torch.where(self.chance("rotate", n, like, rotate_p), theta, zero)
            inverse = inverse @ rotate2d(theta)  # rotate2d_inv(-theta)
            if rotation == 0:
                aniso = torch.exp2(per_sample(torch.randn, n, like=like) * ANISO_STD)
                aniso = torch.where(self.chance("aniso", n, like), aniso, one)
                inverse = inverse @ scale2d(1 / aniso, aniso, like)
        fraction = per_sample(torch.randn, n, 2, like=like) * XFRAC_STD
        fraction = torch.where(self.chance("xfrac", n, like)[:, None], fraction, zero[:, None])
        return inverse @ translate2d(-fraction[:, 0] * w, -fraction[:, 1] * h, like)

    def colour(self, like: torch.Tensor) -> torch.Tensor:
        """Each image's 4x4 colour matrix on homogeneous (R, G, B, 1)."""
        n = like.shape[0]
        like = like.new_zeros(n, dtype=torch.float32)
        one, zero = like + 1, like
        eye = torch.eye(4, device=like.device)
        matrix = eye.expand(n, 4, 4)
        brightness = per_sample(torch.randn, n, like=like) * BRIGHTNESS_STD
        brightness = torch.where(self.chance("brightness", n, like), brightness, zero)
        matrix = affine([[1, 0, 0, brightness], [0, 1, 0, brightness], [0, 0, 1, brightness], [0, 0, 0, 1]],
                        like) @ matrix
        contrast = torch.exp2(per_sample(torch.randn, n, like=like) * CONTRAST_STD)
        contrast = torch.where(self.chance("contrast", n, like), contrast, one)
        matrix = affine([[contrast, 0, 0, 0], [0, contrast, 0, 0], [0, 0, contrast, 0], [0, 0, 0, 1]],
                        like) @ matrix
        luma = LUMA.to(like.device)
        along = torch.outer(luma, luma)
        flip = (per_sample(torch.rand, n, like=like) * 2).floor()
        flip = torch.where(self.chance("lumaflip", n, like), flip, zero)
        matrix = (eye - 2 * along * flip[:, None, None]) @ matrix  # Householder reflection through the luma axis
        hue = (per_sample(torch.rand, n, like=like) * 2 - 1) * math.pi * HUE_MAX
        hue = torch.where(self.chance("hue", n, like), hue, zero)
        matrix = rotate3d(luma, hue) @ matrix
        saturation = torch.exp2(per_sample(torch.randn, n, like=like) * SATURATION_STD)
        saturation = torch.where(self.chance("saturation", n, like), saturation, one)
        return (along + (eye - along) * saturation[:, None, None]) @ matrix

    def transform(self, images: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
        if self.p == 0:
            return images  # exactly the identity (and no random numbers drawn)
        n, _, h, w = images.shape
        if self.included & set(BLIT + GEOM):
            # pixels about the centre -> grid_sample's coordinates (-1..1 across the image, align_corners=False)
            like = images.new_zeros(n, dtype=torch.float32)
            inverse = scale2d(2 / w, 2 / h, like) @ self.geometry(images) @ scale2d(w / 2, h / 2, like)
            grid = F.affine_grid(inverse[:, :2, :].to(images.dtype), list(images.shape), align_corners=False)
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if self.included & set(COLOR):
            matrix = self.colour(images).to(images.dtype)
            images = torch.cat([self.recolour(part, matrix) for part in images.split(list(groups), 1)], 1)
        return images

    @staticmethod
    def recolour(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        n, c, h, w = images.shape
        flat = images.reshape(n, c, h * w)
        if c == 3:
            return (matrix[:, :3, :3] @ flat + matrix[:, :3, 3:]).reshape(n, c, h, w)
        if c == 1:  # greyscale: the matrix's mean row acting on (L, L, L, 1)
            row = matrix[:, :3, :].mean(dim=1, keepdim=True)
            return (flat * row[:, :, :3].sum(dim=2, keepdim=True) + row[:, :, 3:]).reshape(n, c, h, w)
        raise UserError(f"ADA's colour augmentations need RGB or greyscale images, got {c} channels; "
                        "use augment.pipeline=bg (geometric only)")

    # --- adapting p ----------------------------------------------------------------------------------

    def observe(self, real_scores: torch.Tensor, boundary: float | torch.Tensor = 0.0) -> None:
        scores = real_scores.detach() - boundary
        self.signs = self.signs.to(scores.device) + torch.stack(
            [scores.sign().sum().double(), scores.new_tensor(scores.numel(), dtype=torch.float64)])
        self.images += int(scores.shape[0])

    def end_step(self) -> None:
        self.steps += 1
        if self.steps % self.interval or not self.images:
            return
        totals = torch.cat([self.signs, self.signs.new_tensor([float(self.images)])])
        world = current_world()
        world.average_([totals])  # every rank's signs and images: the same r_t and p everywhere
        self.rt = float(totals[0] / totals[1])
        if self.adaptive:
            images = float(totals[2]) * world.size
            direction = (self.rt > self.target) - (self.rt < self.target)
            self.p = min(max(self.p + direction * images / self.speed_images, 0.0), 1.0)
        self.signs = torch.zeros_like(self.signs)
        self.images = 0

    def scalars(self) -> dict[str, float]:
        return {"augment/p": self.p, **({"augment/rt": self.rt} if self.rt is not None else {})}

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "steps": self.steps, "signs": self.signs.cpu(), "images": self.images, "rt": self.rt}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """p and the adjustment's running statistics; a fixed p (augment.p) stays what the config says."""
        if not state:
            return
        if self.adaptive:
            self.p = float(state["p"])
        self.steps, self.images = int(state["steps"]), int(state["images"])
        self.signs = state["signs"].clone().double()
        self.rt = None if state["rt"] is None else float(state["rt"])
