// Type-level tests of typed channels, checked by `tsc -p test/tsconfig.json`
// in scripts/test (never run): a stream over `channel("scans", …)` offers
// only the events declared for `scans`. Each `@ts-expect-error` must meet an
// error, or tsc fails on the unused directive.
import { channel, subscribe } from "../src/index.js";

const T = "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80";
declare const ES: typeof EventSource;
const base = { url: "http://127.0.0.1:8080", token: () => "t", EventSource: ES };

const scans = subscribe({ ...base, channels: [channel("scans", T, "scan-1")] });
scans.on("scan.progress", (p) => p.checked satisfies number);
scans.on("finding.created", (p) => p.title satisfies string);
// @ts-expect-error message.delta is not declared for the scans prefix
scans.on("message.delta", () => {});

const chat = subscribe({ ...base, channels: [channel("conversations", T, "c-1")] });
chat.on("message.delta", (p) => p.content satisfies string);
// @ts-expect-error scan.progress does not go to conversations
chat.on("scan.progress", () => {});

const both = subscribe({
  ...base,
  channels: [channel("scans", T, "scan-1"), channel("conversations", T, "c-1")],
});
both.on("scan.end", (p) => p.state satisfies string);
both.on("tool_call.end", (p) => p.outcome satisfies string);

// Names given as plain strings are not typed by prefix: every event.
const raw = subscribe({ ...base, channels: [`scans:${T}:scan-1`] });
raw.on("message.delta", () => {});

// @ts-expect-error no event is declared for the prefix `scan`
channel("scan", T, "x");
