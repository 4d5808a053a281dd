"""itpl: on-device, latency-aware CNN pruning with nHSIC layer importance.

The method is ITPruner (Zheng et al., IJCV; arXiv 2108.08532). The public API
grows with the pipeline; see the README for what is available.
"""

from importlib.metadata import PackageNotFoundError, version

from itpl import hsic

try:
    __version__ = version("itpl")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"



def load(plan, weights=None):
    """Rebuild a pruned model from its plan (and weights); see :func:`itpl.plan.load`."""
    from itpl.plan import load as _load

    return _load(plan, weights)


__all__ = ["__version__", "hsic", "load"]
