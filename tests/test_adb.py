"""Phones over ADB, against the loopback phone of loopback/peer.py: the peer
itself checked with Debian's adb client, then itpl's adb device (connection,
key, facts, timing with the stand-in benchmark_model), its failure cases, the
same device through Debian's adb server (itpl's host-protocol client), and
itpl profile / bench / prune --verify end to end over both transports."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from itpl.cli import main
from itpl.deploy.devices import get_device
from itpl.deploy.devices.adb import BINARY_HELP, AdbDevice, DeviceError, parse_spec
from itpl.deploy.flatbuffer import LayerShape, micro_model
from itpl.latency.measure import profile_model
from itpl.latency.profile import read_profile
from itpl.model.graph import analyze
from loopback.adb_server import DebianAdbServer, free_port
from loopback.launcher import TOOL
from loopback.peer import LoopbackPhone
from tests.small_models import ResidualNet

STAND_IN = TOOL  # the stand-in benchmark_model script
FAST = dict(grid=2, calibrate=8, validate=3, rounds=1, round_to=8)


def test_device_specs():
    assert parse_spec("adb:192.168.1.20:5555") == ("tcp", "192.168.1.20", 5555)
    assert parse_spec("adb") == ("server", "", None)
    assert parse_spec("adb:HT7A1B") == ("server", "HT7A1B", None)
    assert parse_spec("adb:emulator-5554") == ("server", "emulator-5554", None)
    assert parse_spec("adb-server:192.168.1.20:37099") == ("server", "192.168.1.20:37099", None)
    assert parse_spec("adb-server") == ("server", "", None)
    assert parse_spec("adb-usb") == ("usb", "", None)
    assert parse_spec("adb-usb:HT7A1B") == ("usb", "HT7A1B", None)
    for bad in ("adb:", "adb:host:port", "adb:host:70000", "phone", "adbx"):
        with pytest.raises(ValueError):
            parse_spec(bad)
    with pytest.raises(ValueError, match="for phones"):
        get_device("local", cpu_mask="f0")
    with pytest.raises(ValueError, match="hex mask"):
        AdbDevice("adb:127.0.0.1:1", cpu_mask="xyz")


# --- the loopback phone, checked with Debian's adb client --------------------

@pytest.fixture
def phone(tmp_path):
    with LoopbackPhone(tmp_path / "phone") as p:
        yield p


def _device(phone, tmp_path, **kw):
    kw.setdefault("benchmark_binary", STAND_IN)
    return AdbDevice(phone.spec, key_path=str(tmp_path / "keys" / "adbkey"), **kw)


@pytest.mark.skipif(shutil.which("adb") is None, reason="Debian's adb (make test installs it)")
def test_debian_adb_client_accepts_the_loopback_phone(phone, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path))  # the adb server keeps its key in HOME
    server = ["adb", "-P", str(phone.port + 1 if phone.port < 65535 else 5099)]

    def adb(*args, check=True):
        r = subprocess.run(server + list(args), env=env, capture_output=True, text=True, timeout=60)
        assert not check or r.returncode == 0, r.stdout + r.stderr
        return r.stdout + r.stderr

    serial = f"127.0.0.1:{phone.port}"
    try:
        # A first connection offers the server's new key for the user to allow:
        # adb reports "failed to authenticate" until the phone has answered.
        first = adb("connect", serial)
        assert "connected to" in first or "failed to authenticate" in first, first
        adb("-s", serial, "wait-for-device")
        assert f"{serial}\tdevice" in adb("devices")
        assert adb("-s", serial, "shell", "getprop ro.product.model").strip() == "Pixel 2"
        assert adb("-s", serial, "shell", "echo a; echo b >&2").split() == ["a", "b"]
        blob = np.random.default_rng(0).bytes(300_000)  # several DATA chunks
        (tmp_path / "blob").write_bytes(blob)
        adb("-s", serial, "push", str(tmp_path / "blob"), "/data/local/tmp/blob")
        assert phone.device_path("/data/local/tmp/blob").read_bytes() == blob
        adb("-s", serial, "pull", "/data/local/tmp/blob", str(tmp_path / "back"))
        assert (tmp_path / "back").read_bytes() == blob
        assert "blob" in adb("-s", serial, "shell", "ls /data/local/tmp")
        assert phone.offered_keys == 1 and len(phone.keys) == 1  # the server's key, allowed once
    finally:
        adb("kill-server", check=False)


# --- itpl's adb device --------------------------------------------------------

def test_key_is_created_then_trusted_and_facts_read(phone, tmp_path):
    device = _device(phone, tmp_path)
    out, rc = device.shell("echo hello; exit 3")
    assert (out, rc) == ("hello\n", 3)
    assert os.path.exists(tmp_path / "keys" / "adbkey") and os.path.exists(tmp_path / "keys" / "adbkey.pub")
    device.close()
    device = _device(phone, tmp_path)
    assert device.shell("true")[1] == 0
    assert phone.offered_keys == 1  # the second connection signed the token with the known key
    facts = device.facts(2)
    assert (facts["manufacturer"], facts["model"], facts["android"], facts["abi"]) == \
        ("Google", "Pixel 2", "11", "arm64-v8a")
    assert facts["threads"] == 2 and facts["cores"] == os.cpu_count()
    with open(STAND_IN, "rb") as f:
        import hashlib

        assert facts["binary"] == f"benchmark_model sha256:{hashlib.sha256(f.read()).hexdigest()[:16]}"
    assert phone.device_path("/data/local/tmp/itpl_benchmark_model").stat().st_mode & 0o111


def test_time_model_pushes_runs_and_removes(phone, tmp_path):
    path = tmp_path / "conv.tflite"
    path.write_bytes(micro_model(LayerShape("conv", (14, 14), activation="relu"), 32, 32))
    device = _device(phone, tmp_path, cpu_mask="0x1")
    t = device.time_model(str(path), threads=1, min_repeats=30, max_seconds=0.1)
    assert t.repeats >= 30 and 0 < t.min_ms <= t.median_ms <= t.max_ms
    run = next(c for c in phone.commands if "--graph=" in c)
    assert run.startswith("(taskset 1 /data/local/tmp/itpl_benchmark_model --graph=/data/local/tmp/")
    assert "--num_threads=1" in run and "--num_runs=30" in run
    assert not list(phone.device_path("/data/local/tmp").glob("*.tflite"))  # removed afterwards


def _loop(command):
    """The model numbers a timing loop runs, in order (``for m in 0 1 0 2 0; do``)."""
    return [int(m) for m in command.split("for m in ", 1)[1].split(";", 1)[0].split()]


def test_a_timing_sequence_is_two_round_trips(phone, tmp_path):
    from itpl.deploy.timing import Timer

    ref, a, b = (tmp_path / f"{n}.tflite" for n in ("ref", "a", "b"))
    ref.write_bytes(micro_model(LayerShape("conv", (14, 14)), 32, 32))
    a.write_bytes(micro_model(LayerShape("conv", (14, 14)), 32, 8))
    b.write_bytes(micro_model(LayerShape("conv", (14, 14)), 32, 16))
    device = _device(phone, tmp_path, cpu_mask="0x1")
    device.facts(1)  # the binary pushed and the phone read: not part of the timing
    before, commands, syncs = device.round_trips, len(phone.commands), phone.sync_sessions
    got = Timer(device, str(ref), threads=1, burst_ms=20).measure([str(a), str(b)], rounds=3,
                                                                   max_rounds=3)
    assert [len(r.ratios) for r in got] == [3, 3] and all(x > 0 for r in got for x in r.ratios)
    runs = [c for c in phone.commands[commands:] if "--graph=" in c]
    assert len(runs) == 1 and "taskset 1 " in runs[0] and "--min_secs=0.02" in runs[0]
    order = _loop(runs[0])  # model 0 is the reference, between every two others
    assert order[0::2] == [0] * 7 and sorted(order[1::2]) == [1, 1, 1, 2, 2, 2]
    assert device.round_trips - before == 2 and phone.sync_sessions - syncs == 1  # 3 files
    assert not [p for p in phone.device_path("/data/local/tmp").iterdir()
                if p.name.startswith("itpl-run-")]  # the models' folder is removed


def test_a_long_sequence_takes_several_loops(phone, tmp_path, monkeypatch):
    import itpl.deploy.devices.adb as adb

    monkeypatch.setattr(adb, "LOOP_CHARS", 12)  # a command line 6 bursts long
    ref, a = tmp_path / "ref.tflite", tmp_path / "a.tflite"
    ref.write_bytes(micro_model(LayerShape("conv", (14, 14)), 32, 32))
    a.write_bytes(micro_model(LayerShape("conv", (14, 14)), 32, 8))
    device = _device(phone, tmp_path)
    device.facts(1)
    commands = len(phone.commands)
    sequence = [str(ref), str(a)] * 7 + [str(ref)]
    times = device.time_bursts(sequence, threads=1, burst_ms=5)
    runs = [_loop(c) for c in phone.commands[commands:] if "--graph=" in c]
    assert [len(r) for r in runs] == [6, 6, 3] and sum(runs, []) == [0, 1] * 7 + [0]
    assert len(times) == 15 and all(t > 0 for t in times)
    assert not [p for p in phone.device_path("/data/local/tmp").iterdir()
                if p.name.startswith("itpl-run-")]


def test_the_native_stand_in_runs_the_tool(phone, tmp_path, monkeypatch):
    from loopback.launcher import TOOL, stand_in

    binary = stand_in()
    if binary == TOOL:
        pytest.skip("no C compiler for the native stand-in")
    # its zygote reads the caller's environment from /proc: the layout is the caller's
    monkeypatch.setenv("ITPL_STANDIN_LAYOUT", "percentiles")
    ref, a = tmp_path / "ref.tflite", tmp_path / "a.tflite"
    ref.write_bytes(micro_model(LayerShape("conv", (14, 14)), 32, 32))
    a.write_bytes(micro_model(LayerShape("conv", (14, 14)), 32, 8))
    device = _device(phone, tmp_path, benchmark_binary=binary, cpu_mask="1")
    t = device.time_model(str(a), threads=1, min_repeats=25, max_seconds=0.05)
    assert t.statistic == "median" and t.repeats >= 25 and t.min_ms <= t.median_ms <= t.max_ms
    times = device.time_bursts([str(ref), str(a), str(ref)], threads=1, burst_ms=5, min_runs=3)
    assert len(times) == 3 and all(x > 0 for x in times)
    # the tool's failure and exit status come through
    out, rc = device.shell(f"{device._benchmark_binary()} --graph=/data/local/tmp/none.tflite")
    assert rc == 1 and "ERROR: File /data/local/tmp/none.tflite does not exist." in out
    out, rc = device.shell(f"{device._benchmark_binary()} --no_such_flag=1")
    assert rc == 1 and "Unconsumed cmdline flags: --no_such_flag=1" in out


def test_messages_keep_their_checksum(phone, tmp_path):
    # the direct transport sums message bytes with NumPy: the value adbd
    # before Android 9 checks must be adb-shell's own
    from adb_shell.adb_message import AdbMessage, checksum
    from adb_shell.constants import WRTE

    _device(phone, tmp_path).shell("true")  # connected: the NumPy sum is in place
    rng = np.random.default_rng(0)
    for data in (b"", b"\xff" * 70_000, rng.bytes(300_000), bytearray(rng.bytes(4096))):
        assert AdbMessage(WRTE, 1, 2, data).checksum == checksum(data)
    assert AdbMessage._itpl_numpy_checksum


def test_usb_without_the_usb_extra(tmp_path):
    import importlib.util

    if importlib.util.find_spec("usb1") is not None:
        pytest.skip("libusb1 is installed here")
    with pytest.raises(DeviceError, match=r"pip install 'itpl\[usb\]'"):
        AdbDevice("adb-usb", key_path=str(tmp_path / "adbkey")).shell("true")


def test_no_device_listening(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed
    device = AdbDevice(f"adb:127.0.0.1:{port}", key_path=str(tmp_path / "adbkey"), retries=0)
    with pytest.raises(DeviceError, match="cannot connect to adb:127.0.0.1"):
        device.shell("true")


def test_unauthorized_key_explains_the_prompt(tmp_path):
    with LoopbackPhone(tmp_path / "phone", accept_new_keys=False) as phone:
        device = _device(phone, tmp_path, auth_timeout_s=1, retries=0)
        with pytest.raises(DeviceError, match="tap 'Allow'"):
            device.shell("true")
        assert phone.offered_keys == 1 and not phone.commands


def test_missing_benchmark_model_says_where_to_get_it(phone, tmp_path):
    device = _device(phone, tmp_path, benchmark_binary=None)
    with pytest.raises(DeviceError, match="no benchmark_model") as info:
        device.facts(1)
    assert BINARY_HELP in str(info.value)
    # pushed by hand to the default place, it is found
    target = phone.device_path("/data/local/tmp/benchmark_model")
    shutil.copy(STAND_IN, target)
    target.chmod(0o755)
    assert _device(phone, tmp_path, benchmark_binary=None).facts(1)["binary"].startswith("benchmark_model sha256:")


def test_unparsable_output_is_an_error(phone, tmp_path):
    fake = tmp_path / "broken_benchmark"
    fake.write_text("#!/bin/sh\necho 'Segmentation fault'\nexit 139\n")
    path = tmp_path / "m.tflite"
    path.write_bytes(micro_model(LayerShape("linear", None), 8, 8))
    device = _device(phone, tmp_path, benchmark_binary=str(fake))
    with pytest.raises(DeviceError, match=r"exit status 139.*Segmentation fault"):
        device.time_model(str(path), threads=1, max_seconds=0.05)


def test_a_transient_drop_is_retried(phone, tmp_path):
    device = _device(phone, tmp_path)
    device.facts(1)
    phone.drop_after(1, stay_down=False)
    assert device.shell("echo again") == ("again\n", 0)
    assert phone.drops == 1


def _cache_keys(path):
    with open(path) as f:
        return [k for line in f.read().splitlines()[1:] for k in [json.loads(line)["key"]] if k]


@pytest.mark.slow
def test_dropped_connection_mid_profile_resumes(phone, phone_spec, tmp_path):
    graph = analyze(ResidualNet(), ResidualNet.input_shape)
    cache = str(tmp_path / "p.cache")

    def device(**kw):
        made = AdbDevice(phone_spec, benchmark_binary=STAND_IN,
                         key_path=str(tmp_path / "keys" / "adbkey"), **kw)
        if made.kind == "server":
            made.transport.offline_wait_s = 1  # the phone stays away: no use waiting long
        return made

    phone.drop_after(4)  # chmod, facts, then the first batch of samples, cut in the second
    with pytest.raises(DeviceError, match="lost the connection.*run the same command again"):
        profile_model(graph, device(retries=1), name="residual", cache=cache, **FAST)
    first = _cache_keys(cache)
    assert len(first) == 16  # one whole batch, in the cache before the next was timed
    phone.restore()  # the adb server reconnects it by itself within seconds
    device, before = device(), len(phone.commands)
    if device.kind == "server":
        device.transport.offline_wait_s = 30
    profile = profile_model(graph, device, name="residual", cache=cache, **FAST)
    keys = _cache_keys(cache)
    assert keys[:len(first)] == first and len(keys) == len(set(keys))  # none lost or twice
    assert profile.resumed == len(first)
    loops = [_loop(c) for c in phone.commands[before:] if "--graph=" in c]
    # the second run timed only what was missing, in batches: one loop each, every
    # model once (one round) between two bursts of the reference, model 0
    assert all(l[0::2] == [0] * (len(l) // 2 + 1) and sorted(l[1::2]) == list(range(1, len(l) // 2 + 1))
               for l in loops)
    assert sum(len(l) // 2 for l in loops) == len(keys) - len(first)
    assert profile.device["model"] == "Pixel 2" and profile.validation["random"]["measured_ms"]


# --- the CLI end to end --------------------------------------------------------

def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(params=["direct", "server"])
def phone_spec(request, phone, tmp_path, monkeypatch):
    """The loopback phone as the CLI names it: adbd directly (adb:HOST:PORT), or
    through Debian's adb server, ``adb connect``ed to it (adb)."""
    monkeypatch.setenv("HOME", str(tmp_path))  # the adb key is made in ~/.android
    if request.param == "direct":
        yield phone.spec
        return
    if not DebianAdbServer.available:
        pytest.skip("Debian's adb (make test installs it)")
    with DebianAdbServer(tmp_path / "server-home") as server:
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
        monkeypatch.delenv("ANDROID_SERIAL", raising=False)
        server.connect(phone)
        yield "adb"


