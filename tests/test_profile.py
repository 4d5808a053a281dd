"""Latency profiles on the real local device (LiteRT): the fit, the cache that
lets an interrupted profile resume, the refusals, and itpl profile / itpl
prune --latency-ms end to end."""

import json
import os

import numpy as np
import pytest

from itpl.cli import main
from itpl.cost import QuadraticCost
from itpl.devices.local import LocalDevice
from itpl.graph import analyze
from itpl.profile import (
    _PROBE_WIDTHS, _PROBES, TILES, SampleCache, _add_layer, _columns, _fit, _grid, channel_tile,
    check_device, check_profile, measure_channel_tile, profile_model, read_profile, write_profile,
)
from itpl.solve import allowed_widths
from tests.small_models import ConcatNet, ResidualNet

FAST = dict(grid=2, calibrate=5, validate=3, max_seconds=0.05, round_to=8)


def _probe_times(latency):
    return {f"probe/{s.key}/n1/{c if s.kind == 'depthwise' else 128}>{c}": latency(c)
            for s in _PROBES for c in _PROBE_WIDTHS}


def test_channel_tile_finds_the_simd_step():
    assert channel_tile(_probe_times(lambda c: 1.0 + 0.1 * c)) == 8  # linear: any multiple of 8
    assert channel_tile(_probe_times(lambda c: 1.0 + 0.1 * 16 * -(-c // 16))) == 16
    # 32-wide tiles, with the cheaper half tile that AVX-512 kernels show
    step32 = {16: 2.2, 32: 3.4}
    assert channel_tile(_probe_times(lambda c: step32.get(c, 1.0 + 0.08 * 32 * -(-c // 32)))) == 32


def test_channel_tile_measured_alone_on_the_real_device():
    timed = []

    class Counting(LocalDevice):
        def time_model(self, path, **kw):
            timed.append(os.path.getsize(path))
            return super().time_model(path, **kw)

    assert measure_channel_tile(Counting(), max_seconds=0.02) in TILES
    assert len(timed) == len(_PROBES) * len(_PROBE_WIDTHS)
    assert len(set(timed)) == len(timed)  # every probe its own model


def test_layer_fit_substitutes_channel_counts_exactly():
    graph = analyze(ConcatNet(), ConcatNet.input_shape)
    pw = next(l for l in graph.layers if l.name == "pw")  # input: a concat of two groups
    assert _columns(pw) == ["1", "in", "out", "in*out"]
    widths = graph.widths
    lows = [allowed_widths(w, 0.1, 8)[0] for w in widths]
    grid = _grid(pw, widths, lows, 3, 0.1, 8)
    assert len(grid) >= 4 and len({c for c, _ in grid}) >= 2
    a, b, c, d = 0.3, 0.01, 0.02, 0.001
    coef, err = _fit(_columns(pw), [(ci, co, a + b * ci + c * co + d * ci * co) for ci, co in grid])
    np.testing.assert_allclose(coef, [a, b, c, d], rtol=1e-6)
    assert err < 1e-9
    matrix = np.zeros((len(widths) + 1,) * 2)
    _add_layer(matrix, pw, _columns(pw), coef)
    form = QuadraticCost("latency", matrix, "ms")
    for alpha in np.random.default_rng(0).uniform(0.2, 1.0, (5, len(widths))):
        ci, co = pw.in_dim.at(alpha), pw.out_dim.at(alpha)
        assert form(alpha) == pytest.approx(a + b * ci + c * co + d * ci * co)
    dw = next(l for l in graph.layers if l.kind == "depthwise")
    assert _columns(dw) == ["1", "in"]
    assert all(ci == co for ci, co in _grid(dw, widths, lows, 3, 0.1, 8))


class _Device(LocalDevice):
    """The real local device, counting calls and interrupted after ``stop`` of them."""

    def __init__(self, stop=None):
        self.calls, self.stop = 0, stop

    def time_model(self, path, **kw):
        if self.stop is not None and self.calls >= self.stop:
            raise KeyboardInterrupt
        self.calls += 1
        return super().time_model(path, **kw)


def _cache_keys(path):
    with open(path) as f:
        return [json.loads(line)["key"] for line in f.read().splitlines()[1:]]


def test_interrupted_profile_resumes_without_repeating_a_sample(tmp_path):
    graph = analyze(ResidualNet(), ResidualNet.input_shape)
    cache = str(tmp_path / "p.cache")
    with pytest.raises(KeyboardInterrupt):
        profile_model(graph, _Device(stop=45), name="residual", cache=cache, **FAST)
    first = _cache_keys(cache)
    assert len(first) == 45
    with open(cache, "a") as f:
        f.write('{"key": "torn')  # what a kill during a write leaves
    device = _Device()
    profile = profile_model(graph, device, name="residual", cache=cache, **FAST)
    keys = _cache_keys(cache)
    assert keys[:45] == first and len(keys) == len(set(keys))  # nothing lost or twice
    assert device.calls == len(keys) - 45 and profile.resumed == 45

    layers = [l for l in graph.layers if l.kind in ("conv", "linear")]
    assert [r["name"] for r in profile.layers] == [l.name for l in layers]
    assert profile.matrix.shape == (len(graph.widths) + 1,) * 2
    assert profile.settings["round_to"] == 8 and profile.settings["resized_whole_models"]
    cal, val = profile.calibration, profile.validation
    assert cal["widths"][0] == graph.widths and len(cal["widths"]) == 5
    assert len(val["widths"]) == 3 and not any(w in cal["widths"] for w in val["widths"])
    assert all(m > 0 for m in cal["measured_ms"] + val["measured_ms"])
    assert 0 <= val["within_5pct"] <= val["within_10pct"] <= 1
    # the prediction is the form: offset + scale * layer sum at each configuration
    cost = profile.cost()
    for w, s in zip(cal["widths"], cal["layer_sum_ms"]):
        assert cost(np.array(w) / graph.widths) == pytest.approx(cal["offset_ms"] + cal["scale"] * s)

    path = str(tmp_path / "p.profile.json")
    write_profile(profile, path)
    again = read_profile(path)
    np.testing.assert_array_equal(again.matrix, profile.matrix)
    assert again.validation == profile.validation


def test_sample_cache_for_another_device_starts_over(tmp_path):
    path = str(tmp_path / "c")
    SampleCache(path, {"device": {"threads": 1}}).put("k", __import__("itpl").devices.Timing(1, 1, 1, 1))
    assert SampleCache(path, {"device": {"threads": 1}}).get("k") is not None
    assert SampleCache(path, {"device": {"threads": 2}}).get("k") is None


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profile")
    path = str(folder / "res.profile.json")
    code = main(["profile", "--model", "tests.small_models:residual_net", "-o", path, "--grid", "2",
                 "--calibrate", "5", "--validate", "3", "--max-seconds", "0.05", "--round-to", "8",
                 "-q"])
    assert code == 0
    return path


def test_profile_cli_writes_a_profile_and_removes_its_cache(profile_file):
    assert os.path.exists(profile_file) and not os.path.exists(profile_file + ".cache")
    profile = read_profile(profile_file)
    assert profile.model["name"] == "tests.small_models:residual_net"
    assert profile.device["device"] == "local" and profile.device["threads"] == 1


def test_profile_refuses_other_models_threads_and_devices(profile_file):
    profile = read_profile(profile_file)
    check_profile(profile, analyze(ResidualNet(), ResidualNet.input_shape))
    with pytest.raises(ValueError, match="made for model 'tests.small_models:residual_net'"):
        check_profile(profile, analyze(ConcatNet(), ConcatNet.input_shape))
    with pytest.raises(ValueError, match="measured with 1 threads, not 2"):
        check_device(profile, threads=2)
    facts = dict(LocalDevice().facts(1))
    check_device(profile, facts, 1)
    facts["cpu"] = "Some Other CPU"
    with pytest.raises(ValueError, match="another device"):
        check_device(profile, facts)


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prune_to_a_latency_budget_and_verify(profile_file, tmp_path, capsys):
    prefix = str(tmp_path / "lat")
    code, out, err = _run(capsys, "prune", "--model", "tests.small_models:residual_net",
                          "--latency-ratio", "0.6", "--profile", profile_file, "--verify",
                          "--samples", "16", "-o", prefix, "-q")
    assert code == 0, err
    plan = json.load(open(prefix + ".plan.json"))
    b = plan["budget"]
    assert b["kind"] == "latency" and b["unit"] == "ms"
    assert b["measured_ms"] > 0 and b["device"]["threads"] == 1
    assert plan["settings"]["round_to"] == 8  # the profile's
    assert all(g["kept"] % 8 == 0 for g in plan["groups"])
    assert "verified on local" in out and "predicted" in out
    # --verify brings the device, so candidates were timed: the ratio is of the
    # unpruned model measured now, and the kept candidate is the slowest under it
    r = b["refined"]
    assert b["value"] == pytest.approx(0.6 * r["unpruned_ms"])
    assert 1 <= len(r["steps"]) <= 4 and "candidates on the device" in out
    kept = [s["measured_ms"] for s in r["steps"] if s["predicted"] == b["predicted"]]
    timed = [s["measured_ms"] for s in r["steps"]]
    under = [m for m in timed if m <= b["value"]]
    assert r["met"] == bool(under)
    assert (max(under) if under else min(timed)) in kept
    assert r["steps"][0]["goal"] == pytest.approx(0.6 * b["full"])

    code, out, err = _run(capsys, "prune", "--model", "tests.small_models:residual_net",
                          "--latency-ratio", "0.6", "--profile", profile_file, "--verify",
                          "--no-refine", "--samples", "16", "-o", prefix + "-open", "-q")
    assert code == 0, err
    b = json.load(open(prefix + "-open.plan.json"))["budget"]
    assert "refined" not in b and b["predicted"] <= b["value"] == pytest.approx(0.6 * b["full"])


@pytest.mark.parametrize("args,message", [
    (["--latency-ms", "0.0001"], "smallest achievable latency"),
    (["--model", "resnet20", "--latency-ms", "1"], "made for model"),
    (["--latency-threads", "2", "--latency-ms", "1"], "measured with 1 threads"),
    (["--flops-ratio", "0.5"], "--profile goes with --latency-ms"),
])
def test_latency_budget_errors(profile_file, tmp_path, capsys, args, message):
    argv = ["prune", "--model", "tests.small_models:residual_net", "--profile", profile_file,
            "--samples", "8", "-o", str(tmp_path / "x"), "-q"]
    if "--model" in args:
        argv[2] = args[args.index("--model") + 1]
        args = [a for a in args if a not in ("--model", "resnet20")]
    code, out, err = _run(capsys, *argv, *args)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not os.listdir(tmp_path)


def test_latency_budget_without_a_profile(tmp_path, capsys):
    code, _, err = _run(capsys, "prune", "--model", "resnet20", "--latency-ms", "1", "-q",
                        "-o", str(tmp_path / "x"))
    assert code == 1 and "--profile FILE" in err


class _ScaledDevice(LocalDevice):
    """The local CPU, its readings scaled: a device that drifted since profiling."""

    def __init__(self, factor):
        self.factor = factor

    def time_model(self, path, **kw):
        t = super().time_model(path, **kw)
        f = self.factor
        return type(t)(f * t.median_ms, f * t.min_ms, f * t.max_ms, t.repeats)


def test_refinement_corrects_a_biased_profile(profile_file):
    from itpl.models.source import ModelSource
    from itpl.workflow import Budget, prune_model

    profile = read_profile(profile_file)
    source = ModelSource("tests.small_models:residual_net")
    kw = dict(profile=profile, samples=16, budget=Budget("latency", value=0.6 * profile.cost().full()))
    open_loop = prune_model(source, **kw)
    closed = prune_model(source, device=_ScaledDevice(1.3), **kw)
    r = closed.plan.budget["refined"]
    assert len(r["steps"]) >= 2 and r["unpruned_ms"] is None  # an absolute budget
    assert r["steps"][0]["goal"] == pytest.approx(kw["budget"].value)
    assert r["steps"][0]["predicted"] == pytest.approx(open_loop.allocation.cost)
    # the 30% slower readings push the goal down to a smaller model than the open loop's
    assert closed.allocation.cost < open_loop.allocation.cost
    assert r["steps"][1]["goal"] < r["steps"][0]["goal"]

    # readings 40% faster push the goal up instead, to a bigger model
    faster = prune_model(source, device=_ScaledDevice(0.6), **kw)
    r = faster.plan.budget["refined"]
    assert r["steps"][1]["goal"] > r["steps"][0]["goal"] and r["met"]
    assert faster.allocation.cost > open_loop.allocation.cost
