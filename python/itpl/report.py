"""Console reports: of a pruning run (one row per group, totals, the beta check and
what importance changed against the zero-importance widths) and of a profile."""

from __future__ import annotations

from itpl.deploy.timing import UNSTABLE_ADVICE
from itpl.model.cost import format_amount


def summary_lines(result) -> list[str]:
    """The console report: one row per group, then totals and the zero-importance comparison."""
    plan, cost = result.plan, result.cost
    lines = [f"{'group':>5}  {'root layer':<28} {'full':>6} {'kept':>6} {'importance':>10} "
             f"{'zero-imp':>8} {'moved':>6}"]
    for i, g in enumerate(plan.groups):
        lines.append(f"{i:>5}  {g.root[-28:]:<28} {g.full:>6} {g.kept:>6} {g.importance:>10.4f} "
                     f"{g.zero_importance_kept:>8} {g.kept - g.zero_importance_kept:>+6}")
    b = plan.budget
    fmt = (lambda v: f"{v:.3f}") if cost.kind == "latency" else format_amount
    refined = b.get("refined")
    if b.get("precision") == "int8":
        lines.append("latency of the int8 model (an int8 profile): export it with "
                     "itpl export PLAN --quantize int8 --data CALIB")
    if not refined:
        lines.append(f"{cost.kind}: {fmt(b['full'])} -> {fmt(b['predicted'])} "
                     f"{cost.unit} (budget {fmt(b['value'])}, "
                     f"{b['predicted'] / b['full']:.1%} of unpruned)")
    else:  # the budget is in measured ratios; the profile's numbers are predictions
        lines.append(f"{cost.kind} predicted by the profile: {fmt(b['full'])} -> "
                     f"{fmt(b['predicted'])} {cost.unit} ({b['predicted'] / b['full']:.1%})")
        last = min((s for s in refined["steps"] if s["predicted"] == b["predicted"]),
                   key=lambda s: s["ratio"])
        lines.append(f"timed {len(refined['steps'])} candidates beside the unpruned model: "
                     f"{last['ratio']:.1%} of its latency, budget {refined['target_ratio']:.1%} "
                     f"({b['value']:.3f} of {b['unpruned_ms']:.3f} ms in the profile)"
                     + ("" if refined["met"] else ": NOT MET, the fastest candidate is kept"))
    moved = result.channels_moved
    baseline = "zero importance"
    if plan.settings.get("objective") == "log":
        baseline = ("equal importance" if plan.settings.get("rounding") == "exact"
                    else "uniform scaling (zero importance)")
    check = plan.settings.get("beta_check")
    if check:
        kl = ", ".join(f"x{s:g} {k:.3f}" for s, k in zip(check["scales"], check["kl"]))
        lines.append(f"beta {plan.settings['beta']:.4g} (x{check['chosen_scale']:g} the default): "
                     f"its widths kept the outputs closest to the unpruned model's "
                     f"(KL on {check['samples']} images: {kl})")
    if moved:
        lines.append(f"importance moved {moved} channels across "
                     f"{sum(1 for m in result.moved if m)} groups vs {baseline}")
    else:
        lines.append(f"importance moved nothing: {baseline} gives the same widths")
    if result.importance.dead:
        lines.append(f"constant (dead) layers, importance 0: {', '.join(result.importance.dead)}")
    return lines


def profile_lines(profile) -> list[str]:
    """The console report of a profile."""
    s, v, c, d, r = (profile.settings, profile.validation, profile.calibration, profile.device,
                     profile.reference)
    micro = len(profile.samples)
    whole = len(c["widths"]) + sum(len(part["widths"]) for part in v.values())
    lines = [
        f"profiled {profile.model['name']} ({profile.precision}) on {d.get('device')} ({d.get('cpu', d.get('model', '?'))}, "
        f"{d.get('threads')} thread{'s' if d.get('threads') != 1 else ''}, batch {s['batch']}): "
        f"{len(profile.layers)} layers, {micro} layer models, {whole} whole models in "
        f"{profile.seconds:.0f} s" + (f" ({profile.resumed} samples from the cache)"
                                      if profile.resumed else ""),
        f"channel tile {s['channel_tile']}: widths are multiples of {s['round_to']}",
        f"unpruned: measured {c['measured_ms'][0]:.3f} ms, predicted {profile.cost().full():.3f} "
        f"ms; the reference moved {r['relative']:.0%} (10-90%) over the run",
    ]
    for kind, label in (("random", "random"), ("solver", "solver-like")):
        part = v.get(kind) or {}
        if part.get("widths"):
            lines.append(f"validation ({len(part['widths'])} {label} width configurations): "
                         f"{part['within_10pct']:.0%} within 10%, {part['within_5pct']:.0%} within "
                         f"5% of measured (largest error {part['max_rel_error']:.1%}, mean "
                         f"{part['mean_signed_error']:+.1%})")
    return lines


def tile_warning(profile) -> str | None:
    """Why the profile's widths waste time, when they are not multiples of the device's tile."""
    tile, round_to = profile.settings["channel_tile"], profile.settings["round_to"]
    if round_to % tile:
        return (f"this device computes channels in tiles of {tile}; widths in multiples of "
                f"{round_to} waste time between tiles (try `round_to` {tile})")
    return None


def stability_warning(profile) -> str | None:
    """What to do when the device moved too much for precise samples, or None."""
    ref = profile.reference
    timed = ref.get("timed") or 0
    if timed and ref.get("imprecise", 0) > 0.1 * timed:
        return (f"{ref['imprecise']} of {timed} samples still disagreed by more than 3% after "
                f"{3 * profile.settings.get('rounds', 3)} rounds (the reference's time "
                f"moved {ref['relative']:.0%} during the run); {UNSTABLE_ADVICE}")
    return None
