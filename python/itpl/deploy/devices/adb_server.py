"""Server transport: the adb server already running on this computer (Android
Studio, ``adb devices``) reaches the phone for us, so the user's other tools
keep their connection and nobody has to ``adb kill-server``.

The client speaks the server's host protocol on 127.0.0.1, port 5037 or
``$ANDROID_ADB_SERVER_PORT`` (as adb does), as described in AOSP's
``packages/modules/adb`` OVERVIEW.TXT, SERVICES.TXT and SYNC.TXT:

- a request is its length in 4 hex digits and the text (``000chost:version``);
  the server answers ``OKAY``, or ``FAIL`` with a 4-hex-digit length and a
  message;
- ``host:devices`` lists ``SERIAL\\tSTATE`` lines (after OKAY, 4 hex digits of
  length);
- ``host:transport:SERIAL`` (or ``host:transport-any``) ties the socket to one
  phone, and the next request on the same socket is a service on it:
  ``shell:CMD`` streams the command's output until the socket closes;
  ``sync:`` speaks the file protocol: ``SEND`` with ``PATH,MODE``, ``DATA``
  chunks of at most 64 KiB, ``DONE`` with the mtime, then ``OKAY`` or ``FAIL``
  from the phone, and ``QUIT``. Its numbers are little-endian 32-bit.

A socket per operation: nothing is held between commands, so a phone that
dropped off and came back is simply asked again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time

from itpl.deploy.devices.adb_transport import ConnectionLost, DeviceError, Transport

DEFAULT_PORT = 5037
SYNC_DATA_MAX = 64 * 1024


class ServerFail(DeviceError):
    """The server answered FAIL; the message is its own."""


def server_port() -> int:
    """The port adb's own client would use: ``$ANDROID_ADB_SERVER_PORT`` or 5037."""
    value = os.environ.get("ANDROID_ADB_SERVER_PORT", "").strip()
    if not value:
        return DEFAULT_PORT
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"ANDROID_ADB_SERVER_PORT='{value}' is not a port number")
    return int(value)


@contextlib.contextmanager
def _session(sock: socket.socket, timed_out: str):
    """A service's exchange on ``sock``, closed at its end: a timeout (``timed_out``
    says what took too long) or a socket error is a lost connection; what the
    phone answered (``DeviceError``) passes as it is."""
    try:
        yield
    except socket.timeout:
        raise ConnectionLost(timed_out) from None
    except OSError as exc:
        raise ConnectionLost(f"{type(exc).__name__}: {exc}") from None
    finally:
        sock.close()


