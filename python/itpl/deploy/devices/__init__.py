"""Where latency is measured. A device times a .tflite file at a thread count and
reports facts about itself: ``local`` (this CPU, through LiteRT) is the default;
Android phones over ADB are ``adb`` (the running adb server's only phone),
``adb:SERIAL`` / ``adb-server:SERIAL`` (a phone of the adb server),
``adb:HOST:PORT`` and ``adb-usb[:SERIAL]`` (adbd directly, no server)."""

from __future__ import annotations

from itpl.deploy.devices.base import Device, Timing


def get_device(spec: str = "local", *, benchmark_binary: str | None = None,
               cpu_mask: str | None = None) -> Device:
    """The device named by ``spec``: ``local``, ``adb``, ``adb:SERIAL``,
    ``adb-server:SERIAL``, ``adb:HOST:PORT`` or ``adb-usb[:SERIAL]``.

    ``benchmark_binary`` (a ``benchmark_model`` build to push) and ``cpu_mask``
    (hex, for ``taskset``) apply to phones only.
    """
    if spec == "local":
        if benchmark_binary or cpu_mask:
            raise ValueError("`benchmark_binary` and `cpu_mask` are for phones (`device` adb...)")
        from itpl.deploy.devices.local import LocalDevice

        return LocalDevice()
    if spec == "adb" or spec.startswith(("adb:", "adb-usb", "adb-server")):
        from itpl.deploy.devices.adb import AdbDevice

        return AdbDevice(spec, benchmark_binary=benchmark_binary, cpu_mask=cpu_mask)
    raise ValueError(f"unknown device '{spec}'; use local, adb, adb:SERIAL, adb:HOST:PORT or "
                     "adb-usb[:SERIAL]")


def as_device(device: Device | str) -> Device:
    """``device`` itself, or the device a spec names (:func:`get_device`)."""
    return device if isinstance(device, Device) else get_device(device)


__all__ = ["Device", "Timing", "as_device", "get_device"]
