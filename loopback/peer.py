"""A loopback Android device for the tests: the device side of the ADB protocol.

CI has no phone. ``LoopbackPhone`` listens on 127.0.0.1 and answers as adbd
does over TCP: the CNXN handshake with RSA authentication (AUTH token,
signature checked against the keys it trusts, public key offered for the user
to allow), streams opened with OPEN and answered with OKAY, data in WRTE
messages each acknowledged with OKAY, CLSE, and two services:

- ``shell:CMD`` runs CMD with ``/bin/sh`` in a sandbox folder (device paths
  under ``/data`` map into it; ``getprop`` reads the phone's properties), its
  output written back until the stream closes (adbd's legacy raw shell);
- ``sync:`` with STAT, SEND (DATA..., DONE), RECV, LIST and QUIT.

Debian's ``adb`` client (connect, shell, push) checks it in test_adb.py, so it
is a peer that a real client accepts, not a mock that agrees with our own.

Failure modes: ``accept_new_keys=False`` never allows a key it was offered (a
phone nobody taps "Allow" on); ``drop_after(n)`` cuts every connection when
the n-th shell command arrives and, unless told otherwise, refuses new ones
until ``restore()``.
"""

from __future__ import annotations

import base64
import os
import queue
import secrets
import socket
import stat
import struct
import subprocess
import sys
import threading
from pathlib import Path


def _cmd(tag: bytes) -> int:
    return struct.unpack("<I", tag)[0]


CNXN, AUTH, OPEN, OKAY, CLSE, WRTE = (_cmd(t) for t in (b"CNXN", b"AUTH", b"OPEN", b"OKAY",
                                                        b"CLSE", b"WRTE"))
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024
# DER prefix of a SHA-1 DigestInfo: adbd checks RSA_verify(NID_sha1, token, ...).
_SHA1_PREFIX = bytes.fromhex("3021300906052b0e03021a05000414")

PIXEL_2 = {
    "ro.product.manufacturer": "Google", "ro.product.model": "Pixel 2",
    "ro.product.name": "walleye", "ro.product.device": "walleye",
    "ro.build.version.release": "11", "ro.build.version.sdk": "30",
    "ro.product.cpu.abi": "arm64-v8a",
}


