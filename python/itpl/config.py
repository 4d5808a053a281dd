"""How :func:`itpl.prune` prunes: one keyword-only dataclass instead of twenty
arguments. ``itpl prune`` builds one from its flags. Imports nothing heavy."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from itpl.method import OBJECTIVES, ROUNDINGS
from itpl.method.widths import AllowedWidths
from itpl.model import CRITERIA


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    """Settings of a pruning run; every field has the CLI's default.

    Parameters
    ----------
    samples : int
        Calibration images used for importance (drawn from ``data`` with
        ``seed``; random inputs of this many when there is no data).
    seed : int
        Seed of the sample draw and of random calibration inputs.
    debiased : bool
        Debiased HSIC estimator instead of the biased one.
    beta : float, optional
        Eq. 9's beta on the raw nHSIC sums. Default: ``1 / (max - min)`` of
        the sums, then checked at ``beta_scales`` times that value.
    beta_scales : tuple of float, optional
        With the ``log`` objective and no ``beta``: multiples of the default
        beta to try, keeping the one whose pruned model's outputs stay closest
        to the unpruned model's (default ``(1, 0.5, 2)``; one value turns the
        check off).
    widths : AllowedWidths
        Which widths a group may take (smallest ratio, step).
    objective : {"log", "linear"}
        ``log``: uniform scaling tilted by mean importance (default);
        ``linear``: the paper's Eq. 11 over summed importance.
    rounding : {"greedy", "exact"}
        How continuous widths become allowed ones (see :func:`itpl.method.solve.solve`).
    criterion : {"l1", "fpgm"}
        Which channels a group keeps.
    threads : int, optional
        Threads of the nHSIC core (default: all cores).
    refine : bool
        Latency budgets with a device: time the solver's candidates there and
        correct the goal until the measured latency meets the budget. False
        trusts the profile's prediction.
    preset : str, optional
        Image resizing and normalisation (``imagenet`` or ``cifar``) when
        ``data`` is an image folder; default the model's, else ``imagenet``.
    progress : bool
        Progress bars and progress messages (logger ``itpl``).
    """

    samples: int = 256
    seed: int = 0
    debiased: bool = False
    beta: float | None = None
    beta_scales: tuple[float, ...] | None = None
    widths: AllowedWidths = field(default_factory=AllowedWidths)
    objective: str = "log"
    rounding: str = "greedy"
    criterion: str = "l1"
    threads: int | None = None
    refine: bool = True
    preset: str | None = None
    progress: bool = False

    def __post_init__(self):
        for name, value, choices in (("objective", self.objective, OBJECTIVES),
                                     ("rounding", self.rounding, ROUNDINGS),
                                     ("criterion", self.criterion, CRITERIA)):
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {', '.join(choices)}, got {value!r}")
        if not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"`samples` must be at least 1, got {self.samples}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"`threads` must be at least 1, got {self.threads}")
        if self.beta is not None and not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"`beta` must be a number >= 0, got {self.beta}")
        if self.beta_scales is not None:
            scales = tuple(float(s) for s in self.beta_scales)
            if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
                raise ValueError(f"`beta_scales` must be positive numbers, got {self.beta_scales}")
            object.__setattr__(self, "beta_scales", scales)
        if not isinstance(self.widths, AllowedWidths):
            raise ValueError("`widths` must be an AllowedWidths, e.g. "
                             "AllowedWidths(alpha_min=0.1, round_to=8)")

    def to_dict(self) -> dict:
        return asdict(self)


class ItplWarning(UserWarning):
    """A warning about how itpl was called (e.g. pruning without calibration data)."""
