"""Errors raised by the delivery package.

The tree::

    DeliveryError(Exception)
    └── BlockedDestination   the SSRF guard refused a destination's host or address

Library errors (aiohttp's, the socket module's) never leave the package: the sender turns
them into an ``AttemptResult`` instead of raising.
"""

from __future__ import annotations

__all__ = ["BlockedDestination", "DeliveryError"]


class DeliveryError(Exception):
    """Base class of every error the delivery package raises on purpose."""


class BlockedDestination(DeliveryError):
    """A destination whose host is, or resolves to, an address the guard refuses.

    ``host`` is the host as it appears in the URL; ``address`` is what made it forbidden (the
    resolved or literal IP address, or the name itself for ``localhost``).
    """

    def __init__(self, host: str, address: str, reason: str = "is not a public address") -> None:
        super().__init__(f"destination host {host!r} is blocked: {address} {reason}")
        self.host = host
        self.address = address
        self.reason = reason

    def __reduce__(self) -> tuple[type[BlockedDestination], tuple[str, str, str]]:
        # the default would call __init__ with the single formatted message
        return (type(self), (self.host, self.address, self.reason))
