"""Direct transport: ``adb-shell`` speaks the ADB protocol to the phone's adbd,
with no adb server in between.

``adb:HOST:PORT`` is TCP (``adb tcpip 5555``, or a phone an emulator exposes);
``adb-usb[:SERIAL]`` is USB (the ``usb`` extra), which the adb server must not
hold. The RSA key is the adb tool's, ``~/.android/adbkey``, made the way adb
makes it when absent, so a phone that already trusts this computer's adb
trusts itpl too.
"""

from __future__ import annotations

import os
import socket

from itpl.deploy.devices.adb_transport import ConnectionLost, DeviceError, KeyRefused, Transport


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


def _numpy_checksum() -> None:
    """adb-shell sums the bytes of every message it sends with Python's
    ``sum`` (5 ms a MB: 70% of a push's time on a fast link); the same sum,
    the same protocol, through NumPy. Set on its ``AdbMessage`` once."""
    import numpy as np
    from adb_shell.adb_message import AdbMessage, checksum

    def fast(message) -> int:
        if not isinstance(message.data, (bytes, bytearray)):
            return checksum(message.data)
        return int(np.frombuffer(message.data, np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF

    if not getattr(AdbMessage, "_itpl_numpy_checksum", False):
        AdbMessage.checksum = property(fast)
        AdbMessage._itpl_numpy_checksum = True


def adb_server_running(port: int = 5037) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class DirectTransport(Transport):
    """A phone's adbd over TCP (``kind="tcp"``) or USB (``kind="usb"``)."""

    def __init__(self, label: str, kind: str, host: str, port: int | None, *,
                 key_path: str | None = None, auth_timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0):
        self.label, self.kind, self.host, self.port = label, kind, host, port
        self.key_path, self.auth_timeout_s = key_path, auth_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._adb = None

    def connect(self) -> None:
        if self._adb is not None:
            return
        _numpy_checksum()
        if self.kind == "usb":
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
                raise KeyRefused(
                    f"{self.label} did not accept this computer's key within "
                    f"{self.auth_timeout_s:g} s: unlock the phone, tap 'Allow' in its 'Allow USB "
                    "debugging?' prompt (tick 'Always allow from this computer'), then run the "
                    "command again") from None
            raise DeviceError(f"cannot connect to {self.label} ({type(exc).__name__}: {exc}); "
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
            if "busy" in text.lower() or adb_server_running():
                raise DeviceError("the adb server holds the phone's USB interface; use "
                                  "--device adb (through the server) instead, or run "
                                  "'adb kill-server' and try again") from None
            raise DeviceError(f"no USB phone found{' with serial ' + self.host if self.host else ''}"
                              f" ({text}); check the cable and that USB debugging is on") from None

    def close(self) -> None:
        if self._adb is not None:
            try:
                self._adb.close()
            finally:
                self._adb = None

    def _call(self, operation):
        """``operation(adb)``, with adb-shell's connection errors as ``ConnectionLost``;
        anything else is what the phone reported (a failed push), final."""
        from adb_shell import exceptions as adb_errors

        lost = (OSError, adb_errors.TcpTimeoutException, adb_errors.AdbConnectionError,
                adb_errors.AdbTimeoutError, adb_errors.InvalidResponseError,
                adb_errors.InvalidCommandError, adb_errors.InvalidChecksumError,
                adb_errors.UsbReadFailedError, adb_errors.UsbWriteFailedError)
        self.connect()
        try:
            return operation(self._adb)
        except lost as exc:
            self.close()
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # noqa: B902 - what the phone reports, e.g. push FAIL
            raise DeviceError(f"{type(exc).__name__}: {exc}") from None

    def shell(self, command: str, *, timeout_s: float) -> str:
        return self._call(lambda adb: adb.shell(command, timeout_s=timeout_s,
                                                read_timeout_s=timeout_s,
                                                transport_timeout_s=timeout_s))

    def push(self, local: str, remote: str, *, mode: int, timeout_s: float) -> None:
        self._call(lambda adb: adb.push(local, remote, st_mode=0o100000 | mode,
                                        transport_timeout_s=timeout_s, read_timeout_s=timeout_s))

    def push_many(self, files: list[tuple[str, str]], *, mode: int, timeout_s: float) -> None:
        """One ``sync:`` stream for every file. adb-shell's ``push`` opens one
        per file; its private ``_open``/``_push``/``_clse`` (adb-shell 0.4)
        make the session, and where they are missing each file goes alone."""
        try:
            from adb_shell.adb_device import _FileSyncTransactionInfo
            from adb_shell.constants import FILESYNC_PUSH_FORMAT
        except ImportError:
            return super().push_many(files, mode=mode, timeout_s=timeout_s)
        self.connect()  # as _call would: the session's methods are the connection's
        if not all(hasattr(self._adb, name) for name in ("_open", "_push", "_clse")):
            return super().push_many(files, mode=mode, timeout_s=timeout_s)

        def send(adb):
            info = adb._open(b"sync:", timeout_s, timeout_s, None)
            sync = _FileSyncTransactionInfo(FILESYNC_PUSH_FORMAT, maxdata=adb._maxdata)
            for local, remote in files:
                with open(local, "rb") as stream:
                    adb._push(stream, remote, 0o100000 | mode, 0, None, info, sync)
            adb._clse(info)

        self._call(send)
