"""A table cell of the report: how a metric or a swept value prints."""

from __future__ import annotations


def cell(value: object) -> str:
    """A table cell: metrics to 4 decimals, long swept numbers (Optuna's) to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    text = str(value)
    if len(text) > 8 and numbers([text]):
        return f"{float(text):.4g}"
    return text


def numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None
