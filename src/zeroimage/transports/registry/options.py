"""The settings of a registry client: timeouts, retries and the low-speed limit.

Values only, cheap to import (no HTTP stack): the pieces of the client (:mod:`.retry`,
:mod:`.speed`, :mod:`.transport`, :mod:`.client`) each read the part that concerns them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from zeroimage.errors import UsageError
from zeroimage.untrusted import whole_number

LOW_SPEED_VARIABLE = "ZEROIMAGE_LOW_SPEED_LIMIT"


@dataclass(frozen=True)
class LowSpeedLimit:
    """A transfer fails when it moves fewer than ``bytes_per_second * seconds`` bytes in ``seconds``."""

    bytes_per_second: int = 1024
    seconds: int = 30

    @property
    def window_bytes(self) -> int:
        return self.bytes_per_second * self.seconds

    def __str__(self) -> str:
        return f"under {self.bytes_per_second} bytes/s for {self.seconds} s"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> LowSpeedLimit:
        """The limit ``ZEROIMAGE_LOW_SPEED_LIMIT`` sets, else the default; a malformed one is a UsageError."""
        text = environ.get(LOW_SPEED_VARIABLE, "").strip()
        if not text:
            return cls()
        rate, slash, seconds = text.partition("/")
        if not slash:
            raise UsageError(f"{LOW_SPEED_VARIABLE} must be BYTES/SECONDS (e.g. 1024/30), not {text[:40]!r}")
        limit = cls(
            whole_number(rate, f"{LOW_SPEED_VARIABLE}'s BYTES", 1 << 40),
            whole_number(seconds, f"{LOW_SPEED_VARIABLE}'s SECONDS", 86400),
        )
        if limit.bytes_per_second < 1 or limit.seconds < 1:
            raise UsageError(f"{LOW_SPEED_VARIABLE}: both numbers must be at least 1, not {text[:40]!r}")
        return limit


@dataclass(frozen=True)
class ClientOptions:
    insecure_registries: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    #: How long a request waits for a free connection of the client's pool.
    pool_timeout: float = 60.0
    max_attempts: int = 5
    #: No retried request keeps trying longer than this (seconds).
    retry_deadline: float = 40.0
    base_backoff: float = 0.25
    max_backoff: float = 8.0
    low_speed: LowSpeedLimit = field(default_factory=LowSpeedLimit)
    #: Connections the client keeps open at most, and kept alive while idle.
    max_connections: int = 16
    max_keepalive_connections: int = 8
