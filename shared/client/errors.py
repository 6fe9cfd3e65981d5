"""Errors the client raises. All derive from :class:`ClientError` (a ``TickstreamError``)."""

from __future__ import annotations

from shared.client.model import Reset
from shared.errors import TickstreamError


class ClientError(TickstreamError):
    """Base of every error the Tickstream client raises."""

    code = "client"


class ConnectionRefused(ClientError):
    """The gateway refused the connection for good (close 4403, 1008, 1009): no reconnect."""

    def __init__(self, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class AuthError(ConnectionRefused):
    """The token was refused (close 4401) and no fresh token could be had."""

    code = "unauthorized"


class SubscriptionError(ClientError):
    """The gateway answered a subscribe with an error (``unauthorized``, ``forbidden`` ...)."""

    def __init__(self, event_type: str, code: str, message: str) -> None:
        super().__init__(f"subscribe to {event_type} refused ({code}): {message}")
        self.event_type, self.code, self.message = event_type, code, message


class StreamReset(ClientError):
    """Raised by a subscription's iterator when a resume came back ``recovered: false``.

    Iterating again continues with the live events that follow. See :class:`Reset`.
    """

    code = "reset"

    def __init__(self, reset: Reset) -> None:
        super().__init__(
            f"{reset.event_type}: could not resume from {reset.since} (earliest retained "
            f"{reset.earliest}, epoch {reset.previous_epoch} -> {reset.epoch}); live from {reset.offset}")
        self.reset = reset


class ClientClosed(ClientError):
    """The client was closed."""

    code = "closed"
