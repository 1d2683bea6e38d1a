import { test } from "node:test";
import assert from "node:assert/strict";
import { channel, parseChannel, streamUrl, subscribe, EVENT_NAMES } from "../dist/index.js";

const T = "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80";

test("channel builds and normalises, and rejects what the bridge rejects", () => {
  assert.equal(channel("scans", T.toUpperCase(), "scan-1"), `scans:${T}:scan-1`);
  assert.throws(() => channel("Scans", T, "a"), /prefix/);
  assert.throws(() => channel("scans", "acme", "a"), /tenant/);
  assert.throws(() => channel("scan", T, "a"), /no event is declared for channel prefix "scan"; the declared prefixes are conversations, findings, scans/);
  assert.throws(() => channel("scans", T, "a:b"), /resource/);
  assert.throws(() => channel("scans", T, "r".repeat(129)), /resource/);
});

test("parseChannel splits exactly three parts", () => {
  assert.deepEqual(parseChannel(`scans:${T}:x`), { prefix: "scans", tenantId: T, resourceId: "x" });
  assert.throws(() => parseChannel(`scans:${T}`), /three parts/);
  assert.throws(() => parseChannel(`scans:${T}:a:b`), /three parts/);
});

test("streamUrl repeats channel and carries token and cursor", () => {
  const u = new URL(streamUrl("http://h:1", ["a:b:c", "d:e:f"], "tok", "5-1"));
  assert.equal(u.pathname, "/v1/events");
  assert.deepEqual(u.searchParams.getAll("channel"), ["a:b:c", "d:e:f"]);
  assert.equal(u.searchParams.get("access_token"), "tok");
  assert.equal(u.searchParams.get("last_event_id"), "5-1");
  assert.equal(new URL(streamUrl("http://h:1", ["a:b:c"], "t")).searchParams.has("last_event_id"), false);
});

test("the generated catalogue lists every event", () => {
  for (const name of ["scan.progress", "scan.end", "message.delta", "tool_call.start"]) {
    assert.ok(EVENT_NAMES.includes(name), name);
  }
});

/** Enough of EventSource to drive the client by hand. */
class FakeEventSource {
  static CLOSED = 2;
  static opened = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.listeners = new Map();
    FakeEventSource.opened.push(this);
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }
  emit(type, data, lastEventId = "") {
    for (const fn of this.listeners.get(type) ?? []) fn({ type, data, lastEventId });
  }
  close() {
    this.readyState = FakeEventSource.CLOSED;
  }
}

test("bridge.revoked closes the stream for good and reports the reason", async () => {
  FakeEventSource.opened = [];
  const stream = subscribe({
    url: "http://h:1",
    channels: [`scans:${T}:x`],
    token: () => "tok",
    EventSource: FakeEventSource,
  });
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(FakeEventSource.opened.length, 1);
  const reasons = [];
  stream.onRevoked((reason) => reasons.push(reason));
  const es = FakeEventSource.opened[0];
  es.emit("bridge.revoked", JSON.stringify({ reason: "logged out" }));
  assert.deepEqual(reasons, ["logged out"]);
  assert.equal(es.readyState, FakeEventSource.CLOSED);
  // The browser's error after the close must not reopen it.
  es.emit("error", "");
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(FakeEventSource.opened.length, 1);
});
