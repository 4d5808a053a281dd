"""ITPruner's method: importance from nHSIC, and widths under a budget.

``hsic`` is the Python face of the C++ core (centred Grams, the nHSIC matrix);
``importance`` runs the calibration batch and applies Eq. 9; ``beta`` chooses
how strongly importance tilts the widths; ``widths`` is the set of widths a
group may take; ``solve`` allocates widths under a quadratic budget and
``rounding`` makes them exact. Imports :mod:`itpl.model` and :mod:`itpl.train`.
"""

# The solver's options, here so that a config can check them without NumPy.
OBJECTIVES = ("linear", "log")
ROUNDINGS = ("exact", "greedy")
