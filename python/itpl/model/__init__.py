"""The network being pruned: its channel graph, the cost of its widths, and
channel surgery.

``graph`` describes a model once (prunable groups, coupled layers, capture
points); ``coupling`` finds which layers must share a width; ``cost`` is the
quadratic form of FLOPs and params over group widths; ``surgery`` cuts
channels; ``plan`` is a pruning plan as JSON; ``source`` names where a model
comes from (a built-in name or ``package.module:factory``), and ``zoo`` holds
the built-in models. Imports only :mod:`itpl.util`.
"""

# Channel selection criteria of the surgery, here so that a config can check
# them without torch.
CRITERIA = ("l1", "fpgm")
