"""Debian's real adb server for the tests, on a port of its own.

``DebianAdbServer`` starts ``adb -P PORT start-server`` with a private HOME
(the server keeps its key in ``~/.android``), so it never meets a user's
server on 5037 or their keys, ``adb connect``s it to loopback phones
(loopback/peer.py) and kills it at the end. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DebianAdbServer:
    """``adb`` server on 127.0.0.1:``port``, its HOME in ``home``."""

    available = shutil.which("adb") is not None

    def __init__(self, home):
        self.home = str(home)
        os.makedirs(self.home, exist_ok=True)
        self.port = free_port()
        self.env = dict(os.environ, HOME=self.home)
        self.env.pop("ANDROID_SERIAL", None)
        self.adb("start-server")

    def adb(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """Run ``adb -P PORT ARGS`` against this server; its stdout and stderr."""
        r = subprocess.run(["adb", "-P", str(self.port), *args], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode:
            raise RuntimeError(f"adb {' '.join(args)} failed: {r.stdout}{r.stderr}")
        return r.stdout + r.stderr

    def connect(self, phone) -> str:
        """``adb connect`` the loopback phone and wait until it is online; its serial."""
        serial = f"127.0.0.1:{phone.port}"
        # the first connection offers the server's new key: "failed to
        # authenticate" until the phone allowed it, then it comes online
        self.adb("connect", serial)
        self.adb("-s", serial, "wait-for-device", timeout=30)
        return serial

    def close(self) -> None:
        self.adb("kill-server", check=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