class AdbServer:
    """A client of the adb server on ``127.0.0.1:port``.

    Parameters
    ----------
    port : int, optional
        The server's port (default: ``$ANDROID_ADB_SERVER_PORT`` or 5037).
    timeout_s : float
        How long to wait for the server to accept a request.
    """

    def __init__(self, port: int | None = None, *, timeout_s: float = 10.0):
        self.port = server_port() if port is None else port
        self.timeout_s = timeout_s

    # --- the host protocol ---------------------------------------------------

    def _open(self) -> socket.socket:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout_s)
        except OSError as exc:
            raise DeviceError(
                f"no adb server answers on 127.0.0.1:{self.port} ({exc.strerror or exc}); start "
                "it with 'adb start-server' (or any adb command, e.g. 'adb devices'), or reach "
                "the phone without it: --device adb:HOST:PORT or adb-usb") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    @staticmethod
    def _read(sock: socket.socket, n: int) -> bytes:
        chunks = []
        while n:
            chunk = sock.recv(min(n, 1 << 20))
            if not chunk:
                raise ConnectionLost("the adb server closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _request(self, sock: socket.socket, text: str) -> None:
        """Send one request and take its OKAY; a FAIL becomes ``ServerFail``."""
        data = text.encode()
        sock.sendall(f"{len(data):04x}".encode() + data)
        status = self._read(sock, 4)
        if status == b"FAIL":
            raise ServerFail(self._read_string(sock))
        if status != b"OKAY":
            raise ConnectionLost(f"the adb server answered {status!r} to {text.split(':')[0]}:...")

    def _read_string(self, sock: socket.socket) -> str:
        size = self._read(sock, 4)
        try:
            n = int(size, 16)
        except ValueError:
            raise ConnectionLost(f"the adb server sent a bad length {size!r}") from None
        return self._read(sock, n).decode(errors="replace")

    def version(self) -> int:
        """The server's protocol version (``host:version``)."""
        with self._open() as sock:
            self._request(sock, "host:version")
            return int(self._read_string(sock), 16)

    def devices(self) -> list[tuple[str, str]]:
        """``(serial, state)`` of every phone the server knows, as ``adb devices`` lists them."""
        with self._open() as sock:
            self._request(sock, "host:devices")
            text = self._read_string(sock)
        return [tuple(line.split("\t", 1)) for line in text.splitlines() if "\t" in line]

    def _service(self, serial: str, service: str, timeout_s: float) -> socket.socket:
        """A socket tied to phone ``serial`` (any phone when empty) with ``service`` open on it."""
        sock = self._open()
        try:
            self._request(sock, f"host:transport:{serial}" if serial else "host:transport-any")
            self._request(sock, service)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(timeout_s)
        return sock

    def shell(self, serial: str, command: str, *, timeout_s: float = 60.0) -> str:
        """Output of ``command`` on the phone (stdout and stderr, the legacy ``shell:``
        service, which every adbd has), read until the phone closes the stream."""
        sock = self._service(serial, f"shell:{command}", timeout_s)
        chunks = []
        with _session(sock, f"no end of '{command[:60]}' within {timeout_s:g} s"):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def push(self, serial: str, local: str, remote: str, *, mode: int = 0o644,
             timeout_s: float = 60.0) -> None:
        """Copy ``local`` to ``remote`` on the phone through the ``sync:`` service."""
        self.push_many(serial, [(local, remote)], mode=mode, timeout_s=timeout_s)

    def push_many(self, serial: str, files: list[tuple[str, str]], *, mode: int = 0o644,
                  timeout_s: float = 60.0) -> None:
        """Copy each ``(local, remote)`` of ``files`` in one ``sync:`` session: the
        SENDs go out back to back and the phone's answers are read at the end,
        one OKAY per file, as ``adb push`` does with several files."""
        sock = self._service(serial, "sync:", timeout_s)
        with _session(sock, f"pushing {files[-1][1]} took over {timeout_s:g} s"):
            for local, remote in files:
                target = f"{remote},{0o100000 | mode}".encode()
                sock.sendall(b"SEND" + struct.pack("<I", len(target)) + target)
                with open(local, "rb") as f:
                    while chunk := f.read(SYNC_DATA_MAX):
                        sock.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                sock.sendall(b"DONE" + struct.pack("<I", int(time.time())))
            for _, remote in files:
                tag, n = struct.unpack("<4sI", self._read(sock, 8))
                if tag == b"FAIL":
                    raise DeviceError(f"the phone refused {remote}: "
                                      f"{self._read(sock, n).decode(errors='replace')}")
                if tag != b"OKAY":
                    raise ConnectionLost(f"sync answered {tag!r} to a push")
            sock.sendall(b"QUIT" + struct.pack("<I", 0))


class ServerTransport(Transport):
    """One phone of the running adb server: ``serial`` as ``adb devices`` prints
    it, or empty for the only phone there (``$ANDROID_SERIAL`` when set, as adb).

    A phone the server lists as offline (a USB hiccup, a dropped TCP link the
    server is reconnecting) is waited for up to ``offline_wait_s`` before the
    connection counts as lost.
    """

    _TRANSIENT = ("offline", "connecting", "authorizing")

    def __init__(self, label: str, serial: str = "", *, port: int | None = None,
                 offline_wait_s: float = 10.0):
        self.label = label
        self.server = AdbServer(port)
        self.wanted = serial or os.environ.get("ANDROID_SERIAL", "").strip()
        self.offline_wait_s = offline_wait_s
        self.serial: str | None = None

    def _pick(self, listed: list[tuple[str, str]]) -> tuple[str, str]:
        """(serial, state) of the wanted phone, or of the only one listed."""
        if self.wanted:
            state = dict(listed).get(self.wanted)
            if state is None:
                hint = (f"; for a direct TCP connection without the server write "
                        f"adb:{self.wanted}:5555" if "." in self.wanted and ":" not in self.wanted
                        else "")
                raise DeviceError(f"the adb server on port {self.server.port} has no phone "
                                  f"'{self.wanted}' ({_listing(listed)}){hint}")
            return self.wanted, state
        ready = [s for s, state in listed if state == "device"]
        if not ready and len(listed) == 1 and listed[0][1] in self._TRANSIENT:
            return listed[0]  # the only phone, coming back: connect() waits for it
        if len(ready) != 1:
            more = ("pick one with --device adb:SERIAL" if ready else
                    "connect one (USB, or 'adb connect HOST:PORT') and check 'adb devices'")
            raise DeviceError(f"--device adb needs exactly one phone on the adb server on port "
                              f"{self.server.port} ({_listing(listed)}): {more}")
        return ready[0], "device"

    def connect(self) -> None:
        if self.serial is not None:
            return
        deadline = time.monotonic() + self.offline_wait_s
        while True:
            serial, state = self._pick(self.server.devices())
            if state not in self._TRANSIENT or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if state == "unauthorized":
            raise DeviceError(f"{serial} has not allowed this computer: unlock the phone, tap "
                              "'Allow' in its 'Allow USB debugging?' prompt, then run the command "
                              "again")
        if state in self._TRANSIENT:
            raise ConnectionLost(f"{serial} is {state} on the adb server")
        if state != "device":
            raise DeviceError(f"{serial} is '{state}' on the adb server, not ready for commands; "
                              "check 'adb devices'")
        # keep to the phone found: after a drop, wait for it, not for any phone
        self.wanted = self.serial = serial

    def close(self) -> None:
        self.serial = None  # the next call checks the phone is still listed

    def _call(self, operation):
        self.connect()
        try:
            return operation(self.serial)
        except ServerFail as exc:
            # "device offline" / "device 'X' not found": it dropped off the server
            if "offline" in str(exc) or "not found" in str(exc):
                self.close()
                raise ConnectionLost(str(exc)) from None
            raise
        except ConnectionLost:
            self.close()
            raise

    def shell(self, command: str, *, timeout_s: float) -> str:
        return self._call(lambda serial: self.server.shell(serial, command, timeout_s=timeout_s))

    def push(self, local: str, remote: str, *, mode: int, timeout_s: float) -> None:
        self.push_many([(local, remote)], mode=mode, timeout_s=timeout_s)

    def push_many(self, files: list[tuple[str, str]], *, mode: int, timeout_s: float) -> None:
        self._call(lambda serial: self.server.push_many(serial, files, mode=mode,
                                                        timeout_s=timeout_s))


def _listing(listed: list[tuple[str, str]]) -> str:
    if not listed:
        return "it lists none"
    return "it lists " + ", ".join(f"{s} ({state})" for s, state in listed)
