"""What the phone logic of ``adb.py`` needs from a way of reaching a phone.

Two transports implement it: ``adb_direct.py`` talks to the phone's adbd
itself through ``adb-shell`` (TCP or USB), ``adb_server.py`` asks the adb
server that is already running on this computer (Android Studio, ``adb
devices``) to do it, so nobody has to ``adb kill-server``.

A transport raises ``ConnectionLost`` when a retry may help (the link dropped,
the phone went offline) and ``DeviceError`` when it will not (no phone, a key
nobody allowed, a full disk); ``AdbDevice`` reconnects and repeats on the
first and stops with the one-line reason on the second.
"""

from __future__ import annotations


class DeviceError(ValueError):
    """The phone is unreachable, refused us, or its tools failed (a one-line reason)."""


class ConnectionLost(DeviceError):
    """The connection dropped or timed out; reconnecting and repeating may help."""


class KeyRefused(DeviceError):
    """The phone did not allow our key: retrying won't help until the user taps."""


class Transport:
    """Shell commands and file pushes on one phone.

    ``label`` names the phone in messages (the ``--device`` spec).
    """

    label = "phone"

    def connect(self) -> None:
        """Reach the phone (idempotent); raise ``DeviceError`` or ``ConnectionLost``."""
        raise NotImplementedError

    def shell(self, command: str, *, timeout_s: float) -> str:
        """Everything ``command`` wrote (stdout and stderr) until it ended."""
        raise NotImplementedError

    def push(self, local: str, remote: str, *, mode: int, timeout_s: float) -> None:
        """Copy the file ``local`` to ``remote`` on the phone with permissions ``mode``."""
        raise NotImplementedError

    def push_many(self, files: list[tuple[str, str]], *, mode: int, timeout_s: float) -> None:
        """Copy each ``(local, remote)`` of ``files``, in one sync session where
        the transport can (the sync protocol takes several SENDs)."""
        for local, remote in files:
            self.push(local, remote, mode=mode, timeout_s=timeout_s)

    def close(self) -> None:
        """Drop the connection; the next call connects again."""
