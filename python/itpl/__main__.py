import os
import signal
import sys


def _interrupted(signum, frame):
    # Until the CLI installs its own handler nothing has been written: leave at once.
    print("itpl: interrupted", file=sys.stderr, flush=True)
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted)
from itpl.cli import main  # noqa: E402 - after the handler, so Ctrl-C during imports is clean

code = main()
if code == 130:
    # CPython marks a KeyboardInterrupt raised inside code an extension runs with
    # PyRun_String as unhandled even after the CLI caught it, and would end the
    # process by SIGINT (status -2) instead of 130: leave without that check.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)
sys.exit(code)
