"""Checking numeric options from configs, so a bad value is a one-line user error, not a traceback."""

from __future__ import annotations

from gantrain.errors import UserError


def as_float(option: str, value: object, minimum: float | None = None, strictly_above: bool = False) -> float:
    """``value`` as a float; ``minimum`` bounds it (inclusive, or exclusive with ``strictly_above``)."""
    if isinstance(value, bool):
        raise UserError(f"option '{option}' must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"option '{option}' must be a number, got {value!r}") from None
    if minimum is not None and (number < minimum or (strictly_above and number == minimum)):
        bound = f"above {minimum:g}" if strictly_above else f"at least {minimum:g}"
        raise UserError(f"option '{option}' must be {bound}, got {number:g}")
    return number
