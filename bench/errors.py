"""Errors the user can act on: each names the setting (and so the command-line flag) at fault."""

from __future__ import annotations

import sys


class ConfigError(ValueError):
    """A setting is invalid. Raised before any training starts."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    def for_cli(self) -> str:
        return f"{self.flag}: {self.message}"


class DataError(RuntimeError):
    """A dataset cannot be loaded (missing files, unknown name, ...)."""


def cli_exit(exc: ConfigError | DataError) -> int:
    """Print ``exc`` as a command's one-line error and return its exit status: 2 for bad input
    (nothing was loaded or trained), 1 for data that cannot be had."""
    if isinstance(exc, ConfigError):
        print(f"error: {exc.for_cli()}", file=sys.stderr)
        return 2
    print(f"error: {exc}", file=sys.stderr)
    return 1


class DeviceUnavailable(ConfigError):
    """A valid device setting this machine cannot honour now (no CUDA device): the machine's
    fault, not the configuration's, so a trial that meets it is retried on the next run."""


# Markers of a CUDA device that is gone or unusable mid-run (driver, ECC, busy devices): the
# machine's fault. CUDA out-of-memory and device-side asserts are the configuration's.
_DEVICE_LOST = (
    "no cuda-capable device",
    "busy or unavailable",
    "devices unavailable",
    "uncorrectable ecc",
    "cuda driver version is insufficient",
    "driver shutting down",
)


def is_environment_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from outside the trial's configuration (data missing, device gone).

    Why: such a trial is recorded as an ``environment`` failure, which the next run retries
    without ``--retry-failed``; every other failure is final."""
    if isinstance(exc, (DataError, DeviceUnavailable)):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _DEVICE_LOST)
