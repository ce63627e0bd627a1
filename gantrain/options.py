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


def positive_int(value: object, what: str) -> int:
    """``value`` if it is an integer of at least 1 (not a bool), else a one-line error naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{what} must be a positive integer, got {value!r}")
    return value


def non_negative_int(value: object, what: str) -> int:
    """``value`` if it is an integer of at least 0 (not a bool), else a one-line error naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def positive_number(value: object, what: str) -> float:
    """``value`` as a float if it is a number above 0 (not a bool), else a one-line error naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise UserError(f"{what} must be a positive number, got {value!r}")
    return float(value)
