"""The loopback phone: a phone for the tests and benchmarks, on 127.0.0.1.

``peer`` is the device side of the ADB protocol over TCP (CNXN, AUTH, OPEN,
OKAY, WRTE, CLSE; the ``shell:`` and ``sync:`` services), running shell
commands in a sandbox folder; ``benchmark_model`` is a stand-in for TFLite's
tool that times the pushed model with LiteRT on this CPU and prints the real
tool's output; ``launcher`` builds its native launcher (``launcher.c``);
``adb_server`` starts Debian's adb server on a private port. Not part of the
itpl package: tests/ and bench/ share it.
"""
