"""Drift-cancelling timing (itpl.deploy.timing) and the statistics built on it: the
interleaving, ratios on the real LiteRT device, a device whose speed jumps,
stability reporting, confidence intervals and the regression gate."""

import math

import numpy as np
import pytest
import torch

from itpl.deploy.bench import SIGNIFICANCE, bench_models, compare
from itpl.deploy.devices.base import Device
from itpl.deploy.devices.local import LocalDevice
from itpl.deploy.export import export_tflite
from itpl.deploy.timing import Relative, Spread, Timer, median_interval
from itpl.model import zoo as models


class Drifting(Device):
    """A synthetic device: each model has a true time, and the device switches
    between a fast and a slow regime (25% apart) every few bursts."""

    name = "drifting"

    def __init__(self, times: dict, period: int = 3, noise: float = 0.0, seed: int = 0):
        self.times, self.period, self.noise = times, period, noise
        self.bursts, self.sequences = 0, []
        self.rng = np.random.default_rng(seed)

    def facts(self, threads):
        return {"device": self.name, "threads": threads}

    def time_bursts(self, sequence, *, threads, burst_ms, min_runs=1):
        self.sequences.append(list(sequence))
        out = []
        for path in sequence:
            regime = 1.25 if (self.bursts // self.period) % 2 else 1.0
            self.bursts += 1
            out.append(self.times[path] * regime * (1 + self.noise * self.rng.standard_normal()))
        return out


def test_every_model_sits_between_two_reference_bursts():
    device = Drifting({"ref": 10.0, "a": 5.0, "b": 2.0})
    timer = Timer(device, "ref", threads=1)
    got = timer.rounds(["a", "b"], 3)
    seq = device.sequences[0]
    assert seq[0::2] == ["ref"] * 7 and sorted(seq[1::2]) == ["a"] * 3 + ["b"] * 3
    assert [len(r) for r in got] == [3, 3]
    assert len(timer.reference_ms) == 7


def test_ratios_cancel_a_device_that_switches_speed():
    # The regime changes every 2 bursts, so some model bursts are in another
    # regime than one of their references: the geometric mean of the two keeps
    # the error within the regime step's square root.
    device = Drifting({"ref": 10.0, "a": 5.0}, period=2)
    timer = Timer(device, "ref", threads=1)
    rel = timer.measure(["a"], rounds=9)[0]
    assert rel.ratio == pytest.approx(0.5, rel=0.12)
    # With a regime long against a burst pair, the ratio is exact.
    device = Drifting({"ref": 10.0, "a": 5.0}, period=1000)
    assert Timer(device, "ref", threads=1).measure(["a"], rounds=5)[0].ratio == pytest.approx(0.5)
    # The reference's spread shows the regimes it went through.
    device = Drifting({"ref": 10.0, "a": 5.0}, period=4)
    timer = Timer(device, "ref", threads=1)
    timer.measure(["a"], rounds=20)
    spread = timer.spread()
    assert spread.low_ms == pytest.approx(10.0) and spread.high_ms == pytest.approx(12.5)
    assert spread.relative == pytest.approx(0.25, rel=0.01)


def test_measure_adds_rounds_until_precise_and_no_further():
    quiet = Drifting({"ref": 10.0, "a": 5.0}, period=10**6, noise=0.001)
    got = Timer(quiet, "ref", threads=1).measure(["a"], rounds=6, precision=0.02)[0]
    assert len(got.ratios) == 6 and got.precision <= 0.02
    noisy = Drifting({"ref": 10.0, "a": 5.0}, period=10**6, noise=0.2, seed=1)
    got = Timer(noisy, "ref", threads=1).measure(["a"], rounds=6, max_rounds=18, precision=0.001)[0]
    assert len(got.ratios) == 18 and got.precision > 0.001


def test_unusable_timings_are_refused():
    class Broken(Drifting):
        def time_bursts(self, sequence, **kw):
            return [float("nan")] * len(sequence)

    with pytest.raises(ValueError, match="unusable timings"):
        Timer(Broken({}), "ref", threads=1).rounds(["a"], 1)
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        Timer(Drifting({}), "ref", threads=1).rounds(["a"], 0)


def test_median_interval_is_distribution_free():
    x = list(range(1, 21))  # n = 20: the 95% interval is [x_6, x_15] (1-based)
    assert median_interval(x) == (6.0, 15.0)
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few: the range
    # coverage: over many samples of a skewed distribution, about 95% or more
    rng = np.random.default_rng(0)
    true_median = math.log(2)  # exponential(1)
    hits = sum(lo <= true_median <= hi for lo, hi in
               (median_interval(rng.exponential(size=15)) for _ in range(2000)))
    assert 0.94 <= hits / 2000 <= 0.995


def test_spread_summarises_the_reference():
    s = Spread.of([10.0] * 8 + [12.5] * 2)
    assert s.ms == 10.0 and s.bursts == 10 and s.high_ms > s.low_ms
    assert Spread.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError):
        Spread.of([])


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("timing")
    torch.manual_seed(0)
    net = models.build("resnet20")
    return [export_tflite(net, (3, 32, 32), str(folder / f"{name}.tflite")).path
            for name in ("a", "a2")]


