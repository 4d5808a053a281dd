"""An Android phone over ADB: models are pushed to ``/data/local/tmp`` and timed
with TFLite's ``benchmark_model`` tool on the phone.

The transport is ``adb-shell``, which speaks the ADB protocol to the phone's
adbd directly: ``adb:HOST[:PORT]`` over TCP (wireless debugging, or ``adb
tcpip 5555``) and ``adb-usb[:SERIAL]`` over USB (the ``usb`` extra). The RSA key
is the adb tool's, ``~/.android/adbkey``, made the way adb makes it when absent,
so a phone that already trusts this computer's adb trusts itpl too.

Every operation that loses the connection reconnects and repeats (pushing,
running and removing a model can be repeated safely); when the phone stays
unreachable it stops with an error, and an interrupted profile resumes from its
sample cache on the next run.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shlex
import socket
import time

from itpl.devices.base import Device, Timing
from itpl.devices.benchmark_output import parse_benchmark_output

REMOTE_DIR = "/data/local/tmp"
DEFAULT_BINARY = f"{REMOTE_DIR}/benchmark_model"
PUSHED_BINARY = f"{REMOTE_DIR}/itpl_benchmark_model"
BINARY_HELP = (
    "download the Android build of TFLite's benchmark_model for the phone's ABI (for arm64-v8a: "
    "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/tools/"
    "nightly/latest/android_aarch64_benchmark_model; the list is on "
    "https://ai.google.dev/edge/litert/models/measurement) and pass it with --benchmark-binary "
    "FILE, or push it yourself: adb push FILE /data/local/tmp/benchmark_model && "
    "adb shell chmod +x /data/local/tmp/benchmark_model")
_RC_MARK = "ITPL_EXIT="


class DeviceError(ValueError):
    """The phone is unreachable, refused us, or its tools failed (a one-line reason)."""


class _KeyRefused(DeviceError):
    """The phone did not allow our key: retrying won't help until the user taps."""


def parse_spec(spec: str) -> tuple[str, str, int | None]:
    """``("tcp", host, port)`` or ``("usb", serial or "", None)`` from a device spec."""
    if spec == "adb-usb" or spec.startswith("adb-usb:"):
        return "usb", spec[len("adb-usb:"):], None
    if spec.startswith("adb:"):
        host, _, port = spec[4:].rpartition(":") if spec.count(":") >= 2 else (spec[4:], "", "5555")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"'{spec}' is not an adb device; write adb:HOST:PORT (e.g. "
                             "adb:192.168.1.20:5555) or adb-usb[:SERIAL]")
        return "tcp", host, int(port)
    raise ValueError(f"'{spec}' is not an adb device; write adb:HOST:PORT or adb-usb[:SERIAL]")


def load_signer(key_path: str | None = None):
    """The adb tool's RSA signer at ``key_path`` (default ``~/.android/adbkey``),
    created with its public half when absent, as adb itself does."""
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_cryptography import CryptographySigner

    path = key_path or os.path.join(os.path.expanduser("~"), ".android", "adbkey")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        keygen(path)
    elif not os.path.exists(path + ".pub"):
        from adb_shell.auth.keygen import write_public_keyfile

        write_public_keyfile(path, path + ".pub")
    return CryptographySigner(path)


def _tcp_transport(host: str, port: int):
    """adb-shell's TCP transport, made to notice a closed connection at once.

    Its reader takes an empty read (the peer closed) as "no data yet" and polls
    until the read timeout, a minute for a benchmark; this one raises instead.
    """
    from adb_shell.transport.tcp_transport import TcpTransport

    class ClosingTcpTransport(TcpTransport):
        def bulk_read(self, numbytes, transport_timeout_s):
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise ConnectionResetError(f"{host}:{port} closed the connection")
            return data

    return ClosingTcpTransport(host, port)


