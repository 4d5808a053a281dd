"""Resource budgets: :class:`Flops`, :class:`Params` and :class:`Latency`, each an
absolute amount or a ratio of the unpruned model's cost.

Checked when made, so a bad budget fails before any model is built. Imports
nothing heavy: the CLI makes one while parsing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_amount(text) -> float:
    """``"283M"`` -> 283e6; a number, or text with a k, M or G suffix (any case)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower()
        suffix = s[-1] if s and s[-1] in _SUFFIX else ""
        try:
            value = float(s[: len(s) - len(suffix)]) * _SUFFIX[suffix]
        except ValueError:
            raise ValueError(f"cannot read '{text}' as an amount; write e.g. 283M, 2.5M or "
                             "1G") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"budget '{text}' must be a positive number")
    return value


@dataclass(frozen=True)
class Budget:
    """A budget of one resource ``kind``: an absolute ``value`` or a ``ratio`` of
    the unpruned cost (exactly one of them)."""

    value: float | None = None
    ratio: float | None = None
    kind: ClassVar[str] = ""
    unit: ClassVar[str] = ""  # how an absolute value is given

    def __post_init__(self):
        if not self.kind:
            raise TypeError("use Flops, Params or Latency, not Budget itself")
        if (self.value is None) == (self.ratio is None):
            raise ValueError(f"give the {self.kind} budget as a value or as a ratio, "
                             "exactly one of them")
        if self.value is not None:
            object.__setattr__(self, "value", parse_amount(self.value))
        elif not (isinstance(self.ratio, (int, float)) and math.isfinite(self.ratio)
                  and self.ratio > 0):
            raise ValueError(f"budget ratio must be a positive number, got {self.ratio}")

    @property
    def set_as(self) -> str:
        """How the budget was given: ``ratio`` or the unit of an absolute value."""
        return "ratio" if self.ratio is not None else self.unit

    def __repr__(self) -> str:
        given = f"ratio={self.ratio}" if self.ratio is not None else f"{self.value:g}"
        return f"{type(self).__name__}({given})"

    def resolve(self, full: float) -> float:
        """The budget in the cost's unit, ``full`` being the unpruned cost."""
        return self.ratio * full if self.ratio is not None else float(self.value)


@dataclass(frozen=True, repr=False)
class Flops(Budget):
    """Multiply-accumulates of convs and linear layers (the paper's convention).

    ``Flops(283e6)``, ``Flops("283M")`` or ``Flops(ratio=0.5)``.
    """

    kind: ClassVar[str] = "flops"
    unit: ClassVar[str] = "MACs"


@dataclass(frozen=True, repr=False)
class Params(Budget):
    """Parameters: ``Params(2e6)``, ``Params("2M")`` or ``Params(ratio=0.3)``."""

    kind: ClassVar[str] = "params"
    unit: ClassVar[str] = "params"


@dataclass(frozen=True, init=False, repr=False)
class Latency(Budget):
    """Latency on a profiled device: ``Latency(ms=15)`` or ``Latency(ratio=0.54)``, a
    ratio of the unpruned model's measured latency. Needs a device profile or a
    device to profile (see :func:`itpl.prune`)."""

    kind: ClassVar[str] = "latency"
    unit: ClassVar[str] = "ms"

    def __init__(self, ms: float | None = None, *, ratio: float | None = None):
        object.__setattr__(self, "value", ms)
        object.__setattr__(self, "ratio", ratio)
        self.__post_init__()

    @property
    def ms(self) -> float | None:
        """The budget in milliseconds, when given so."""
        return self.value

    def __repr__(self) -> str:
        return f"Latency({f'ratio={self.ratio}' if self.ratio is not None else f'ms={self.ms:g}'})"


KINDS = {b.kind: b for b in (Flops, Params, Latency)}


def budget_of(kind: str, value=None, ratio=None) -> Budget:
    """The budget of ``kind`` (``flops``, ``params`` or ``latency``)."""
    if kind not in KINDS:
        raise ValueError(f"budget kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return KINDS[kind](value, ratio=ratio)
