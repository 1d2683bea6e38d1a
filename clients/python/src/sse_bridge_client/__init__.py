"""Typed Python publisher for sse-bridge.

    from sse_bridge_client import Publisher, events

    pub = Publisher("127.0.0.1:50051", token)
    result = pub.publish(
        "scans:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:scan-1",
        events.ScanProgress(scan_id="0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80", checked=3, total=10),
    )
    print(result.id)  # the event's stream id, also its SSE id
"""

from ._gen.events.v1 import events_pb2 as events
from ._gen.ssebridge.v1 import publisher_pb2 as publisher
from .publisher import (
    FieldViolation,
    PublishError,
    PublishResult,
    Publisher,
    to_channel,
    to_event,
)

__all__ = [
    "FieldViolation",
    "PublishError",
    "PublishResult",
    "Publisher",
    "events",
    "publisher",
    "to_channel",
    "to_event",
]
