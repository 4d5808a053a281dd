"""itpl: on-device, latency-aware CNN pruning with nHSIC layer importance.

The method is ITPruner (Zheng et al., IJCV; arXiv 2108.08532). The public API
is what ``__all__`` lists; every other module is an implementation detail.

Pruning
-------
prune         prune an ``nn.Module`` (or a named model) to a budget -> PruneResult
PruneResult   ``.model`` (pruned), ``.plan``, ``.save(prefix)``
PruneConfig   how to prune (one keyword-only dataclass)
AllowedWidths which widths a group may take (smallest ratio, step)
Flops, Params, Latency   budgets: ``Flops(283e6)``, ``Flops(ratio=0.5)``,
              ``Latency(ms=15)``, ``Latency(ratio=0.54)``
load          rebuild a pruned model from its plan and weights

Devices
-------
profile       measure a model's latency model on a device -> Profile
convert       PyTorch -> .tflite in memory, checked against PyTorch -> TFLiteModel
bench         batch latency table beside a reference model -> BenchResult

Also ``hsic`` (the nHSIC core) and ``ItplWarning``.

Example
-------
>>> result = itpl.prune(model, itpl.Flops(ratio=0.5), data=images)  # doctest: +SKIP
>>> tflite = itpl.convert(result.model, (3, 32, 32))  # doctest: +SKIP
>>> print(itpl.bench({"unpruned": model, "pruned": tflite}, batch=[1]))  # doctest: +SKIP
"""

import importlib

from itpl._memory import keep_freed_memory

# Before torch allocates anything: freed tensors stay in the process instead of
# being unmapped and faulted back every step (itpl._memory; ITPL_KEEP_MEMORY=0:
# off). ctypes only: nothing heavy, so Ctrl-C stays honoured right after start.
keep_freed_memory()

# Public name -> the module that implements it. Resolved on first use, so that
# ``import itpl`` (and ``python -m itpl``, which must reach the CLI's Ctrl-C
# handler right after starting) imports neither torch nor NumPy.
_PUBLIC = {
    "prune": "itpl.api",
    "profile": "itpl.api",
    "load": "itpl.api",
    "PruneResult": "itpl.pipeline",
    "PruneConfig": "itpl.config",
    "ItplWarning": "itpl.config",
    "AllowedWidths": "itpl.method.widths",
    "Flops": "itpl.budget",
    "Params": "itpl.budget",
    "Latency": "itpl.budget",
    "convert": "itpl.api_deploy",
    "TFLiteModel": "itpl.api_deploy",
    "bench": "itpl.api_deploy",
    "BenchResult": "itpl.api_deploy",
}


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name == "hsic":  # NumPy and the C++ core
        return importlib.import_module("itpl.method.hsic")
    if name == "__version__":  # importlib.metadata: 0.3 s on a loaded machine
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("itpl")
        except PackageNotFoundError:  # running from a source tree without an install
            return "0+unknown"
    raise AttributeError(f"module 'itpl' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(__all__))


__all__ = ["AllowedWidths", "BenchResult", "Flops", "ItplWarning", "Latency", "Params",
           "PruneConfig", "PruneResult", "TFLiteModel", "__version__", "bench", "convert",
           "hsic", "load", "profile", "prune"]
