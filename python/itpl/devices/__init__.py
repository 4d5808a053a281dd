"""Where latency is measured. A device times a .tflite file at a thread count and
reports facts about itself; ``local`` (this CPU, through LiteRT) is the default."""

from __future__ import annotations

from itpl.devices.base import Device, Timing


def get_device(spec: str = "local") -> Device:
    """The device named by ``spec`` (``local``)."""
    if spec == "local":
        from itpl.devices.local import LocalDevice

        return LocalDevice()
    raise ValueError(f"unknown device '{spec}'; available: local")


__all__ = ["Device", "Timing", "get_device"]
