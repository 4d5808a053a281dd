"""Latency profiles on the real local device (LiteRT): the fit, the cache that
lets an interrupted profile resume, the refusals, and itpl profile / itpl
prune --latency-ms end to end."""

import json
import os

import numpy as np
import pytest

import itpl
from itpl.cli import main
from itpl.deploy.devices.local import LocalDevice
from itpl.latency.fit import add_layer as _add_layer
from itpl.latency.fit import columns as _columns
from itpl.latency.fit import fit_layer as _fit
from itpl.latency.fit import grid as _grid
from itpl.latency.measure import profile_model
from itpl.latency.profile import check_device, check_profile, read_profile, write_profile
from itpl.latency.runs import (PROBE_WIDTHS as _PROBE_WIDTHS, PROBES as _PROBES, TILES,
                               SampleCache, channel_tile, measure_channel_tile)
from itpl.method.widths import allowed_widths
from itpl.model.cost import QuadraticCost
from itpl.model.graph import analyze
from tests.small_models import ConcatNet, ResidualNet

FAST = dict(grid=2, calibrate=8, validate=3, rounds=1, round_to=8)


def _probe_times(latency):
    return {f"probe/{s.key}/n1/{c if s.kind == 'depthwise' else 128}>{c}": latency(c)
            for s in _PROBES for c in _PROBE_WIDTHS}


