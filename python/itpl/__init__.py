"""itpl: on-device, latency-aware CNN pruning with nHSIC layer importance.

The method is ITPruner (Zheng et al., IJCV; arXiv 2108.08532). The public API
grows with the pipeline; see the README for what is available.
"""

from importlib.metadata import PackageNotFoundError, version

from itpl._memory import keep_freed_memory

# Before torch allocates anything: freed tensors stay in the process instead of
# being unmapped and faulted back every step (itpl._memory; ITPL_KEEP_MEMORY=0: off).
keep_freed_memory()

from itpl import hsic  # noqa: E402

try:
    __version__ = version("itpl")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"



def load(plan, weights=None):
    """Rebuild a pruned model from its plan (and weights); see :func:`itpl.plan.load`."""
    from itpl.plan import load as _load

    return _load(plan, weights)


__all__ = ["__version__", "hsic", "load"]