def _adb_server_running(port: int = 5037) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class AdbDevice(Device):
    """A phone reached over ADB; times models with ``benchmark_model``.

    Parameters
    ----------
    spec : str
        ``adb:HOST[:PORT]`` or ``adb-usb[:SERIAL]``.
    benchmark_binary : str, optional
        A local ``benchmark_model`` build to push (to ``/data/local/tmp``);
        by default ``/data/local/tmp/benchmark_model`` on the phone is used.
    cpu_mask : str, optional
        Hex CPU mask for ``taskset`` (e.g. ``f0``: the big cores of many phones).
    key_path : str, optional
        RSA key (default ``~/.android/adbkey``).
    auth_timeout_s : float
        How long to wait for the user to allow USB debugging on the phone.
    retries : int
        Reconnections tried before an operation gives up.
    """

    def __init__(self, spec: str, *, benchmark_binary: str | None = None,
                 cpu_mask: str | None = None, key_path: str | None = None,
                 auth_timeout_s: float = 30.0, retries: int = 2, connect_timeout_s: float = 10.0):
        self.spec = spec
        self.transport, self.host, self.port = parse_spec(spec)
        if cpu_mask is not None:
            cpu_mask = cpu_mask.lower().removeprefix("0x")
            if not cpu_mask or any(c not in "0123456789abcdef" for c in cpu_mask) \
                    or int(cpu_mask, 16) == 0:
                raise ValueError(f"--cpu-mask '{cpu_mask}' is not a non-zero hex mask like f0")
        if benchmark_binary is not None and not os.path.isfile(benchmark_binary):
            raise FileNotFoundError(f"no benchmark_model binary at '{benchmark_binary}'")
        self.benchmark_binary, self.cpu_mask, self.key_path = benchmark_binary, cpu_mask, key_path
        self.auth_timeout_s, self.retries = auth_timeout_s, retries
        self.connect_timeout_s = connect_timeout_s
        self.name = spec.replace(":", "-")
        self._adb = None
        self._reached = False  # connected at least once: later failures are drops
        self._binary: str | None = None
        self._facts: dict | None = None

    # --- connection ------------------------------------------------------------

    def _connect(self):
        if self.transport == "usb":
            adb = self._open_usb()
        else:
            from adb_shell.adb_device import AdbDevice as Adb

            adb = Adb(_tcp_transport(self.host, self.port),
                      default_transport_timeout_s=self.connect_timeout_s)
        asked = []  # adb-shell calls back just before it offers our key to the user
        try:
            adb.connect(rsa_keys=[load_signer(self.key_path)], auth_timeout_s=self.auth_timeout_s,
                        transport_timeout_s=self.connect_timeout_s,
                        auth_callback=lambda _: asked.append(True))
        except Exception as exc:  # noqa: B902 - adb-shell's errors share no base class
            adb.close()
            if asked:
                raise _KeyRefused(
                    f"{self.spec} did not accept this computer's key within "
                    f"{self.auth_timeout_s:g} s: unlock the phone, tap 'Allow' in its 'Allow USB "
                    "debugging?' prompt (tick 'Always allow from this computer'), then run the "
                    "command again") from None
            raise DeviceError(f"cannot connect to {self.spec} ({type(exc).__name__}: {exc}); "
                              "check that the phone is on, USB or wireless debugging is enabled "
                              "and the address is right") from None
        # adb-shell writes a message's header and payload separately; without
        # TCP_NODELAY each exchange waits out the peer's delayed ACK (~40 ms).
        sock = getattr(getattr(adb, "_io_manager", None), "_transport", None)
        sock = getattr(sock, "_connection", None)
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._adb = adb

    def _open_usb(self):
        try:
            from adb_shell.adb_device import AdbDeviceUsb

            return AdbDeviceUsb(serial=self.host or None,
                                default_transport_timeout_s=self.connect_timeout_s)
        except Exception as exc:  # noqa: B902 - libusb errors have no common base here
            text = f"{type(exc).__name__}: {exc}"
            if "usb" in text.lower() and "install" in text.lower():
                raise DeviceError("USB phones need the usb extra: pip install 'itpl[usb]'") from None
            if "busy" in text.lower() or _adb_server_running():
                raise DeviceError("the adb server holds the phone's USB interface; run "
                                  "'adb kill-server' and try again") from None
            raise DeviceError(f"no USB phone found{' with serial ' + self.host if self.host else ''}"
                              f" ({text}); check the cable and that USB debugging is on") from None

    def close(self) -> None:
        if self._adb is not None:
            try:
                self._adb.close()
            finally:
                self._adb = None

    def _retrying(self, what: str, operation):
        """Run ``operation(adb)``, reconnecting when the connection drops.

        A phone never reached, or one that refuses our key, fails at once; so
        does an error the phone reports (a full disk), which a retry won't mend.
        """
        from adb_shell import exceptions as adb_errors

        lost = (OSError, adb_errors.TcpTimeoutException, adb_errors.AdbConnectionError,
                adb_errors.AdbTimeoutError, adb_errors.InvalidResponseError,
                adb_errors.InvalidCommandError, adb_errors.InvalidChecksumError,
                adb_errors.UsbReadFailedError, adb_errors.UsbWriteFailedError)
        error = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(2.0, 0.5 * 2 ** (attempt - 1)))
            if self._adb is None:
                try:
                    self._connect()
                except DeviceError as exc:
                    if not self._reached or isinstance(exc, _KeyRefused):
                        raise
                    error = exc
                    continue
                self._reached = True
            try:
                return operation(self._adb)
            except lost as exc:
                error = exc
                self.close()
            except Exception as exc:  # noqa: B902 - what the phone reports, e.g. push FAIL
                raise DeviceError(f"{self.spec} failed while {what}: {type(exc).__name__}: "
                                  f"{exc}") from None
        raise DeviceError(f"lost the connection to {self.spec} while {what} ({error}); reconnect "
                          "the phone and run the same command again (a profile resumes from its "
                          "cache)") from None

    def shell(self, command: str, *, timeout_s: float = 60.0, what: str | None = None) -> tuple[str, int]:
        """(output, exit status) of a shell command on the phone."""
        def run(adb):
            out = adb.shell(f"({command}); echo {_RC_MARK}$?", timeout_s=timeout_s,
                            read_timeout_s=timeout_s, transport_timeout_s=timeout_s)
            return out

        out = self._retrying(what or f"running '{command}'", run)
        head, mark, rc = out.rpartition(_RC_MARK)
        if not mark:
            raise DeviceError(f"the shell on {self.spec} ended '{command}' without an exit status")
        return head, int(rc.strip() or 1)

    def push(self, local: str, remote: str, *, mode: int = 0o644) -> None:
        size = os.path.getsize(local)
        timeout = 30.0 + size / 1e6  # at least 1 MB/s
        self._retrying(f"pushing {os.path.basename(local)}",
                       lambda adb: adb.push(local, remote, st_mode=0o100000 | mode,
                                            transport_timeout_s=timeout, read_timeout_s=timeout))

    # --- benchmark_model -------------------------------------------------------

    def _benchmark_binary(self) -> str:
        if self._binary is None:
            if self.benchmark_binary:
                self.push(self.benchmark_binary, PUSHED_BINARY, mode=0o755)
                out, rc = self.shell(f"chmod 755 {PUSHED_BINARY}")
                if rc:
                    raise DeviceError(f"cannot make {PUSHED_BINARY} executable: {out.strip()}")
                self._binary = PUSHED_BINARY
            else:  # the user's own, else the one an earlier itpl run pushed
                out, _ = self.shell(f"for b in {DEFAULT_BINARY} {PUSHED_BINARY}; do "
                                    "test -x $b && echo $b && break; done")
                if not out.strip():
                    raise DeviceError(f"no benchmark_model on {self.spec} at {DEFAULT_BINARY}: "
                                      + BINARY_HELP)
                self._binary = out.strip().splitlines()[0]
        return self._binary

    def facts(self, threads: int) -> dict:
        """Phone model, Android version, ABI, cores and the benchmark binary's
        identity (its SHA-256 on the phone), with ``threads`` and the CPU mask."""
        if self._facts is None:
            binary = self._benchmark_binary()
            keys = {"manufacturer": "ro.product.manufacturer", "model": "ro.product.model",
                    "android": "ro.build.version.release", "abi": "ro.product.cpu.abi"}
            script = "; ".join(f"echo {k}=$(getprop {p})" for k, p in keys.items())
            script += f"; echo cores=$(nproc); echo binary=$(sha256sum {binary})"
            out, rc = self.shell(script, what="reading the phone's properties")
            found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            digest = found.get("binary", "").split(" ")[0]
            self._facts = {
                "device": "adb", "connection": self.spec,
                "manufacturer": found.get("manufacturer", "").strip(),
                "model": found.get("model", "").strip(),
                "android": found.get("android", "").strip(),
                "abi": found.get("abi", "").strip(),
                "cores": int(found["cores"]) if found.get("cores", "").strip().isdigit() else None,
                "runtime": "benchmark_model",
                "binary": f"benchmark_model sha256:{digest[:16]}" if digest else "benchmark_model",
            }
        return {**self._facts, "threads": threads, "cpu_mask": self.cpu_mask}

    def time_model(self, path: str, *, threads: int, warmup: int = 5, min_repeats: int = 20,
                   max_seconds: float = 10.0) -> Timing:
        """Push ``path``, run ``benchmark_model`` on it and remove it again.

        The runs last at least ``min(max_seconds, 0.5)`` s and ``min_repeats``
        invocations; the result's median is the tool's average where it prints
        no median (most releases).
        """
        binary = self._benchmark_binary()
        with open(path, "rb") as f:
            digest = hashlib.sha1(f.read()).hexdigest()[:12]
        remote = posixpath.join(REMOTE_DIR, f"itpl-{digest}.tflite")
        self.push(path, remote)
        command = (f"{binary} --graph={remote} --num_threads={threads} --warmup_runs={max(1, warmup)}"
                   f" --warmup_min_secs=0 --num_runs={min_repeats}"
                   f" --min_secs={min(max_seconds, 0.5):g} --max_secs={max_seconds:g}")
        if self.cpu_mask:
            command = f"taskset {self.cpu_mask} {command}"
        out, rc = self.shell(f"{command} 2>&1", timeout_s=60.0 + 3 * max_seconds,
                             what=f"timing {os.path.basename(path)}")
        try:
            self.shell(f"rm -f {shlex.quote(remote)}", what="removing a pushed model")
        except DeviceError:
            pass  # the timing stands; the next command meets the lost connection
        try:
            result = parse_benchmark_output(out)
        except ValueError as exc:
            raise DeviceError(f"benchmark_model failed on {os.path.basename(path)} "
                              f"(exit status {rc}): {exc}") from None
        def ms(us):  # releases without a statistics line give the average only
            return result.avg_ms if us is None else us / 1e3

        return Timing(result.median_us / 1e3, ms(result.min_us), ms(result.max_us),
                      result.count or min_repeats)
