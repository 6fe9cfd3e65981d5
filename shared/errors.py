"""Every error Tickstream raises on purpose derives from :class:`TickstreamError`.

The tree::

    TickstreamError
    ├── ConfigError              bad flag or environment value (CLI: one line, exit 2)
    ├── ValidationError          an event or message that breaks the contract (nothing written)
    │   ├── InvalidEventType     event_type does not match ^[a-z][a-z0-9_]{0,63}$
    │   ├── InvalidEventData     data is not a JSON object, or breaks a built-in schema
    │   ├── EventTooLarge        encoded payload over the size limit
    │   └── PrivateEventWithoutUser
    ├── InvalidOffset            an offset that is not ``<ms>-<seq>``
    ├── CodecError               a stream entry or frame that cannot be decoded
    ├── Fenced                   a publish carried a lease token older than the type's fence
                                 (a stale ingestor leader: nothing written, not retried)
    └── RedisUnavailable         Redis could not be reached within the retry budget
        └── NotReplicated        PUBLISH_MIN_REPLICAS replicas did not confirm a publish in time

Errors carry a short ``code`` usable on the wire (``bad_request``, ``invalid_offset`` ...).
"""

from __future__ import annotations


class TickstreamError(Exception):
    """Base of every deliberate Tickstream error."""

    code = "error"


class ConfigError(TickstreamError):
    """A setting from a flag or the environment is missing or malformed."""

    code = "config"


class ValidationError(TickstreamError):
    """An event (or a client message) breaks the contract; nothing was written."""

    code = "bad_request"


class InvalidEventType(ValidationError):
    """The event type does not match ``^[a-z][a-z0-9_]{0,63}$``."""


class InvalidEventData(ValidationError):
    """``data`` is not a JSON object or breaks the schema of a built-in type."""


class EventTooLarge(ValidationError):
    """The encoded event is larger than the configured limit."""

    code = "too_large"


class PrivateEventWithoutUser(ValidationError):
    """A type configured as private was published without ``user``."""


class InvalidOffset(TickstreamError):
    """An offset that is not a Redis Stream entry id (``<ms>-<seq>``)."""

    code = "invalid_offset"


class CodecError(TickstreamError):
    """Bytes that do not decode into what they claim to be."""

    code = "bad_request"


class Fenced(TickstreamError):
    """The publish script refused a lease token older than the one stored for its group.

    A newer leader of the same ingestor group has raised the fence of the event type: this
    publisher lost its lease (paused, partitioned) and must stop writing. Nothing was written;
    retrying cannot help.
    """

    code = "fenced"

    def __init__(self, message: str, group: str = "", fence: int = 0, token: int = 0) -> None:
        super().__init__(message)
        self.group = group
        self.fence = fence
        """The token stored in Redis (the current leader's)."""
        self.token = token
        """The token this publish carried."""

    @classmethod
    def from_reply(cls, reply: str, event_type: str = "") -> Fenced:
        """From the script's error reply ``FENCED <group> <fence> <token>``."""
        parts = reply.split()
        try:
            group, fence, token = parts[1], int(parts[2]), int(parts[3])
        except (IndexError, ValueError):
            return cls(f"publish refused: {reply}")
        where = f" of {event_type}" if event_type else ""
        return cls(f"Fenced: lease token {token} of group {group} is older than the fence{where} "
                   f"({fence}): a newer leader publishes", group, fence, token)


class RedisUnavailable(TickstreamError):
    """Redis could not be reached within the retry budget."""

    code = "unavailable"


class NotReplicated(RedisUnavailable):
    """Fewer than ``PUBLISH_MIN_REPLICAS`` replicas confirmed a write within the retry budget.

    The events may or may not be in the stream: retry with the same idempotency keys.
    """

    code = "not_replicated"