def test_a_model_beside_its_copy_on_the_real_device(two_models):
    a, a2 = two_models
    timer = Timer(LocalDevice(), a, threads=1, burst_ms=5)
    rel = timer.measure([a2], rounds=8, precision=0.05)[0]
    lo, hi = rel.interval()
    assert lo <= rel.ratio <= hi
    assert 0.8 < rel.ratio < 1.25  # the same network: a ratio near 1 whatever the machine does
    assert timer.spread().bursts > len(rel.ratios)  # one more reference burst per call


def test_bench_interleaves_and_reports_intervals(two_models):
    a, a2 = two_models
    device = Drifting({a: 10.0, a2: 5.0}, period=2)
    result = bench_models([("big", {1: a}), ("small", {1: a2})], device, threads=1, rounds=6)
    rows = {r["model"]: r for r in result["results"]}
    assert rows["big"]["reference"] == "big" and rows["big"]["speedup"] == 1.0
    small = rows["small"]
    assert small["speedup"] == pytest.approx(2.0, rel=0.12)
    assert small["speedup_low"] <= small["speedup"] <= small["speedup_high"]
    assert small["low_ms"] <= small["median_ms"] <= small["high_ms"]
    assert len(small["samples_ms"]) == len(small["ratios"]) == small["rounds"] >= 6
    assert result["references"]["1"]["relative"] > 0.1  # the regimes are reported


def _result(samples, ratios=None, model="m", reference="base"):
    return {"results": [{"model": model, "batch": 1, "median_ms": float(np.median(samples)),
                         "samples_ms": list(samples), "ratios": ratios or list(samples),
                         "reference": reference, "ratio": 1.0}]}


def test_compare_same_model_never_alarms_and_a_ten_percent_slowdown_always_does():
    rng = np.random.default_rng(0)
    alarms, caught = 0, 0
    for _ in range(10):
        base = 10 * (1 + 0.03 * rng.standard_normal(12))
        same = 10 * (1 + 0.03 * rng.standard_normal(12))
        slow = 11 * (1 + 0.03 * rng.standard_normal(12))
        alarms += compare(_result(base), _result(same), 0.05)[0]["regressed"]
        caught += compare(_result(base), _result(slow), 0.05)[0]["regressed"]
    assert alarms == 0 and caught == 10


def test_compare_needs_both_size_and_significance():
    rng = np.random.default_rng(1)
    base = 10 * (1 + 0.01 * rng.standard_normal(15))
    small_shift = base * 1.03  # significant, under the 5% threshold
    got = compare(_result(base), _result(small_shift), 0.05)[0]
    assert got["p_value"] < SIGNIFICANCE and not got["regressed"]
    wild = [10.0, 30.0]  # large but two noisy samples: not significant
    got = compare(_result([10.0, 10.5]), _result(wild), 0.05)[0]
    assert got["change"] > 0.05 and not got["regressed"]


def test_compare_uses_ratios_when_both_runs_share_the_reference():
    rng = np.random.default_rng(2)
    ratios = list(0.5 * (1 + 0.01 * rng.standard_normal(10)))
    old = _result([r * 10 for r in ratios], ratios)
    new = _result([r * 13 for r in ratios], ratios)  # the device ran 30% slower, the model did not
    got = compare(old, new, 0.05)[0]
    assert got["basis"] == "ratio" and not got["regressed"]
    new = _result([r * 13 for r in ratios], ratios, reference="other")
    assert compare(old, new, 0.05)[0]["basis"] == "ms"


def test_a_gate_that_compared_nothing_fails():
    with pytest.raises(ValueError, match="nothing was compared"):
        compare(_result([1.0]), _result([1.0], model="other"), 0.05)
    with pytest.raises(ValueError, match="threshold"):
        compare(_result([1.0]), _result([2.0]), float("nan"))


def test_relative_precision_from_the_interval():
    rel = Relative([1.0, 1.02, 0.98, 1.01, 0.99, 1.0, 1.0])
    lo, hi = rel.interval()
    assert rel.ratio == 1.0 and rel.precision == pytest.approx((hi - lo) / 2)


def test_an_unstable_device_is_reported_with_what_to_do(two_models):
    from types import SimpleNamespace

    from itpl.deploy.bench import format_table
    from itpl.report import stability_warning

    a, a2 = two_models
    models_ = [("big", {1: a}), ("small", {1: a2})]
    noisy = Drifting({a: 10.0, a2: 5.0}, period=10**6, noise=0.3, seed=3)
    text = format_table(bench_models(models_, noisy, threads=1, rounds=3))
    assert "known only within more than +-3%" in text and "close other apps" in text
    quiet = Drifting({a: 10.0, a2: 5.0}, period=10**6, noise=0.001)
    assert "warning" not in format_table(bench_models(models_, quiet, threads=1, rounds=3))

    def profile(imprecise):
        return SimpleNamespace(settings={"rounds": 3}, reference={
            "timed": 100, "imprecise": imprecise, "relative": 0.3})

    assert "12 of 100 samples" in stability_warning(profile(12))
    assert stability_warning(profile(5)) is None
