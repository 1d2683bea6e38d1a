from sse_bridge_client._gen.events.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(_message.Message):
    __slots__ = ("prefix", "tenant_id", "resource_id")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    tenant_id: str
    resource_id: str
    def __init__(self, prefix: _Optional[str] = ..., tenant_id: _Optional[str] = ..., resource_id: _Optional[str] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("channel", "event", "idempotency_key")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    event: _events_pb2.Event
    idempotency_key: str
    def __init__(self, channel: _Optional[_Union[Channel, _Mapping]] = ..., event: _Optional[_Union[_events_pb2.Event, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("id", "duplicate", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    duplicate: bool
    error: PublishError
    def __init__(self, id: _Optional[str] = ..., duplicate: _Optional[bool] = ..., error: _Optional[_Union[PublishError, _Mapping]] = ...) -> None: ...

class PublishError(_message.Message):
    __slots__ = ("code", "message", "violations")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class DisconnectRequest(_message.Message):
    __slots__ = ("tenant_id", "subject", "channel", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    subject: SubjectTarget
    channel: Channel
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., subject: _Optional[_Union[SubjectTarget, _Mapping]] = ..., channel: _Optional[_Union[Channel, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class SubjectTarget(_message.Message):
    __slots__ = ("subject", "tenant_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    tenant_id: str
    def __init__(self, subject: _Optional[str] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class DisconnectResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: int
    def __init__(self, nodes: _Optional[int] = ...) -> None: ...
