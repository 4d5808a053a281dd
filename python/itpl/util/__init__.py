"""Plumbing every other room uses: atomic file output and Ctrl-C handling.
Imports nothing from the rest of itpl."""
