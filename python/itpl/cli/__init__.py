"""The ``itpl`` command: thin argument parsing over the library.

``app`` holds :func:`main`, ``info`` and ``inspect``; one module per family of
subcommands (``prune`` with ``profile``, ``deploy`` with ``export`` and
``bench``, ``train`` with ``finetune`` and ``eval``, ``int8`` for the int8
options); ``args`` holds what they share (exit codes, flag messages, model
arguments). The library raises exceptions about its own arguments; these
modules map them to flags, one-line messages and exit codes.
"""

from itpl.cli.app import main

__all__ = ["main"]