def test_channel_tile_finds_the_simd_step():
    assert channel_tile(_probe_times(lambda c: 1.0 + 0.1 * c)) == 8  # linear: any multiple of 8
    assert channel_tile(_probe_times(lambda c: 1.0 + 0.1 * 16 * -(-c // 16))) == 16
    # 32-wide tiles, with the cheaper half tile that AVX-512 kernels show
    step32 = {16: 2.2, 32: 3.4}
    assert channel_tile(_probe_times(lambda c: step32.get(c, 1.0 + 0.08 * 32 * -(-c // 32)))) == 32
    # one timing the OS disturbed (twice as slow) does not move the tile
    spiked = _probe_times(lambda c: 1.0 + 0.1 * 16 * -(-c // 16))
    key = next(k for k in spiked if k.startswith("probe/depthwise") and k.endswith(">16"))
    spiked[key] *= 2
    assert channel_tile(spiked) == 16


def test_channel_tile_measured_alone_on_the_real_device():
    sizes = []

    class Counting(LocalDevice):
        def time_bursts(self, sequence, **kw):
            # one round of a batch: the reference between every two probes
            ref = sequence[0]
            assert set(sequence[0::2]) == {ref} and ref not in sequence[1::2]
            assert len(set(sequence[1::2])) == len(sequence) // 2
            sizes.extend(os.path.getsize(p) for p in sequence[1::2])
            return super().time_bursts(sequence, **kw)

    assert measure_channel_tile(Counting(), rounds=1) in TILES
    assert len(sizes) == len(_PROBES) * len(_PROBE_WIDTHS)
    assert len(set(sizes)) == len(sizes)  # every probe its own model, beside the reference


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
    """The real local device, counting calls and the models timed (all but the
    reference), and interrupted after ``stop`` calls."""

    def __init__(self, stop=None):
        self.calls, self.models, self.stop = 0, 0, stop

    def time_bursts(self, sequence, **kw):
        if self.stop is not None and self.calls >= self.stop:
            raise KeyboardInterrupt
        self.calls += 1
        self.models += len(set(sequence[1::2]))
        return super().time_bursts(sequence, **kw)


def _cache_keys(path):
    with open(path) as f:
        return [k for line in f.read().splitlines()[1:] for k in [json.loads(line)["key"]] if k]


def test_interrupted_profile_resumes_without_repeating_a_sample(tmp_path):
    graph = analyze(ResidualNet(), ResidualNet.input_shape)
    cache = str(tmp_path / "p.cache")
    with pytest.raises(KeyboardInterrupt):
        profile_model(graph, _Device(stop=3), name="residual", cache=cache, **FAST)
    first = _cache_keys(cache)
    assert len(first) == 48  # three batches of 16, each in the cache before the next
    with open(cache, "a") as f:
        f.write('{"key": "torn')  # what a kill during a write leaves
    device = _Device()
    profile = profile_model(graph, device, name="residual", cache=cache, **FAST)
    keys = _cache_keys(cache)
    assert keys[:48] == first and len(keys) == len(set(keys))  # nothing lost or twice
    assert device.models == len(keys) - 48 and profile.resumed == 48
    whole = 8 + 3 + len(profile.validation["solver"]["widths"])  # calibration, validation
    assert device.calls == -(-(len(keys) - 48 - whole) // 16) + 2  # a call per batch

    layers = [l for l in graph.layers if l.kind in ("conv", "linear")]
    assert [r["name"] for r in profile.layers] == [l.name for l in layers]
    assert profile.matrix.shape == (len(graph.widths) + 1,) * 2
    assert profile.settings["round_to"] == 8 and profile.settings["resized_whole_models"]
    cal, val = profile.calibration, profile.validation
    assert cal["widths"][0] == graph.widths and len(cal["widths"]) == 8
    random, solver = val["random"], val["solver"]
    assert len(random["widths"]) == 3 and 1 <= len(solver["widths"]) <= 3
    checked = random["widths"] + solver["widths"]
    assert not any(w in cal["widths"] for w in checked) and len({tuple(w) for w in checked}) == len(checked)
    assert all(m > 0 for m in cal["measured_ms"] + random["measured_ms"] + solver["measured_ms"])
    assert 0 <= random["within_5pct"] <= random["within_10pct"] <= 1
    assert len(cal["scales"]) == len(cal["terms"]) and min(cal["scales"]) >= 0
    # the unpruned model is the calibration's first configuration, timed beside a copy of itself
    assert cal["measured_ms"][0] == pytest.approx(profile.reference["ms"], rel=0.25)
    assert profile.reference["bursts"] > 0 and profile.reference["relative"] >= 0
    # the validation's predictions are the profile's form at each configuration
    cost = profile.cost()
    for part in (random, solver):
        for w, p in zip(part["widths"], part["predicted_ms"]):
            assert cost(np.array(w) / graph.widths) == pytest.approx(p)

    path = str(tmp_path / "p.profile.json")
    write_profile(profile, path)
    again = read_profile(path)
    np.testing.assert_array_equal(again.matrix, profile.matrix)
    assert again.validation == profile.validation


def test_sample_cache_for_another_device_starts_over(tmp_path):
    path = str(tmp_path / "c")
    SampleCache(path, {"device": {"threads": 1}}).put("k", [0.5, 0.6], "layer", [1.0, 1.1, 0.9])
    again = SampleCache(path, {"device": {"threads": 1}})
    assert again.get("k") == [0.5, 0.6] and again.reference_ms == {"layer": [1.0, 1.1, 0.9]}
    assert SampleCache(path, {"device": {"threads": 2}}).get("k") is None


def test_a_damaged_cache_starts_over(tmp_path):
    path = tmp_path / "c"
    path.write_bytes(b"\xff\xfe not json")
    cache = SampleCache(str(path), {"device": {"threads": 1}})
    assert cache.get("k") is None and cache.resumed == 0
    cache.put("k", [0.5], "layer", [1.0])
    assert SampleCache(str(path), {"device": {"threads": 1}}).get("k") == [0.5]


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profile")
    path = str(folder / "res.profile.json")
    code = main(["profile", "--model", "tests.small_models:residual_net", "-o", path, "--grid", "2",
                 "--calibrate", "8", "--validate", "3", "--rounds", "1", "--round-to", "8",
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
    profile = read_profile(profile_file)
    prefix = str(tmp_path / "lat")
    code, out, err = _run(capsys, "prune", "--model", "tests.small_models:residual_net",
                          "--latency-ratio", "0.6", "--profile", profile_file, "--verify",
                          "--samples", "16", "-o", prefix, "-q")
    assert code == 0, err
    plan = json.load(open(prefix + ".plan.json"))
    b = plan["budget"]
    assert b["kind"] == "latency" and b["unit"] == "ms"
    assert b["set_as"] == "ratio" and b["ratio"] == 0.6
    assert b["unpruned_ms"] == profile.reference["ms"] and b["device"]["threads"] == 1
    assert plan["settings"]["round_to"] == 8  # the profile's
    assert all(g["kept"] % 8 == 0 for g in plan["groups"])
    # verified beside the unpruned model, as a ratio, as the budget was set
    v = b["verified"]
    assert v["threads"] == 1 and v["batch"] == 1 and v["rounds"] >= 10
    assert v["interval"][0] <= v["ratio"] <= v["interval"][1]
    assert v["budget_ratio"] == 0.6 and v["met"] == (v["ratio"] <= 0.6)
    assert v["pruned_ms_now"] == pytest.approx(v["ratio"] * v["unpruned_now"]["ms"])
    assert "verified on local" in out and "beside the unpruned model" in out
    assert ("budget 60.0% of the unpruned latency: " + ("met" if v["met"] else "NOT MET")) in out
    # --verify brings the device, so candidates were timed beside the unpruned
    # model, and the kept candidate is the slowest under the budget's ratio
    r = b["refined"]
    assert b["value"] == pytest.approx(0.6 * b["unpruned_ms"]) and r["target_ratio"] == 0.6
    assert 1 <= len(r["steps"]) <= 4 and "candidates beside the unpruned model" in out
    kept = [s["ratio"] for s in r["steps"] if s["predicted"] == b["predicted"]]
    timed = [s["ratio"] for s in r["steps"]]
    under = [m for m in timed if m <= 0.6]
    safe = [m for m in under if m <= 0.97 * 0.6] or under  # a margin under the budget first
    assert r["met"] == bool(under)
    assert (max(safe) if safe else min(timed)) in kept
    assert r["steps"][0]["goal"] == pytest.approx(0.6 * b["unpruned_ms"])

    code, out, err = _run(capsys, "prune", "--model", "tests.small_models:residual_net",
                          "--latency-ratio", "0.6", "--profile", profile_file, "--verify",
                          "--no-refine", "--samples", "16", "-o", prefix + "-open", "-q")
    assert code == 0, err
    b = json.load(open(prefix + "-open.plan.json"))["budget"]
    assert "refined" not in b and b["predicted"] <= b["value"] == pytest.approx(0.6 * b["unpruned_ms"])


def test_an_ms_budget_is_verified_in_the_profiles_conditions(profile_file, tmp_path, capsys):
    profile = read_profile(profile_file)
    budget = 0.7 * profile.reference["ms"]
    prefix = str(tmp_path / "ms")
    code, out, err = _run(capsys, "prune", "--model", "tests.small_models:residual_net",
                          "--latency-ms", f"{budget}", "--profile", profile_file, "--verify",
                          "--no-refine", "--samples", "16", "-o", prefix, "-q")
    assert code == 0, err
    b = json.load(open(prefix + ".plan.json"))["budget"]
    v = b["verified"]
    assert b["set_as"] == "ms" and b["value"] == pytest.approx(budget)
    assert v["budget_ratio"] == pytest.approx(0.7)
    assert v["pruned_ms_at_profile"] == pytest.approx(v["ratio"] * profile.reference["ms"])
    assert v["met"] == (v["pruned_ms_at_profile"] <= budget)
    assert f"budget {budget:.3f} ms: " in out


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


class _BiasedDevice(LocalDevice):
    """The local CPU with every model but the reference of each sequence (the
    unpruned model, when refining) read ``factor`` times slower: a profile
    biased for pruned models, which a uniformly slower device would not show
    through ratios."""

    def __init__(self, factor):
        self.factor = factor

    def time_bursts(self, sequence, **kw):
        times = super().time_bursts(sequence, **kw)
        return [t if p == sequence[0] else t * self.factor for p, t in zip(sequence, times)]


def test_refinement_corrects_a_biased_profile(profile_file):
    profile = read_profile(profile_file)
    source = "tests.small_models:residual_net"
    kw = dict(profile=profile, config=itpl.PruneConfig(samples=16), data=None)
    open_loop = itpl.prune(source, itpl.Latency(ratio=0.6), **kw)
    closed = itpl.prune(source, itpl.Latency(ratio=0.6), device=_BiasedDevice(1.3), **kw)
    r = closed.plan.budget["refined"]
    assert len(r["steps"]) >= 2 and r["target_ratio"] == 0.6
    assert r["steps"][0]["goal"] == pytest.approx(0.6 * profile.reference["ms"])
    assert r["steps"][0]["predicted"] == pytest.approx(open_loop.allocation.cost)
    # the 30% slower readings push the goal down to a smaller model than the open loop's
    assert closed.allocation.cost < open_loop.allocation.cost
    assert r["steps"][1]["goal"] < r["steps"][0]["goal"]

    # readings 40% faster push the goal up instead, to a bigger model
    faster = itpl.prune(source, itpl.Latency(ratio=0.6), device=_BiasedDevice(0.6), **kw)
    r = faster.plan.budget["refined"]
    assert r["steps"][1]["goal"] > r["steps"][0]["goal"] and r["met"]
    assert faster.allocation.cost > open_loop.allocation.cost


def test_a_uniformly_slower_device_changes_no_ratio(profile_file):
    class Slower(LocalDevice):
        def time_bursts(self, sequence, **kw):
            return [1.5 * t for t in super().time_bursts(sequence, **kw)]

    profile = read_profile(profile_file)
    got = itpl.prune("tests.small_models:residual_net", itpl.Latency(ratio=0.6), profile=profile,
                     config=itpl.PruneConfig(samples=16), device=Slower())
    r = got.plan.budget["refined"]
    assert r["reference"]["ms"] > 1.3 * profile.reference["ms"] * 0.5  # it did read slower
    assert all(0.2 < s["ratio"] < 1.0 for s in r["steps"])


def test_python_api_profiles_in_memory_and_prunes_to_latency(profile_file, tmp_path):
    torch = pytest.importorskip("torch")
    model = ResidualNet()
    profile = itpl.profile(model, grid=2, calibrate=8, validate=0, rounds=1,
                           widths=itpl.AllowedWidths(round_to=8))
    assert profile.model["name"] == "tests.small_models:ResidualNet"
    assert profile.settings["round_to"] == 8 and not list(tmp_path.iterdir())  # nothing written
    images = torch.randn(16, 3, 16, 16)
    result = itpl.prune(model, itpl.Latency(ratio=0.6), profile=profile, data=images,
                        config=itpl.PruneConfig(beta_scales=(1,)))
    b = result.plan.budget
    assert b["kind"] == "latency" and b["set_as"] == "ratio" and "refined" not in b
    assert b["predicted"] <= b["value"] == pytest.approx(0.6 * profile.reference["ms"])
    # a profile file of the same structure, by path, serves the same model held in memory
    by_path = itpl.prune(model, itpl.Latency(ms=0.8 * read_profile(profile_file).reference["ms"]),
                         profile=profile_file, data=images, config=itpl.PruneConfig(beta_scales=(1,)))
    assert by_path.plan.budget["set_as"] == "ms"
