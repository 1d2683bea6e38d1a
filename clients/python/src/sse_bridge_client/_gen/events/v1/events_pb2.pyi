from sse_bridge_client._gen.ssebridge.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScanState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCAN_STATE_UNSPECIFIED: _ClassVar[ScanState]
    SCAN_STATE_COMPLETED: _ClassVar[ScanState]
    SCAN_STATE_FAILED: _ClassVar[ScanState]
    SCAN_STATE_CANCELLED: _ClassVar[ScanState]

class ToolCallOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_CALL_OUTCOME_UNSPECIFIED: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_SUCCEEDED: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_FAILED: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_CANCELLED: _ClassVar[ToolCallOutcome]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_LOW: _ClassVar[Severity]
    SEVERITY_MEDIUM: _ClassVar[Severity]
    SEVERITY_HIGH: _ClassVar[Severity]
    SEVERITY_CRITICAL: _ClassVar[Severity]
SCAN_STATE_UNSPECIFIED: ScanState
SCAN_STATE_COMPLETED: ScanState
SCAN_STATE_FAILED: ScanState
SCAN_STATE_CANCELLED: ScanState
TOOL_CALL_OUTCOME_UNSPECIFIED: ToolCallOutcome
TOOL_CALL_OUTCOME_SUCCEEDED: ToolCallOutcome
TOOL_CALL_OUTCOME_FAILED: ToolCallOutcome
TOOL_CALL_OUTCOME_CANCELLED: ToolCallOutcome
SEVERITY_UNSPECIFIED: Severity
SEVERITY_LOW: Severity
SEVERITY_MEDIUM: Severity
SEVERITY_HIGH: Severity
SEVERITY_CRITICAL: Severity

class Event(_message.Message):
    __slots__ = ("scan_progress", "scan_end", "scan_error", "message_delta", "message_end", "message_error", "tool_call_start", "tool_call_end", "finding_created", "finding_updated", "finding_deleted")
    SCAN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SCAN_END_FIELD_NUMBER: _ClassVar[int]
    SCAN_ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_DELTA_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_END_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ERROR_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_START_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_END_FIELD_NUMBER: _ClassVar[int]
    FINDING_CREATED_FIELD_NUMBER: _ClassVar[int]
    FINDING_UPDATED_FIELD_NUMBER: _ClassVar[int]
    FINDING_DELETED_FIELD_NUMBER: _ClassVar[int]
    scan_progress: ScanProgress
    scan_end: ScanEnd
    scan_error: ScanError
    message_delta: MessageDelta
    message_end: MessageEnd
    message_error: MessageError
    tool_call_start: ToolCallStart
    tool_call_end: ToolCallEnd
    finding_created: FindingCreated
    finding_updated: FindingUpdated
    finding_deleted: FindingDeleted
    def __init__(self, scan_progress: _Optional[_Union[ScanProgress, _Mapping]] = ..., scan_end: _Optional[_Union[ScanEnd, _Mapping]] = ..., scan_error: _Optional[_Union[ScanError, _Mapping]] = ..., message_delta: _Optional[_Union[MessageDelta, _Mapping]] = ..., message_end: _Optional[_Union[MessageEnd, _Mapping]] = ..., message_error: _Optional[_Union[MessageError, _Mapping]] = ..., tool_call_start: _Optional[_Union[ToolCallStart, _Mapping]] = ..., tool_call_end: _Optional[_Union[ToolCallEnd, _Mapping]] = ..., finding_created: _Optional[_Union[FindingCreated, _Mapping]] = ..., finding_updated: _Optional[_Union[FindingUpdated, _Mapping]] = ..., finding_deleted: _Optional[_Union[FindingDeleted, _Mapping]] = ...) -> None: ...

class ScanProgress(_message.Message):
    __slots__ = ("scan_id", "checked", "total")
    SCAN_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    scan_id: str
    checked: int
    total: int
    def __init__(self, scan_id: _Optional[str] = ..., checked: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class ScanEnd(_message.Message):
    __slots__ = ("scan_id", "state", "findings", "duration_ms")
    SCAN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    scan_id: str
    state: ScanState
    findings: int
    duration_ms: int
    def __init__(self, scan_id: _Optional[str] = ..., state: _Optional[_Union[ScanState, str]] = ..., findings: _Optional[int] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class ScanError(_message.Message):
    __slots__ = ("scan_id", "code", "detail")
    SCAN_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    scan_id: str
    code: str
    detail: str
    def __init__(self, scan_id: _Optional[str] = ..., code: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class MessageDelta(_message.Message):
    __slots__ = ("content",)
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content: str
    def __init__(self, content: _Optional[str] = ...) -> None: ...

class MessageEnd(_message.Message):
    __slots__ = ("message_id",)
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    def __init__(self, message_id: _Optional[str] = ...) -> None: ...

class MessageError(_message.Message):
    __slots__ = ("code", "detail")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    code: str
    detail: str
    def __init__(self, code: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ToolCallStart(_message.Message):
    __slots__ = ("tool_call_id", "tool_name")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    tool_name: str
    def __init__(self, tool_call_id: _Optional[str] = ..., tool_name: _Optional[str] = ...) -> None: ...

class ToolCallEnd(_message.Message):
    __slots__ = ("tool_call_id", "outcome")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    outcome: ToolCallOutcome
    def __init__(self, tool_call_id: _Optional[str] = ..., outcome: _Optional[_Union[ToolCallOutcome, str]] = ...) -> None: ...

class FindingCreated(_message.Message):
    __slots__ = ("finding_id", "title", "severity")
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    finding_id: str
    title: str
    severity: Severity
    def __init__(self, finding_id: _Optional[str] = ..., title: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ...) -> None: ...

class FindingUpdated(_message.Message):
    __slots__ = ("finding_id", "title", "severity")
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    finding_id: str
    title: str
    severity: Severity
    def __init__(self, finding_id: _Optional[str] = ..., title: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ...) -> None: ...

class FindingDeleted(_message.Message):
    __slots__ = ("finding_id",)
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    finding_id: str
    def __init__(self, finding_id: _Optional[str] = ...) -> None: ...
