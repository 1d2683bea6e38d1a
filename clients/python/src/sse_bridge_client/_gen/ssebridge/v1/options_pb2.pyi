from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
EVENT_FIELD_NUMBER: _ClassVar[int]
event: _descriptor.FieldDescriptor
MESSAGE_RULES_FIELD_NUMBER: _ClassVar[int]
message_rules: _descriptor.FieldDescriptor
PREFIX_FIELD_NUMBER: _ClassVar[int]
prefix: _descriptor.FieldDescriptor
RULES_FIELD_NUMBER: _ClassVar[int]
rules: _descriptor.FieldDescriptor

class FieldRules(_message.Message):
    __slots__ = ("uuid", "required", "max_len", "min", "max")
    UUID_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    MAX_LEN_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    uuid: bool
    required: bool
    max_len: int
    min: int
    max: int
    def __init__(self, uuid: _Optional[bool] = ..., required: _Optional[bool] = ..., max_len: _Optional[int] = ..., min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class MessageRules(_message.Message):
    __slots__ = ("lte",)
    LTE_FIELD_NUMBER: _ClassVar[int]
    lte: _containers.RepeatedCompositeFieldContainer[FieldOrder]
    def __init__(self, lte: _Optional[_Iterable[_Union[FieldOrder, _Mapping]]] = ...) -> None: ...

class FieldOrder(_message.Message):
    __slots__ = ("field", "other")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    field: str
    other: str
    def __init__(self, field: _Optional[str] = ..., other: _Optional[str] = ...) -> None: ...
