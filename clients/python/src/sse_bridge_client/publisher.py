"""The publisher helper: channels and events in, ids or typed errors out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence, Tuple, Union

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ._gen.events.v1 import events_pb2
from ._gen.ssebridge.v1 import options_pb2, publisher_pb2, publisher_pb2_grpc

ChannelLike = Union[str, Tuple[str, str, str], publisher_pb2.Channel]

_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(frozen=True)
class PublishResult:
    """A published event: its stream id (the SSE `id:` of a one-channel stream)."""

    id: str
    duplicate: bool = False


@dataclass
class PublishError(Exception):
    """A rejected publish, with the gRPC status and the offending fields."""

    code: grpc.StatusCode
    message: str
    violations: Sequence[FieldViolation] = field(default_factory=list)

    def __str__(self) -> str:
        # The bridge's message already names each violation; list only
        # those it left out.
        lines = [f"{self.code.name}: {self.message}"]
        for v in self.violations:
            line = f"{v.field}: {v.description}"
            if line not in self.message:
                lines.append(f"  {line}")
        return "\n".join(lines)

    @property
    def retryable(self) -> bool:
        """True when publishing again (with the same idempotency key) may work."""
        return self.code == grpc.StatusCode.UNAVAILABLE

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "PublishError":
        violations = []
        status = rpc_status.from_call(error)
        if status is not None:
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations += [
                        FieldViolation(v.field, v.description) for v in bad.field_violations
                    ]
        return cls(error.code(), error.details() or "", violations)

    @classmethod
    def from_item(cls, error: publisher_pb2.PublishError) -> "PublishError":
        return cls(
            _CODES.get(error.code, grpc.StatusCode.UNKNOWN),
            error.message,
            [FieldViolation(v.field, v.description) for v in error.violations],
        )


def to_channel(channel: ChannelLike) -> publisher_pb2.Channel:
    """`"prefix:tenant:resource"`, a 3-tuple, or a `Channel` message."""
    if isinstance(channel, publisher_pb2.Channel):
        return channel
    if isinstance(channel, str):
        parts = channel.split(":")
        if len(parts) != 3:
            raise ValueError(
                f"channel must be '<prefix>:<tenant_id>:<resource_id>', got {channel!r}"
            )
        channel = (parts[0], parts[1], parts[2])
    prefix, tenant_id, resource_id = channel
    return publisher_pb2.Channel(prefix=prefix, tenant_id=tenant_id, resource_id=resource_id)


_PAYLOAD = events_pb2.Event.DESCRIPTOR.oneofs_by_name["payload"]


def to_event(event: Message) -> events_pb2.Event:
    """Wraps a payload message (e.g. `events.ScanProgress(...)`) in the envelope."""
    if isinstance(event, events_pb2.Event):
        return event
    descriptor = getattr(event, "DESCRIPTOR", None)
    for f in _PAYLOAD.fields:
        if descriptor is not None and f.message_type is descriptor:
            return events_pb2.Event(**{f.name: event})
    raise TypeError(f"{type(event).__name__} is not an event of the catalogue")


def _address(target: str) -> "tuple[str, bool]":
    """`host:port` and whether to use TLS, from the CLI's `--target` form
    (`http://host:port`, `https://host:port`) or grpc's own `host:port`.
    Anything else is a configuration error, raised now: left to grpc it
    becomes an UNAVAILABLE that looks worth retrying forever."""
    for scheme, tls in (("http://", False), ("https://", True)):
        if target.startswith(scheme):
            address = target[len(scheme):].rstrip("/")
            if not address or "/" in address:
                break
            return address, tls
    else:
        if "://" not in target and target and "/" not in target:
            return target, False
    raise ValueError(
        f"bad target {target!r}: expected the bridge's gRPC address, "
        "e.g. http://127.0.0.1:50051, https://bridge.example.com:443 or 127.0.0.1:50051"
    )


def prefixes_of(event: events_pb2.Event) -> "list[str]":
    """The channel prefixes the catalogue declares for `event`'s payload."""
    member = event.WhichOneof("payload")
    if member is None:
        return []
    options = events_pb2.Event.DESCRIPTOR.fields_by_name[member].message_type.GetOptions()
    return list(options.Extensions[options_pb2.prefix])


