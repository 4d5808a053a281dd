"""An Android phone over ADB: models are pushed to ``/data/local/tmp`` and timed
with TFLite's or LiteRT's ``benchmark_model`` tool on the phone.

The phone logic (pushing, running and parsing ``benchmark_model``, facts)
lives here, over one of two transports (``adb_transport.Transport``):

- ``adb`` / ``adb:SERIAL`` / ``adb-server:SERIAL``: the adb server already
  running on this computer (``adb_server.py``), which keeps serving Android
  Studio and the user's other tools;
- ``adb:HOST:PORT`` / ``adb-usb[:SERIAL]``: the phone's adbd directly, through
  ``adb-shell`` (``adb_direct.py``), where no adb server runs.

Every operation that loses the connection reconnects and repeats (pushing,
running and removing a model can be repeated safely); when the phone stays
unreachable it stops with an error, and an interrupted profile resumes from its
sample cache on the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import secrets
import shlex
import time

from itpl.deploy.devices.adb_transport import ConnectionLost, DeviceError, KeyRefused, Transport
from itpl.deploy.devices.base import Device, Timing
from itpl.deploy.devices.benchmark_output import BenchmarkResult, parse_benchmark_output

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
_BURST_MARK = "ITPL_BURST="
# Characters of model numbers in one shell loop: old adbd takes 4096-byte service names.
LOOP_CHARS = 3000


def parse_spec(spec: str) -> tuple[str, str, int | None]:
    """``(kind, address, port)`` of a phone spec.

    - ``adb``: ``("server", "", None)``, the only phone on the running adb server;
    - ``adb:SERIAL`` (no colon in SERIAL) and ``adb-server[:SERIAL]`` (any
      serial, e.g. ``192.168.1.20:37099`` of a wireless-debugging phone):
      ``("server", SERIAL, None)``;
    - ``adb:HOST:PORT``: ``("tcp", HOST, PORT)``, adbd directly over TCP;
    - ``adb-usb[:SERIAL]``: ``("usb", SERIAL, None)``, adbd directly over USB.
    """
    if spec == "adb-usb" or spec.startswith("adb-usb:"):
        return "usb", spec[len("adb-usb:"):], None
    if spec == "adb-server" or spec.startswith("adb-server:"):
        return "server", spec[len("adb-server:"):], None
    if spec == "adb":
        return "server", "", None
    if spec.startswith("adb:") and spec.count(":") == 1 and spec[4:]:
        return "server", spec[4:], None
    if spec.startswith("adb:") and spec.count(":") >= 2:
        host, _, port = spec[4:].rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return "tcp", host, int(port)
    raise ValueError(f"'{spec}' is not an adb device; write adb (the adb server's only phone), "
                     "adb:SERIAL, adb:HOST:PORT (e.g. adb:192.168.1.20:5555) or adb-usb[:SERIAL]")


class AdbDevice(Device):
    """A phone reached over ADB; times models with ``benchmark_model``.

    Parameters
    ----------
    spec : str
        ``adb``, ``adb:SERIAL`` or ``adb-server:SERIAL`` (through the running
        adb server), ``adb:HOST:PORT`` or ``adb-usb[:SERIAL]`` (directly, with
        ``adb-shell``); see ``parse_spec``.
    benchmark_binary : str, optional
        A local ``benchmark_model`` build to push (to ``/data/local/tmp``);
        by default ``/data/local/tmp/benchmark_model`` on the phone is used.
    cpu_mask : str, optional
        Hex CPU mask for ``taskset`` (e.g. ``f0``: the big cores of many phones).
    key_path : str, optional
        RSA key of the direct transports (default ``~/.android/adbkey``).
    auth_timeout_s : float
        How long to wait for the user to allow USB debugging on the phone.
    retries : int
        Reconnections tried before an operation gives up.
    server_port : int, optional
        The adb server's port (default ``$ANDROID_ADB_SERVER_PORT`` or 5037).
    """

    def __init__(self, spec: str, *, benchmark_binary: str | None = None,
                 cpu_mask: str | None = None, key_path: str | None = None,
                 auth_timeout_s: float = 30.0, retries: int = 2, connect_timeout_s: float = 10.0,
                 server_port: int | None = None):
        self.spec = spec
        self.kind, address, port = parse_spec(spec)
        if cpu_mask is not None:
            cpu_mask = cpu_mask.lower().removeprefix("0x")
            if not cpu_mask or any(c not in "0123456789abcdef" for c in cpu_mask) \
                    or int(cpu_mask, 16) == 0:
                raise ValueError(f"`cpu_mask` '{cpu_mask}' is not a non-zero hex mask like f0")
        if benchmark_binary is not None and not os.path.isfile(benchmark_binary):
            raise FileNotFoundError(f"no benchmark_model binary at '{benchmark_binary}'")
        self.benchmark_binary, self.cpu_mask = benchmark_binary, cpu_mask
        self.retries = retries
        self.name = spec.replace(":", "-")
        if self.kind == "server":
            from itpl.deploy.devices.adb_server import ServerTransport

            self.transport: Transport = ServerTransport(spec, address, port=server_port)
        else:
            from itpl.deploy.devices.adb_direct import DirectTransport

            self.transport = DirectTransport(spec, self.kind, address, port, key_path=key_path,
                                             auth_timeout_s=auth_timeout_s,
                                             connect_timeout_s=connect_timeout_s)
        self._reached = False  # connected at least once: later failures are drops
        self.round_trips = 0  # shell commands and sync (push) sessions opened on the phone
        self.pushed_bytes = 0
        self._binary: str | None = None
        self._facts: dict | None = None

    # --- connection ------------------------------------------------------------

    def close(self) -> None:
        self.transport.close()

    def _retrying(self, what: str, operation):
        """Run ``operation()``, reconnecting when the connection drops.

        A phone never reached, or one that refuses our key, fails at once; so
        does an error the phone reports (a full disk), which a retry won't mend.
        """
        error = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(2.0, 0.5 * 2 ** (attempt - 1)))
            try:
                self.transport.connect()
            except ConnectionLost as exc:
                error = exc
                continue
            except DeviceError as exc:
                if not self._reached or isinstance(exc, KeyRefused):
                    raise
                error = exc
                continue
            self._reached = True
            try:
                return operation()
            except ConnectionLost as exc:
                error = exc
                self.transport.close()
            except DeviceError as exc:
                raise DeviceError(f"{self.spec} failed while {what}: {exc}") from None
        raise DeviceError(f"lost the connection to {self.spec} while {what} ({error}); reconnect "
                          "the phone and run the same command again (a profile resumes from its "
                          "cache)") from None

    def _shell_once(self, command: str, timeout_s: float) -> tuple[str, int]:
        self.round_trips += 1
        out = self.transport.shell(f"({command}); echo {_RC_MARK}$?", timeout_s=timeout_s)
        head, mark, rc = out.rpartition(_RC_MARK)
        if not mark:  # the stream ended before the command did: a dropped connection
            raise ConnectionLost(f"the shell ended '{command[:60]}' without its exit status")
        return head, int(rc.strip() or 1)

    def shell(self, command: str, *, timeout_s: float = 60.0,
              what: str | None = None) -> tuple[str, int]:
        """(output, exit status) of a shell command on the phone."""
        return self._retrying(what or f"running '{command}'",
                              lambda: self._shell_once(command, timeout_s))

    def _push_once(self, files: list[tuple[str, str]], mode: int) -> None:
        self.round_trips += 1  # one sync session, however many files
        size = sum(os.path.getsize(local) for local, _ in files)
        self.transport.push_many(files, mode=mode, timeout_s=30.0 + size / 1e6)  # >= 1 MB/s
        self.pushed_bytes += size

    def push(self, local: str, remote: str, *, mode: int = 0o644) -> None:
        self._retrying(f"pushing {os.path.basename(local)}",
                       lambda: self._push_once([(local, remote)], mode))

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
            # --all: every core the phone has, as os.cpu_count() on the local
            # device; plain nproc drops cores a phone has switched off or that
            # the shell's affinity excludes, so it changes from run to run
            script += (f"; echo cores=$(nproc --all 2>/dev/null || nproc)"
                       f"; echo binary=$(sha256sum {binary})")
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

    def run_benchmark(self, path: str, *, threads: int, warmup: int = 5, min_repeats: int = 20,
                      max_seconds: float = 10.0, flags: tuple[str, ...] = ()) -> BenchmarkResult:
        """Push ``path``, run ``benchmark_model`` on it (with extra ``flags``),
        remove it again, and read the tool's output.

        The runs last at least ``min(max_seconds, 0.5)`` s and ``min_repeats``
        invocations.
        """
        binary = self._benchmark_binary()
        with open(path, "rb") as f:
            digest = hashlib.sha1(f.read()).hexdigest()[:12]
        remote = posixpath.join(REMOTE_DIR, f"itpl-{digest}.tflite")
        self.push(path, remote)
        command = (f"{binary} --graph={remote} --num_threads={threads} --warmup_runs={max(1, warmup)}"
                   f" --warmup_min_secs=0 --num_runs={min_repeats}"
                   f" --min_secs={min(max_seconds, 0.5):g} --max_secs={max_seconds:g}")
        command = " ".join([command, *flags])
        if self.cpu_mask:
            command = f"taskset {self.cpu_mask} {command}"
        # removed by the same command, which keeps the tool's exit status
        out, rc = self.shell(f"{command} 2>&1; s=$?; rm -f {shlex.quote(remote)}; exit $s",
                             timeout_s=60.0 + 3 * max_seconds,
                             what=f"timing {os.path.basename(path)}")
        try:
            return parse_benchmark_output(out)
        except ValueError as exc:
            raise DeviceError(f"benchmark_model failed on {os.path.basename(path)} "
                              f"(exit status {rc}): {exc}") from None

    def time_model(self, path: str, *, threads: int, warmup: int = 5, min_repeats: int = 20,
                   max_seconds: float = 10.0) -> Timing:
        """Latency of ``path`` from ``benchmark_model`` (see ``run_benchmark``).

        ``median_ms`` is the tool's median where it prints one, else its
        average, and ``statistic`` says which.
        """
        result = self.run_benchmark(path, threads=threads, warmup=warmup,
                                    min_repeats=min_repeats, max_seconds=max_seconds)

        def ms(us):  # releases without a statistics line give the average only
            return result.avg_ms if us is None else us / 1e3

        return Timing(result.median_us / 1e3, ms(result.min_us), ms(result.max_us),
                      result.count or min_repeats, statistic=result.median_kind)

    def time_bursts(self, sequence: list[str], *, threads: int, burst_ms: float,
                    min_runs: int = 1) -> list[float]:
        """See :meth:`Device.time_bursts`: two round trips for the whole sequence.

        The distinct models go in one sync session into a folder of their own
        (``0.tflite``, ...); one shell command loops over the sequence on the
        phone, ``benchmark_model`` once per burst in its order (a reference
        between every two models, as :mod:`itpl.deploy.timing` orders them), each
        output after a marker naming its model, then removes the folder. Past
        ``LOOP_CHARS`` of model numbers (about 1000 bursts), one more command.
        """
        binary = self._benchmark_binary()
        models = list(dict.fromkeys(sequence))
        number = {path: i for i, path in enumerate(models)}
        order = [number[path] for path in sequence]
        folder = posixpath.join(REMOTE_DIR, f"itpl-run-{secrets.token_hex(4)}")
        seconds = burst_ms / 1e3
        command = (f"{binary} --graph={folder}/$m.tflite --num_threads={threads} --warmup_runs=1"
                   f" --warmup_min_secs=0 --num_runs={min_runs} --min_secs={seconds:g}"
                   f" --max_secs={max(4 * seconds, 1.0):g}")
        if self.cpu_mask:
            command = f"taskset {self.cpu_mask} {command}"
        pieces, piece, chars = [], [], 0  # the model numbers of each loop, within LOOP_CHARS
        for m in order:
            if piece and chars + len(str(m)) + 1 > LOOP_CHARS:
                pieces.append(piece)
                piece, chars = [], 0
            piece.append(m)
            chars += len(str(m)) + 1
        pieces.append(piece)

        def run() -> str:
            try:
                self._push_once([(p, f"{folder}/{i}.tflite") for i, p in enumerate(models)], 0o644)
            except DeviceError as exc:
                if not isinstance(exc, ConnectionLost):  # refused (a full disk): remove the rest
                    with contextlib.suppress(DeviceError):
                        self._shell_once(f"rm -rf {folder}", 30.0)
                raise
            out = []
            for k, piece in enumerate(pieces):
                loop = (f"for m in {' '.join(map(str, piece))}; do echo {_BURST_MARK}$m; "
                        f"{command} 2>&1; done")
                if k == len(pieces) - 1:
                    loop += f"; rm -rf {folder}"
                out.append(self._shell_once(loop, 60.0 + len(piece) * (10.0 + 4 * seconds))[0])
            return "".join(out)

        out = self._retrying(f"timing {len(models)} models in {len(sequence)} bursts", run)
        parts = out.split(_BURST_MARK)[1:]
        if [p.split("\n", 1)[0].strip() for p in parts] != [str(m) for m in order]:
            raise DeviceError(f"benchmark_model printed {len(parts)} of {len(sequence)} bursts, "
                              "or not in the order asked")
        times = []
        for path, part in zip(sequence, parts):
            try:
                result = parse_benchmark_output(part.split("\n", 1)[1] if "\n" in part else "")
            except ValueError as exc:
                raise DeviceError(f"benchmark_model failed on "
                                  f"{os.path.basename(path)}: {exc}") from None
            times.append(result.median_us / 1e3)
        return times

    def time_ops(self, path: str, *, threads: int, warmup: int = 5, min_repeats: int = 20,
                 max_seconds: float = 10.0,
                 flag: str = "--enable_op_profiling=true") -> BenchmarkResult:
        """One whole-model run with the tool's op profiler on: the result's
        ``ops`` give every operator's average time in the context of the whole
        model. ``flag`` is TFLite's; LiteRT's tool takes ``--use_profiler=true``."""
        return self.run_benchmark(path, threads=threads, warmup=warmup, min_repeats=min_repeats,
                                  max_seconds=max_seconds, flags=(flag,))
