"""The adb-server transport against Debian's real adb server (on a private
port and HOME), which is ``adb connect``ed to the loopback phone: the
host-protocol client, itpl's phone device through it, and its errors.
The CLI end to end through the server is in test_adb.py."""


import numpy as np
import pytest

from itpl.deploy.devices import get_device
from itpl.deploy.devices.adb import AdbDevice, DeviceError
from itpl.deploy.devices.adb_server import AdbServer, server_port
from itpl.deploy.flatbuffer import LayerShape, micro_model
from loopback.adb_server import DebianAdbServer, free_port
from loopback.launcher import TOOL
from loopback.peer import LoopbackPhone

STAND_IN = TOOL  # the stand-in benchmark_model script
pytestmark = pytest.mark.skipif(not DebianAdbServer.available,
                                reason="Debian's adb (make test installs it)")


@pytest.fixture
def phone(tmp_path):
    with LoopbackPhone(tmp_path / "phone") as p:
        yield p


@pytest.fixture
def server(tmp_path, monkeypatch):
    with DebianAdbServer(tmp_path / "server-home") as s:
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(s.port))
        monkeypatch.delenv("ANDROID_SERIAL", raising=False)
        yield s


def test_host_protocol_against_debian_adb(server, phone, tmp_path):
    client = AdbServer()
    assert client.port == server.port == server_port()
    assert client.version() > 0 and client.devices() == []
    serial = server.connect(phone)
    assert client.devices() == [(serial, "device")]
    assert client.shell(serial, "echo out; echo err >&2; getprop ro.product.model") == \
        "out\nerr\nPixel 2\n"
    assert client.shell("", "echo any") == "any\n"  # host:transport-any
    blob = np.random.default_rng(1).bytes(300_000)  # several 64 KiB DATA chunks
    (tmp_path / "blob").write_bytes(blob)
    client.push(serial, str(tmp_path / "blob"), "/data/local/tmp/blob", mode=0o640)
    target = phone.device_path("/data/local/tmp/blob")
    assert target.read_bytes() == blob and target.stat().st_mode & 0o777 == 0o640
    # several files in one sync session, the answers read at the end
    files, syncs = [], phone.sync_sessions
    for i in range(3):
        (tmp_path / f"f{i}").write_bytes(blob[i * 1000:])
        files.append((str(tmp_path / f"f{i}"), f"/data/local/tmp/many/f{i}"))
    client.push_many(serial, files)
    assert phone.sync_sessions - syncs == 1
    assert [phone.device_path(r).read_bytes() for _, r in files] == [blob[i * 1000:] for i in range(3)]
    # the phone saw only the server's key, offered once: itpl brought none of its own
    assert phone.offered_keys == 1


def test_phone_device_through_the_server(server, phone, tmp_path):
    serial = server.connect(phone)
    for spec in ("adb", f"adb-server:{serial}"):
        device = get_device(spec, benchmark_binary=STAND_IN)
        assert device.shell("echo hello; exit 3") == ("hello\n", 3)
        facts = device.facts(2)
        assert (facts["model"], facts["abi"], facts["connection"]) == ("Pixel 2", "arm64-v8a", spec)
    path = tmp_path / "conv.tflite"
    path.write_bytes(micro_model(LayerShape("conv", (14, 14), activation="relu"), 32, 32))
    t = device.time_model(str(path), threads=1, min_repeats=30, max_seconds=0.1)
    assert t.repeats >= 30 and 0 < t.min_ms <= t.median_ms <= t.max_ms
    assert t.statistic == "average"  # the stand-in prints TFLite's layout without a median
    assert not list(phone.device_path("/data/local/tmp").glob("*.tflite"))
    # a timing sequence: one sync session for its models, one shell command
    before, syncs = device.round_trips, phone.sync_sessions
    small = tmp_path / "small.tflite"
    small.write_bytes(micro_model(LayerShape("conv", (14, 14)), 32, 8))
    times = device.time_bursts([str(path), str(small), str(path)], threads=1, burst_ms=5)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert device.round_trips - before == 2 and phone.sync_sessions - syncs == 1
    assert phone.offered_keys == 1


@pytest.mark.parametrize("layout,statistic", [("percentiles", "median"), ("litert", "median")])
def test_other_tool_layouts_and_the_op_profile(server, phone, tmp_path, monkeypatch, layout,
                                               statistic):
    monkeypatch.setenv("ITPL_STANDIN_LAYOUT", layout)  # the phone's shell inherits it
    server.connect(phone)
    device = AdbDevice("adb", benchmark_binary=STAND_IN)
    path = tmp_path / "m.tflite"
    path.write_bytes(micro_model(LayerShape("conv", (14, 14), activation="relu"), 16, 16))
    t = device.time_model(str(path), threads=1, min_repeats=20, max_seconds=0.05)
    assert t.statistic == statistic and t.min_ms <= t.median_ms <= t.max_ms
    result = device.time_ops(str(path), threads=1, min_repeats=20, max_seconds=0.05)
    assert [op.node_type for op in result.ops] == ["TfLiteXNNPackDelegate"]
    assert any("--enable_op_profiling=true" in c for c in phone.commands)


def test_a_drop_is_retried_through_the_server(server, phone):
    server.connect(phone)
    device = AdbDevice("adb", benchmark_binary=STAND_IN)
    device.facts(1)
    phone.drop_after(1, stay_down=False)  # the server reconnects the phone by itself
    assert device.shell("echo again") == ("again\n", 0)
    assert phone.drops == 1


def test_server_errors_say_what_to_do(server, phone, tmp_path, monkeypatch):
    with pytest.raises(DeviceError, match="needs exactly one phone.*lists none.*adb connect"):
        AdbDevice("adb").shell("true")
    serial = server.connect(phone)
    with pytest.raises(DeviceError, match=rf"no phone 'HT7A1B' \(it lists {serial} \(device\)\)"):
        AdbDevice("adb:HT7A1B").shell("true")
    with pytest.raises(DeviceError, match="write adb:phone.local:5555"):
        AdbDevice("adb:phone.local").shell("true")
    with LoopbackPhone(tmp_path / "phone2") as second:
        server.connect(second)
        with pytest.raises(DeviceError, match="pick one with --device adb:SERIAL"):
            AdbDevice("adb").shell("true")
        monkeypatch.setenv("ANDROID_SERIAL", serial)  # as adb itself picks one
        assert AdbDevice("adb").shell("echo one")[0] == "one\n"
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))
    with pytest.raises(DeviceError, match="no adb server answers.*adb start-server"):
        AdbDevice("adb").shell("true")


def test_unauthorized_phone_on_the_server(server, tmp_path):
    with LoopbackPhone(tmp_path / "locked", accept_new_keys=False) as locked:
        server.adb("connect", f"127.0.0.1:{locked.port}", check=False)
        with pytest.raises(DeviceError, match="tap 'Allow'"):
            AdbDevice(f"adb-server:127.0.0.1:{locked.port}").shell("true")
        assert not locked.commands
