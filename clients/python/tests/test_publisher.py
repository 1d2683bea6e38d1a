"""The Python publisher against a real bridge, read back over real SSE."""

import http.client
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from conftest import token
from sse_bridge_client import PublishError, PublishResult, Publisher, events


class Sse:
    """A raw text/event-stream reader."""

    def __init__(self, bridge, channels):
        self.conn = http.client.HTTPConnection("127.0.0.1", bridge.http_port, timeout=20)
        query = "&".join(f"channel={c}" for c in channels)
        self.conn.request(
            "GET", f"/v1/events?{query}",
            headers={"Authorization": f"Bearer {bridge.subscriber_token}"},
        )
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()

    def next_event(self):
        fields = {}
        while True:
            line = self.response.readline().decode().rstrip("\n")
            if line == "":
                if "event" in fields:
                    return fields
                fields = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value

    def close(self):
        self.conn.close()


def test_publish_typed_events_and_read_them_over_sse(bridge):
    channel = f"scans:{bridge.tenant}:scan-1"
    sse = Sse(bridge, [channel])
    with Publisher(bridge.target, bridge.publisher_token) as pub:
        first = pub.publish(channel, events.ScanProgress(scan_id=bridge.tenant, checked=0, total=5))
        end = pub.publish(
            ("scans", bridge.tenant, "scan-1"),
            events.ScanEnd(scan_id=bridge.tenant, state=events.SCAN_STATE_COMPLETED, duration_ms=1500),
        )
    assert isinstance(first, PublishResult) and not first.duplicate
    frame = sse.next_event()
    assert frame["id"] == first.id
    assert frame["event"] == "scan.progress"
    assert json.loads(frame["data"]) == {"scan_id": bridge.tenant, "checked": 0, "total": 5}
    frame = sse.next_event()
    assert frame["id"] == end.id and frame["event"] == "scan.end"
    assert json.loads(frame["data"])["duration_ms"] == "1500"
    sse.close()


def test_rejections_carry_status_and_field_violations(bridge):
    channel = f"scans:{bridge.tenant}:r"
    with Publisher(bridge.target, bridge.publisher_token) as pub:
        with pytest.raises(PublishError) as bad:
            pub.publish(channel, events.ScanProgress(scan_id="nope", checked=9, total=1))
        assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in bad.value.violations] == [
            "event.scan_progress.scan_id",
            "event.scan_progress.checked",
        ]
        assert not bad.value.retryable
        conversation = f"conversations:{bridge.tenant}:r"
        with pytest.raises(PublishError) as big:
            pub.publish(conversation, events.MessageDelta(content="x" * 5000))
        assert big.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(ValueError):
            pub.publish(f"conversations:{bridge.tenant}:a:b", events.MessageDelta(content="x"))
        with pytest.raises(PublishError) as injected:
            pub.publish(("conversations", bridge.tenant, "a:b"), events.MessageDelta(content="x"))
        assert injected.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in injected.value.violations] == ["channel.resource_id"]
    with Publisher(bridge.target, bridge.subscriber_token) as wrong:
        with pytest.raises(PublishError) as denied:
            wrong.publish(f"conversations:{bridge.tenant}:r", events.MessageDelta(content="x"))
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(TypeError):
        Publisher.request(channel, grpc.StatusCode)  # type: ignore[arg-type]


def test_publish_stream_yields_one_outcome_per_item_in_order(bridge):
    channel = f"scans:{bridge.tenant}:s"
    sse = Sse(bridge, [channel])
    items = [
        (channel, events.ScanProgress(scan_id=bridge.tenant, checked=1, total=3), ""),
        (channel, events.ScanProgress(scan_id=bridge.tenant, checked=5, total=3), ""),
        (channel, events.ScanProgress(scan_id=bridge.tenant, checked=2, total=3), "k1"),
        (channel, events.ScanProgress(scan_id=bridge.tenant, checked=2, total=3), "k1"),
    ]
    with Publisher(bridge.target, bridge.publisher_token) as pub:
        out = list(pub.publish_stream(items))
    assert isinstance(out[0], PublishResult)
    assert isinstance(out[1], PublishError)
    assert out[1].code == grpc.StatusCode.INVALID_ARGUMENT
    assert out[1].violations[0].field == "event.scan_progress.checked"
    assert out[2].id == out[3].id and out[3].duplicate
    assert [sse.next_event()["id"] for _ in range(2)] == [out[0].id, out[2].id]
    sse.close()