def check_prefix(prefix: str, event: events_pb2.Event) -> None:
    allowed = prefixes_of(event)
    if allowed and prefix not in allowed:
        name = event.WhichOneof("payload")
        listed = ", ".join(f"`{p}`" for p in allowed)
        raise ValueError(
            f"{name}: may be published to channels with prefix {listed}; got `{prefix}`"
        )


class Publisher:
    """Publishes typed events to a bridge over gRPC."""

    def __init__(
        self,
        target: str,
        token: str,
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        timeout: float = 10.0,
    ) -> None:
        address, tls = _address(target)
        if tls and credentials is None:
            credentials = grpc.ssl_channel_credentials()
        self._channel = (
            grpc.secure_channel(address, credentials)
            if credentials is not None
            else grpc.insecure_channel(address)
        )
        self._stub = publisher_pb2_grpc.PublisherStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def request(
        channel: ChannelLike, event: Message, idempotency_key: str = ""
    ) -> publisher_pb2.PublishRequest:
        """The request for one publish. Raises `ValueError` when the event may
        not go to the channel's prefix (the bridge would refuse it the same
        way, as INVALID_ARGUMENT on `channel.prefix`)."""
        channel = to_channel(channel)
        event = to_event(event)
        check_prefix(channel.prefix, event)
        return publisher_pb2.PublishRequest(
            channel=channel, event=event, idempotency_key=idempotency_key
        )

    def publish(
        self, channel: ChannelLike, event: Message, idempotency_key: str = ""
    ) -> PublishResult:
        """Publishes one event; raises `PublishError` when it is rejected."""
        try:
            response = self._stub.Publish(
                self.request(channel, event, idempotency_key),
                metadata=self._metadata,
                timeout=self._timeout,
            )
        except grpc.RpcError as error:
            raise PublishError.from_rpc_error(error) from None
        return PublishResult(response.id, response.duplicate)

    def publish_stream(
        self, items: Iterable[Tuple[ChannelLike, Message, str]]
    ) -> Iterator[Union[PublishResult, PublishError]]:
        """Publishes `(channel, event, idempotency_key)` items over one stream.

        Yields one outcome per item, in order: a `PublishResult`, or a
        `PublishError` for an item that was rejected (the stream goes on).
        Raises `PublishError` if the stream itself fails (e.g. bad token).
        """
        requests = (self.request(c, e, k) for c, e, k in items)
        try:
            for response in self._stub.PublishStream(requests, metadata=self._metadata):
                if response.HasField("error"):
                    yield PublishError.from_item(response.error)
                else:
                    yield PublishResult(response.id, response.duplicate)
        except grpc.RpcError as error:
            raise PublishError.from_rpc_error(error) from None

    def disconnect(
        self,
        *,
        tenant: Optional[str] = None,
        subject: Optional[str] = None,
        subject_tenant: str = "",
        channel: Optional[ChannelLike] = None,
        reason: str = "",
    ) -> int:
        """Closes streams on every node; returns how many nodes the order reached.

        Give exactly one of `tenant` (every stream of the tenant), `subject`
        (every stream opened with a token of that `sub`; in `subject_tenant`
        only, or in every tenant) or `channel` (every stream that includes it).
        The token needs scope `streams:admin` with `tenants` covering the
        target. Closed streams get `bridge.revoked` with `reason`; tokens of the
        target issued before the order are refused afterwards. Raises
        `PublishError` when the bridge refuses.
        """
        given = [x is not None for x in (tenant, subject, channel)]
        if sum(given) != 1:
            raise ValueError("give exactly one of tenant, subject or channel")
        request = publisher_pb2.DisconnectRequest(reason=reason)
        if tenant is not None:
            request.tenant_id = tenant
        elif subject is not None:
            request.subject.CopyFrom(
                publisher_pb2.SubjectTarget(subject=subject, tenant_id=subject_tenant)
            )
        else:
            request.channel.CopyFrom(to_channel(channel))
        try:
            response = self._stub.Disconnect(
                request, metadata=self._metadata, timeout=self._timeout
            )
        except grpc.RpcError as error:
            raise PublishError.from_rpc_error(error) from None
        return response.nodes
