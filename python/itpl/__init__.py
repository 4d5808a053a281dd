"""itpl: on-device, latency-aware CNN pruning with nHSIC layer importance.

The method is ITPruner (Zheng et al., IJCV; arXiv 2108.08532). The public API
grows with the pipeline; see the README for what is available.
"""

import importlib

from itpl._memory import keep_freed_memory

# Before torch allocates anything: freed tensors stay in the process instead of
# being unmapped and faulted back every step (itpl._memory; ITPL_KEEP_MEMORY=0:
# off). ctypes only: nothing heavy, so Ctrl-C stays honoured right after start.
keep_freed_memory()

def __getattr__(name):
    # Heavy or slow attributes on first use (``hsic``: NumPy and the C++ core;
    # ``__version__``: importlib.metadata, 0.3 s on a loaded machine), so that
    # ``python -m itpl`` reaches the CLI's Ctrl-C handler right after starting.
    if name == "hsic":
        return importlib.import_module("itpl.hsic")
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("itpl")
        except PackageNotFoundError:  # running from a source tree without an install
            return "0+unknown"
    raise AttributeError(f"module 'itpl' has no attribute '{name}'")


def load(plan, weights=None):
    """Rebuild a pruned model from its plan (and weights); see :func:`itpl.plan.load`."""
    from itpl.plan import load as _load

    return _load(plan, weights)


__all__ = ["__version__", "hsic", "load"]
