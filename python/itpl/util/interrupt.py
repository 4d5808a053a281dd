"""Ctrl-C that is honoured at any moment.

Python turns SIGINT into KeyboardInterrupt at the next bytecode, but where that
bytecode runs inside a garbage-collector callback (jax registers one, and the
converter stack imports jax: 6-10 s into ``profile`` or ``export``), the
exception is printed as "ignored" and discarded, and the command ran to
completion. So the handler here records the interrupt and sends the signal
again shortly after, until the CLI has seen it; and the commit point of every
output (:func:`itpl.util.fileio.staged_outputs`) checks the record, so an
interrupted command never writes its files.
"""

from __future__ import annotations

import os
import signal
import threading

_state = {"requested": False, "handled": True, "previous": None}
RESEND_S = 0.2  # long enough to leave a gc callback, short enough to feel immediate


def _handler(signum, frame):
    if _state["handled"] and _state["requested"]:
        return  # a resend that was already on its way when the CLI reported the interrupt
    _state["requested"] = True
    if not _state["handled"]:
        timer = threading.Timer(RESEND_S, _resend)
        timer.daemon = True
        timer.start()
    raise KeyboardInterrupt


def _resend():
    if not _state["handled"]:
        os.kill(os.getpid(), signal.SIGINT)


def install() -> bool:
    """Take over SIGINT (main thread only); returns whether it did."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGINT)
    previous = _state["previous"] if current is _handler else current  # after an interrupt
    _state.update(requested=False, handled=False, previous=previous)
    signal.signal(signal.SIGINT, _handler)
    return True


def finish() -> None:
    """The interrupt (if any) has been reported: stop resending, restore the old handler."""
    _state["handled"] = True
    if _state["requested"]:
        return  # keep the handler, now silent, for a resend in flight
    if _state["previous"] is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _state["previous"])
        _state["previous"] = None


def requested() -> bool:
    """Whether Ctrl-C was pressed since :func:`install`."""
    return _state["requested"]


def check() -> None:
    """Raise KeyboardInterrupt if one was requested and swallowed on the way."""
    if _state["requested"] and not _state["handled"]:
        raise KeyboardInterrupt
