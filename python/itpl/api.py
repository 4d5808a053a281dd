"""The Python API of pruning and profiling, re-exported by :mod:`itpl`:
:func:`prune`, :func:`profile` and :func:`load`. Models are given as an
``nn.Module`` held in memory or by name (built-in or ``package.module:factory``).
"""

from __future__ import annotations

import copy
import os

from torch import nn

from itpl.budget import Budget
from itpl.config import PruneConfig
from itpl.method.widths import AllowedWidths


def _class_path(model: nn.Module) -> str:
    """``package.module:Class``, how a plan names a model held in memory: :func:`load`
    calls it without arguments unless given the unpruned model."""
    cls = type(model)
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(model, *, weights=None, input_shape=None, data=None):
    """``(a fresh copy of the model in eval mode, input shape, name, kwargs, preset)``.

    The caller's module is copied, never changed. Its input shape comes from
    ``input_shape``, the model's ``input_shape`` attribute or a tensor ``data``.
    """
    from itpl.model.source import ModelSource, load_weights
    from itpl.pipeline import load_model

    shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
    if shape is None and hasattr(data, "shape") and len(data.shape) > 1:
        shape = tuple(int(s) for s in data.shape[1:])
    if isinstance(model, (str, os.PathLike)):
        spec = os.fspath(model)
        if spec.endswith(".json"):
            raise ValueError(f"'{spec}' is a plan of a pruned model: load it with itpl.load")
        source = ModelSource(spec)
        module, shape = load_model(source, weights, shape)
        return module, shape, source.name, dict(source.kwargs), source.preset
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a model name, not "
                        f"{type(model).__name__}")
    module = copy.deepcopy(model)
    if weights:
        load_weights(module, weights)
    if shape is None:
        shape = ModelSource(_class_path(model)).input_shape(model)
    if shape is None:
        raise ValueError(f"cannot infer the input shape of {type(model).__name__}; pass "
                         "`input_shape` C,H,W (or data as a tensor)")
    return module.eval(), shape, _class_path(model), {}, None


def _calibration(data, shape, config: PruneConfig, preset_name):
    """``(batch or None, label)`` from a tensor, an array or a path (as ``--data``)."""
    if data is None:
        return None, None
    from itpl.train.data import calibration_tensor, load_calibration, preset

    name = config.preset or preset_name or "imagenet"
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        batch = load_calibration(path, shape, samples=config.samples, seed=config.seed,
                                 norm=preset(name), progress=config.progress)
        return batch, f"{path} ({name})"
    return calibration_tensor(data, shape, samples=config.samples, seed=config.seed,
                              norm=preset(name)), "tensor"


def prune(model, budget: Budget, *, data=None, profile=None, device=None,
          config: PruneConfig | None = None, input_shape=None, weights: str | None = None):
    """Prune a CNN to a FLOPs, params or latency budget with nHSIC layer importance.

    Parameters
    ----------
    model : torch.nn.Module or str
        The trained model (copied, never changed), or a built-in name
        (``resnet20``) or ``package.module:factory``.
    budget : Flops, Params or Latency
        E.g. ``itpl.Flops(283e6)``, ``itpl.Flops(ratio=0.5)``,
        ``itpl.Latency(ms=15)``, ``itpl.Latency(ratio=0.54)``.
    data : torch.Tensor, numpy.ndarray or str, optional
        Calibration images ``(N, C, H, W)`` (float, used as they are, or uint8,
        normalised by ``config.preset``), or a path: an image folder or a
        ``.npy``/``.pt`` file. ``config.samples`` of them are drawn with
        ``config.seed``. Without data, random inputs are used with a warning:
        the importance then says nothing about the model.
    profile : Profile or str, optional
        Device profile of a latency budget (:func:`itpl.profile`), or its file.
    device : str or Device, optional
        Latency budgets: where to profile when there is no ``profile``, and
        (with ``config.refine``) where the solver's candidates are timed until
        the measured latency meets the budget. ``"local"``, ``"adb"``, ...
    config : PruneConfig, optional
        How to prune; default ``PruneConfig()``.
    input_shape : tuple of int, optional
        One sample's shape, where neither the model (an ``input_shape``
        attribute, a built-in) nor a tensor ``data`` tells it.
    weights : str, optional
        A state_dict file to load into the model first.

    Returns
    -------
    PruneResult
        ``.model`` (pruned, eval mode), ``.plan``, ``.save(prefix)``;
        ``.pruned`` is False when the budget is at or above the unpruned cost.

    Raises
    ------
    ValueError
        For an infeasible budget, data that does not fit the model, a latency
        budget without profile or device, and other bad arguments.

    Examples
    --------
    >>> result = itpl.prune(model, itpl.Flops(ratio=0.5), data=images)  # doctest: +SKIP
    >>> result.save("net-pruned")  # doctest: +SKIP
    """
    from itpl.pipeline import prune_module

    if not isinstance(budget, Budget):
        raise TypeError("budget must be itpl.Flops, itpl.Params or itpl.Latency, not "
                        f"{type(budget).__name__}")
    config = config or PruneConfig()
    module, shape, name, kwargs, preset_name = _resolve(model, weights=weights,
                                                        input_shape=input_shape, data=data)
    batch, label = _calibration(data, shape, config, preset_name)
    if device is not None:
        from itpl.deploy.devices import as_device

        device = as_device(device)
    if isinstance(profile, (str, os.PathLike)):
        from itpl.latency.profile import read_profile

        profile = read_profile(os.fspath(profile))
    if budget.kind == "latency" and profile is None and device is not None:
        from itpl.latency.measure import profile_model

        def make_profile(graph):  # made once the graph is known, in memory
            return profile_model(graph, device, name=name, kwargs=kwargs, threads=1,
                                 round_to=config.widths.round_to,
                                 alpha_min=config.widths.alpha_min, progress=config.progress)

        profile = make_profile
    elif budget.kind != "latency" and profile is not None:
        raise ValueError("`profile` goes with a Latency budget")
    return prune_module(module, shape, budget, config=config, name=name, kwargs=kwargs,
                        weights=weights, data=batch, data_label=label, profile=profile,
                        device=device)


