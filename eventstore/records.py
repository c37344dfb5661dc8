"""Value objects that cross the store's interface: what is appended and what is read back.

The store knows ``type``, ``schema_version`` and JSON-able dicts; it knows no domain classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

NO_STREAM: Final = 0
"""Expected version of a stream that must not exist yet."""

ANY_VERSION: Final = -1
"""Expected version that skips the concurrency check (the events go at the stream's end)."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended; the store assigns position, version and time.

    ``data`` and ``metadata`` must be JSON-native (dicts with string keys, lists, strings,
    numbers, booleans, None): the store does not copy them, and the ``Recorded`` that
    ``append`` returns holds these very objects.
    """

    type: str
    data: Mapping[str, Any]
    schema_version: int = 1
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events for one stream, appended only if the stream is at ``expected_version``.

    ``expected_version`` is the stream's current last version (``NO_STREAM`` for a new
    stream), or ``ANY_VERSION``.
    """

    stream: str
    expected_version: int
    events: Sequence[NewEvent]


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event as stored in the log (an envelope)."""

    position: int
    stream: str
    version: int
    type: str
    schema_version: int
    data: Mapping[str, Any]
    metadata: Mapping[str, Any]
    recorded_at: str

    def envelope(self) -> dict[str, Any]:
        """The envelope as the HTTP API shows it."""
        return {
            "position": self.position,
            "stream": self.stream,
            "version": self.version,
            "type": self.type,
            "schema_version": self.schema_version,
            "data": self.data,
            "metadata": self.metadata,
            "recorded_at": self.recorded_at,
        }