def test_generated_stubs_match_proto(tmp_path):
    """The committed stubs are what generate.sh makes from proto/ now."""
    here = Path(__file__).resolve().parents[1]
    subprocess.run(
        ["bash", str(here / "generate.sh"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    committed = here / "src" / "sse_bridge_client" / "_gen"
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    current = {p.relative_to(committed): p.read_bytes() for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    stale = sorted(str(p) for p in fresh.keys() | current.keys() if fresh.get(p) != current.get(p))
    assert not stale, f"generated stubs are stale; run clients/python/generate.sh: {stale}"


def test_disconnect_closes_a_channels_streams(bridge):
    channel = f"scans:{bridge.tenant}:scan-9"
    sse = Sse(bridge, [channel])
    admin = token("--publisher", "--scope", "streams:admin", "--tenants", bridge.tenant)
    with Publisher(bridge.target, admin) as pub:
        assert pub.disconnect(channel=channel, reason="scan archived") == 1
        with pytest.raises(ValueError):
            pub.disconnect(tenant=bridge.tenant, channel=channel)
    frame = sse.next_event()
    assert frame["event"] == "bridge.revoked"
    assert json.loads(frame["data"]) == {"reason": "scan archived"}
    assert "id" not in frame
    sse.close()
    with Publisher(bridge.target, bridge.publisher_token) as pub:
        with pytest.raises(PublishError) as refused:
            pub.disconnect(tenant=bridge.tenant)
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "streams:admin" in refused.value.message


def test_generate_sh_checks_its_tools_before_it_touches_anything(tmp_path):
    """Without grpc_tools it fails saying what to install, and the stubs in
    place stay: it used to delete them first."""
    here = Path(__file__).resolve().parents[1]
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.py").write_text("# a stub in place\n")
    run = subprocess.run(
        ["bash", str(here / "generate.sh"), str(out)],
        env={"PYTHON": str(bare / "bin" / "python"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert "grpcio-tools" in run.stderr and "nothing was changed" in run.stderr, run.stderr
    assert (out / "kept.py").read_text() == "# a stub in place\n"


def test_the_cli_target_form_works_and_bad_targets_fail_at_once(bridge):
    """`http://host:port` (what `sse-bridge publish --target` takes) works as
    well as grpc's `host:port`; a target that is neither raises ValueError
    before any call, rather than an UNAVAILABLE marked retryable."""
    channel = f"scans:{bridge.tenant}:targets"
    for target in (f"http://{bridge.target}", bridge.target):
        with Publisher(target, bridge.publisher_token) as pub:
            pub.publish(channel, events.ScanProgress(scan_id=bridge.tenant, checked=1, total=2))
    for bad in ("ftp://127.0.0.1:1", "http://", "http://host:1/path", ""):
        with pytest.raises(ValueError, match="expected the bridge's gRPC address"):
            Publisher(bad, bridge.publisher_token)


def test_an_event_goes_only_to_its_declared_prefixes(bridge):
    """The publisher checks the channel prefix against the catalogue before
    sending, as the bridge would; an event declared for two prefixes goes to
    both."""
    with Publisher(bridge.target, bridge.publisher_token) as pub:
        with pytest.raises(ValueError, match="may be published to channels with prefix `conversations`; got `scans`"):
            pub.publish(f"scans:{bridge.tenant}:r", events.MessageDelta(content="x"))
        pub.publish(f"conversations:{bridge.tenant}:r", events.MessageDelta(content="x"))
        finding = events.FindingCreated(finding_id=bridge.tenant, title="t", severity=events.SEVERITY_LOW)
        for prefix in ("findings", "scans"):
            pub.publish(f"{prefix}:{bridge.tenant}:f", finding)