def message(cmd: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return struct.pack("<6I", cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF,
                       cmd ^ 0xFFFFFFFF) + data


def android_public_key(text: bytes) -> tuple[int, int]:
    """(modulus, exponent) of an adbkey.pub (Android's RSAPublicKey struct, base64)."""
    blob = base64.b64decode(text.split(b"\0")[0].split()[0])
    words, _n0inv = struct.unpack_from("<II", blob)
    modulus = int.from_bytes(blob[8:8 + 4 * words], "little")
    (exponent,) = struct.unpack_from("<I", blob, 8 + 8 * words)
    return modulus, exponent


def signature_valid(key: tuple[int, int], token: bytes, signature: bytes) -> bool:
    """PKCS#1 v1.5 check of ``signature`` over ``token`` taken as a SHA-1 digest."""
    n, e = key
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    block = pow(int.from_bytes(signature, "big"), e, n).to_bytes(k, "big")
    tail = _SHA1_PREFIX + token
    return block == b"\0\1" + b"\xff" * (k - 3 - len(tail)) + b"\0" + tail


class LoopbackPhone:
    """The device side of ADB on 127.0.0.1, running commands in ``root``."""

    def __init__(self, root, *, props: dict | None = None, accept_new_keys: bool = True):
        self.root = Path(root)
        (self.root / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)
        bin_dir = self.root / "system" / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        self.props = dict(PIXEL_2 if props is None else props)
        (self.root / "system" / "build.prop").write_text(
            "".join(f"{k}={v}\n" for k, v in self.props.items()))
        getprop = bin_dir / "getprop"
        getprop.write_text(
            '#!/bin/sh\nP="$(dirname "$0")/../build.prop"\n'
            'if [ $# -eq 0 ]; then sed "s/^\\([^=]*\\)=\\(.*\\)$/[\\1]: [\\2]/" "$P"\n'
            'else grep "^$1=" "$P" | head -n 1 | cut -d= -f2-; fi\n')
        getprop.chmod(0o755)
        self.accept_new_keys = accept_new_keys
        self.keys: list[tuple[int, int]] = []
        self.commands: list[str] = []
        self.sync_sessions = 0  # sync: services opened
        self.offered_keys = 0
        self._drop_at: int | None = None
        self._stay_down = True
        self.drops = 0
        self._down = False
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def spec(self) -> str:
        return f"adb:127.0.0.1:{self.port}"

    def device_path(self, path: str) -> Path:
        """Where a device path lives in the sandbox."""
        return self.root / path.lstrip("/")

    def drop_after(self, n: int, *, stay_down: bool = True) -> None:
        """Cut all connections when the n-th shell command from now arrives;
        with ``stay_down``, refuse new ones until ``restore()``."""
        with self._lock:
            self._drop_at, self._stay_down = len(self.commands) + n, stay_down

    def restore(self) -> None:
        with self._lock:
            self._drop_at, self._down = None, False

    def close(self) -> None:
        self._listener.close()
        for conn in list(self._connections):
            conn.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            if self._down:
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            self._connections.add(conn)
            threading.Thread(target=conn.run, daemon=True).start()

    def _note_command(self, command: str) -> bool:
        """Record a shell command; False when the phone drops off instead."""
        with self._lock:
            if self._drop_at is not None and len(self.commands) + 1 >= self._drop_at:
                self._down, self._drop_at = self._stay_down, None
                self.drops += 1
            else:
                self.commands.append(command)
                return True
        for conn in list(self._connections):
            conn.shutdown()
        return False

    def map_command(self, command: str) -> str:
        """Device paths in a command, pointed into the sandbox."""
        return command.replace("/data/", f"{self.root}/data/")

    def unmap_output(self, data: bytes) -> bytes:
        """Sandbox paths in a command's output, as the device paths they stand for."""
        return data.replace(f"{self.root}/data/".encode(), b"/data/")


class _Connection:
    def __init__(self, phone: LoopbackPhone, sock: socket.socket):
        self.phone, self.sock = phone, sock
        self.send_lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.online = False
        self.token = b""
        self.max_payload = 4096

    def shutdown(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def send(self, cmd: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        with self.send_lock:
            self.sock.sendall(message(cmd, arg0, arg1, data))

    def _recv_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(n)
            if not chunk:
                raise ConnectionError("host closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def run(self) -> None:
        try:
            while True:
                cmd, arg0, arg1, length, check, magic = struct.unpack("<6I", self._recv_exact(24))
                if magic != cmd ^ 0xFFFFFFFF:
                    raise ConnectionError("bad message magic")
                data = self._recv_exact(length) if length else b""
                self.handle(cmd, arg0, arg1, data)
        except (OSError, ConnectionError):
            pass
        finally:
            for stream in list(self.streams.values()):
                stream.abort()
            self.phone._connections.discard(self)
            self.sock.close()

    def _banner(self) -> bytes:
        props = ";".join(f"{k}={self.phone.props[k]}" for k in
                         ("ro.product.name", "ro.product.model", "ro.product.device")
                         if k in self.phone.props)
        return f"device::{props};features=cmd\0".encode()

    def _go_online(self) -> None:
        self.online = True
        self.send(CNXN, VERSION, MAX_PAYLOAD, self._banner())

    def _ask_token(self) -> None:
        self.token = secrets.token_bytes(20)
        self.send(AUTH, AUTH_TOKEN, 0, self.token)

    def handle(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        if cmd == CNXN:
            self.max_payload = min(arg1, MAX_PAYLOAD)
            self.online = False
            self._ask_token()
        elif cmd == AUTH and arg0 == AUTH_SIGNATURE:
            if any(signature_valid(k, self.token, data) for k in self.phone.keys):
                self._go_online()
            else:
                self._ask_token()
        elif cmd == AUTH and arg0 == AUTH_RSAPUBLICKEY:
            self.phone.offered_keys += 1
            if self.phone.accept_new_keys:  # the user taps "Allow"
                self.phone.keys.append(android_public_key(data))
                self._go_online()
            # otherwise nobody answers the prompt: the host waits, as with a real phone
        elif not self.online:
            return  # adbd ignores streams before authentication
        elif cmd == OPEN:
            self.open(arg0, data.rstrip(b"\0").decode())
        elif cmd == OKAY and arg1 in self.streams:
            self.streams[arg1].acked.set()
        elif cmd == WRTE and arg1 in self.streams:
            self.send(OKAY, arg1, arg0)
            self.streams[arg1].inbox.put(data)
        elif cmd == CLSE and arg1 in self.streams:
            self.streams.pop(arg1).abort()
            self.send(CLSE, arg1, arg0)  # adbd answers a close with its own

    def open(self, host_id: int, service: str) -> None:
        local_id, self.next_id = self.next_id, self.next_id + 1
        if service.startswith("shell:"):
            stream = _ShellStream(self, local_id, host_id, service[len("shell:"):])
        elif service == "sync:":
            self.phone.sync_sessions += 1
            stream = _SyncStream(self, local_id, host_id)
        else:
            self.send(CLSE, 0, host_id)
            return
        self.streams[local_id] = stream
        self.send(OKAY, local_id, host_id)
        threading.Thread(target=stream.serve, daemon=True).start()


class _Stream:
    def __init__(self, conn: _Connection, local_id: int, host_id: int):
        self.conn, self.local_id, self.host_id = conn, local_id, host_id
        self.acked = threading.Event()
        self.inbox: queue.Queue = queue.Queue()
        self.closed = False

    def write(self, data: bytes) -> None:
        step = self.conn.max_payload
        for i in range(0, len(data), step):
            if self.closed:
                return
            self.acked.clear()
            self.conn.send(WRTE, self.local_id, self.host_id, data[i:i + step])
            if not self.acked.wait(60):
                raise ConnectionError("host stopped acknowledging")

    def finish(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.streams.pop(self.local_id, None)
            try:
                self.conn.send(CLSE, self.local_id, self.host_id)
            except OSError:
                pass

    def abort(self) -> None:
        self.closed = True
        self.inbox.put(None)
        self.acked.set()


class _ShellStream(_Stream):
    def __init__(self, conn, local_id, host_id, command):
        super().__init__(conn, local_id, host_id)
        self.command = command
        self.process: subprocess.Popen | None = None

    def abort(self) -> None:
        super().abort()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def serve(self) -> None:
        phone = self.conn.phone
        if not phone._note_command(self.command):
            return
        env = dict(os.environ, PATH=f"{phone.root / 'system' / 'bin'}:{Path(sys.executable).parent}:"
                                    f"{os.environ.get('PATH', '/usr/bin:/bin')}")
        try:
            self.process = subprocess.Popen(["/bin/sh", "-c", phone.map_command(self.command)],
                                            cwd=phone.root, env=env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            while True:
                chunk = os.read(self.process.stdout.fileno(), 65536)
                if not chunk or self.closed:
                    break
                self.write(phone.unmap_output(chunk))
        except (OSError, ConnectionError):
            pass
        finally:
            if self.process is not None:
                if self.process.poll() is None:
                    self.process.kill()
                self.process.wait()
                self.process.stdout.close()
            self.finish()


class _SyncStream(_Stream):
    def __init__(self, conn, local_id, host_id):
        super().__init__(conn, local_id, host_id)
        self.buffer = b""

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = self.inbox.get()
            if data is None:
                raise ConnectionError("stream closed")
            self.buffer += data
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def request(self) -> tuple[bytes, int]:
        head = self.read(8)
        return head[:4], struct.unpack("<I", head[4:])[0]

    def serve(self) -> None:
        phone = self.conn.phone
        try:
            while True:
                tag, n = self.request()
                if tag == b"QUIT":
                    break
                path = self.read(n).decode()
                if tag == b"STAT":
                    target = phone.device_path(path)
                    st = target.stat() if target.exists() else None
                    self.write(b"STAT" + struct.pack("<III", st.st_mode if st else 0,
                                                     st.st_size if st else 0,
                                                     int(st.st_mtime) if st else 0))
                elif tag == b"SEND":
                    self.receive_file(*path.rsplit(",", 1))
                elif tag == b"RECV":
                    target = phone.device_path(path)
                    if not target.is_file():
                        self.fail(f"remote object '{path}' does not exist")
                        continue
                    data = target.read_bytes()
                    for i in range(0, len(data), SYNC_DATA_MAX):
                        chunk = data[i:i + SYNC_DATA_MAX]
                        self.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                    self.write(b"DONE" + struct.pack("<I", 0))
                elif tag == b"LIST":
                    target = phone.device_path(path)
                    for entry in (sorted(target.iterdir()) if target.is_dir() else []):
                        st = entry.stat()
                        name = entry.name.encode()
                        self.write(b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size,
                                                         int(st.st_mtime), len(name)) + name)
                    self.write(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))
                else:
                    self.fail(f"unknown sync request {tag!r}")
                    break
        except (OSError, ConnectionError):
            pass
        finally:
            self.finish()

    def fail(self, text: str) -> None:
        data = text.encode()
        self.write(b"FAIL" + struct.pack("<I", len(data)) + data)

    def receive_file(self, path: str, mode: str) -> None:
        target = self.conn.phone.device_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with open(partial, "wb") as f:
            while True:
                tag, n = self.request()
                if tag == b"DATA":
                    f.write(self.read(n))
                elif tag == b"DONE":
                    break
                else:
                    raise ConnectionError(f"unexpected {tag!r} in SEND")
        os.chmod(partial, stat.S_IMODE(int(mode)))
        os.replace(partial, target)
        self.write(b"OKAY" + struct.pack("<I", 0))
