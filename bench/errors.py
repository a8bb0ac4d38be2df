"""Errors the user can act on: each names the setting (and so the command-line flag) at fault."""

from __future__ import annotations


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
