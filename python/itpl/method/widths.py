"""The set of widths a channel group may take: multiples of a step, never under a
minimum ratio, and the full width. One object (:class:`AllowedWidths`) instead of
``alpha_min`` and ``round_to`` passed side by side through the solver."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Integral

# Widths are multiples of this when nothing better is known: a common SIMD width.
DEFAULT_STEP = 8


def allowed_widths(full: int, alpha_min: float, round_to: int) -> list[int]:
    """Widths a group may take: multiples of ``round_to`` from the minimum up, and ``full``.

    The minimum is ``alpha_min * full`` rounded up to a multiple, and never 0.
    """
    if full <= round_to:
        return [full]
    low = max(round_to, math.ceil(alpha_min * full / round_to) * round_to)
    return sorted({*range(low, full + 1, round_to), full})


@dataclass(frozen=True)
class AllowedWidths:
    """Which widths the solver may give a group.

    Parameters
    ----------
    alpha_min : float
        Smallest width ratio of any group, in (0, 1]. Groups always keep at
        least one step of channels (or all of them when narrower).
    round_to : int, optional
        Widths are multiples of this (or the full width). ``None``: the
        device's channel tile for latency budgets (from the profile), else
        :data:`DEFAULT_STEP`.
    """

    alpha_min: float = 0.1
    round_to: int | None = None

    def __post_init__(self):
        if not (isinstance(self.alpha_min, (int, float)) and 0 < self.alpha_min <= 1):
            raise ValueError(f"`alpha_min` must be in (0, 1], got {self.alpha_min}")
        if self.round_to is not None and (not isinstance(self.round_to, Integral)
                                          or isinstance(self.round_to, bool) or self.round_to < 1):
            raise ValueError(f"`round_to` must be a positive integer, got {self.round_to}")

    @property
    def step(self) -> int:
        """``round_to``, or :data:`DEFAULT_STEP` where it is unset."""
        return int(self.round_to or DEFAULT_STEP)

    def with_default_step(self, step: int | None) -> AllowedWidths:
        """This set with ``round_to`` filled in by ``step`` where it is unset."""
        return self if self.round_to or not step else replace(self, round_to=int(step))

    def options(self, full: int) -> list[int]:
        """The widths a group of ``full`` channels may take, ascending."""
        return allowed_widths(full, self.alpha_min, self.step)

    def lowest(self, full: list[int]) -> list[int]:
        """The smallest allowed width of each group."""
        return [self.options(c)[0] for c in full]

    def minimum_cost(self, cost, full: list[int]) -> float:
        """``cost`` with every group at its smallest allowed width (costs grow with width)."""
        import numpy as np  # here: the CLI reads this module before anything heavy

        return cost(np.asarray(self.lowest(full), dtype=np.float64) / np.asarray(full, np.float64))

    def check_feasible(self, cost, budget: float, full: list[int]) -> None:
        """Raise a ValueError naming the smallest achievable cost when ``budget`` is below it."""
        floor = self.minimum_cost(cost, full)
        if budget < floor:
            raise ValueError(
                f"budget {budget:.6g} {cost.unit} is infeasible: the smallest achievable "
                f"{cost.kind} is {floor:.6g} {cost.unit} (alpha_min={self.alpha_min}, "
                f"round_to={self.step}); raise the budget or lower `alpha_min`")