@pytest.mark.slow
def test_profile_bench_and_verify_on_the_phone(phone, phone_spec, tmp_path, capsys):
    profile = str(tmp_path / "phone.profile.json")
    common = ["--device", phone_spec, "--benchmark-binary", STAND_IN]
    code, out, err = _run(capsys, "profile", "--model", "tests.small_models:residual_net", "-o",
                          profile, "--grid", "2", "--calibrate", "8", "--validate", "3",
                          "--rounds", "1", "--round-to", "8", "-q", *common)
    assert code == 0, err
    # directly, itpl signs with (and makes) ~/.android/adbkey; through the
    # server, the server's key is the only one the phone ever sees
    assert os.path.exists(tmp_path / ".android" / "adbkey") == (phone_spec != "adb")
    assert phone.offered_keys == 1
    p = read_profile(profile)
    assert p.device["device"] == "adb" and p.device["model"] == "Pixel 2"
    assert p.device["connection"] == phone_spec and "Pixel 2" in out

    if phone_spec == "adb":
        # Through the server, bench what was profiled; prune --verify times its
        # candidates with the same burst loop, end to end below on adbd directly.
        _bench_on_the_phone(capsys, phone, common, tmp_path, [])
        return

    # prune to a latency budget in ms and verify where the profile was measured
    prefix = str(tmp_path / "lat")
    budget = 0.7 * p.reference["ms"]
    code, out, err = _run(capsys, "prune", "--model", "tests.small_models:residual_net",
                          "--latency-ms", f"{budget:.6f}", "--profile", profile, "--verify",
                          "--samples", "16", "-o", prefix, "-q")
    assert code == 0, err
    plan = json.load(open(prefix + ".plan.json"))
    assert plan["budget"]["verified"]["device"]["model"] == "Pixel 2"
    assert plan["budget"]["refined"]["steps"]  # candidates were timed on the phone
    assert f"verified on {phone_spec.replace(':', '-')}" in out

    # the profile is refused for the local CPU
    code, out, err = _run(capsys, "prune", "--model", "tests.small_models:residual_net",
                          "--latency-ratio", "0.6", "--profile", profile, "--device", "local",
                          "--verify", "--samples", "8", "-o", str(tmp_path / "x"), "-q")
    assert code == 1 and "another device" in err

    _bench_on_the_phone(capsys, phone, common, tmp_path, [prefix + ".plan.json"])