def profile(model, *, device="local", path: str | None = None, input_shape=None,
            weights: str | None = None, threads: int = 1, batch: int = 1,
            widths: AllowedWidths | None = None, grid: int = 5, calibrate: int = 24,
            validate: int = 20, seed: int = 0, rounds: int = 3, progress: bool = False):
    """Measure a model's latency model on a device (what ``itpl profile`` does).

    Parameters
    ----------
    model : torch.nn.Module or str
        The unpruned model, or a built-in name or ``package.module:factory``.
    device : str or Device
        Where to time: ``"local"`` (this CPU, LiteRT), ``"adb"``, ``"adb:SERIAL"``,
        ``"adb:HOST:PORT"`` or ``"adb-usb"``.
    path : str, optional
        Write the profile here; its sample cache ``PATH.cache`` lets an
        interrupted run resume. Without it the profile stays in memory.
    threads, batch : int
        Interpreter threads and the batch size the latencies are for.
    widths : AllowedWidths, optional
        The widths sampled; ``round_to`` None: the device's channel tile.
    grid, calibrate, validate, seed, rounds
        As ``itpl profile --grid/--calibrate/--validate/--seed/--rounds``; see
        :func:`itpl.latency.measure.profile_model`.

    Returns
    -------
    Profile
        Pass it to :func:`prune` with a :class:`Latency` budget.
    """
    from itpl.deploy.devices import as_device
    from itpl.latency.measure import profile_model, profile_to_file
    from itpl.model.graph import analyze

    module, shape, name, kwargs, _ = _resolve(model, weights=weights, input_shape=input_shape)
    widths = widths or AllowedWidths()
    options = dict(name=name, kwargs=kwargs, threads=threads, batch=batch, grid=grid,
                   round_to=widths.round_to, alpha_min=widths.alpha_min, calibrate=calibrate,
                   validate=validate, seed=seed, rounds=rounds, progress=progress)
    graph, device = analyze(module, shape), as_device(device)
    if path is not None:
        return profile_to_file(graph, device, os.fspath(path), **options)
    return profile_model(graph, device, **options)


def load(plan, weights: str | None = None, *, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a pruned model from its plan and weights (no pickled classes).

    Parameters
    ----------
    plan : str or Plan
        A ``*.plan.json`` file (from ``itpl prune`` or :meth:`PruneResult.save`),
        or a :class:`~itpl.model.plan.Plan`.
    weights : str, optional
        The pruned state_dict; default the plan's, beside the plan file.
    model : torch.nn.Module, optional
        An unpruned instance to cut (copied, never changed), for a model pruned
        from memory whose class cannot be called without arguments. Default:
        built from the source the plan names.

    Returns
    -------
    torch.nn.Module
        The pruned model in eval mode.
    """
    from itpl.model.plan import load as load_plan

    return load_plan(plan, weights, model=copy.deepcopy(model) if model is not None else None)
