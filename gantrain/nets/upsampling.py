"""How super-resolution generators reach their scale: x2 steps, or one x3 step."""

from __future__ import annotations

from gantrain.errors import UserError

SCALES = (2, 3, 4, 8)


def upsampling_steps(scale: int, network: str) -> list[int]:
    """The factors of the upsampling stages: x4 = x2 x2, x3 = x3, x8 = x2 x2 x2."""
    if scale not in SCALES:
        raise UserError(f"{network} upscales by {', '.join(map(str, SCALES))}, not {scale}; set data.scale")
    return [3] if scale == 3 else [2] * {2: 1, 4: 2, 8: 3}[scale]