def _bench_on_the_phone(capsys, phone, common, tmp_path, plans):
    """bench batch 1/4/8 of the unpruned model and `plans` on the phone."""
    results = str(tmp_path / "bench.json")
    before = len([c for c in phone.commands if "--graph=" in c])
    code, out, err = _run(capsys, "bench", "tests.small_models:residual_net", *plans,
                          "--batch", "1", "4", "8", "--rounds", "3", "--json", results,
                          *common)
    assert code == 0, err
    data = json.load(open(results))
    assert data["device"]["model"] == "Pixel 2"
    assert {(r["model"], r["batch"]) for r in data["results"]} >= {
        ("tests.small_models:residual_net", 1), ("tests.small_models:residual_net", 8)}
    # every model at every batch ran on the phone
    assert len([c for c in phone.commands if "--graph=" in c]) - before >= 3 * (1 + len(plans))


def test_cli_error_for_an_absent_phone(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "m.tflite"
    path.write_bytes(micro_model(LayerShape("linear", None), 8, 8))
    code, out, err = _run(capsys, "bench", "--device", "adb:127.0.0.1:1", str(path))
    assert code == 1 and err.startswith("itpl: error: cannot connect to adb:127.0.0.1:1"), err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))  # no server there
    code, out, err = _run(capsys, "bench", "--device", "adb", str(path))
    assert code == 1 and err.startswith("itpl: error: no adb server answers on 127.0.0.1:"), err
    assert "adb start-server" in err and len(err.strip().splitlines()) == 1
