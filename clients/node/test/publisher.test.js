// The Node publisher against a real bridge (the binary, on free loopback
// ports): typed events reach an SSE stream, rejections carry the gRPC code,
// the field violations and `retryable`, the prefix is checked before
// sending, streams keep order, and `disconnect` reaches the node.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Publisher, PublishError, Code, create, events } from "../dist/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.SSE_BRIDGE_BIN ?? path.resolve(here, "../../../target/debug/sse-bridge");
const SECRET = "node-publisher-test-secret";
const TENANT = randomUUID();
let bridge, httpPort, grpcPort;

const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
function jwt(claims) {
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ exp: Math.floor(Date.now() / 1000) + 600, ...claims });
  return `${head}.${body}.${createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url")}`;
}
const publisherToken = jwt({ sub: "node-test", scope: "events:publish", tenants: ["*"] });
const adminToken = jwt({ sub: "node-admin", scope: "streams:admin", tenants: ["*"] });
const subscriberToken = jwt({ sub: "node-user", tenant_id: TENANT });

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Opens an SSE stream and returns a function that reads its next event. */
function subscribe(channel) {
  return new Promise((resolve, reject) => {
    const req = http.get({
      host: "127.0.0.1", port: httpPort, path: `/v1/events?channel=${channel}`,
      headers: { authorization: `Bearer ${subscriberToken}` },
    }, (res) => {
      assert.equal(res.statusCode, 200);
      let buffer = "";
      const waiting = [];
      const frames = [];
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const f = {};
          for (const line of block.split("\n")) {
            const i = line.indexOf(": ");
            if (i > 0) f[line.slice(0, i)] = line.slice(i + 2);
          }
          if (f.event) frames.push(f);
          while (waiting.length && frames.length) waiting.shift()(frames.shift());
        }
      });
      const next = () => new Promise((r) => (frames.length ? r(frames.shift()) : waiting.push(r)));
      next.close = () => req.destroy();
      resolve(next);
    });
    req.on("error", reject);
  });
}

before(async () => {
  [httpPort, grpcPort] = [await freePort(), await freePort()];
  bridge = spawn(BIN, ["serve", "--jwt-secret", SECRET, "--http-addr", `127.0.0.1:${httpPort}`,
    "--grpc-addr", `127.0.0.1:${grpcPort}`], { stdio: "ignore" });
  const deadline = Date.now() + 20000;
  for (;;) {
    const up = await new Promise((r) => {
      http.get({ host: "127.0.0.1", port: httpPort, path: "/readyz" }, (res) => { res.resume(); r(res.statusCode === 200); })
        .on("error", () => r(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error("the bridge did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(() => bridge.kill("SIGKILL"));

test("typed events reach the stream; both target forms work", async () => {
  const channel = `scans:${TENANT}:node-1`;
  const next = await subscribe(channel);
  const scanId = randomUUID();
  for (const target of [`http://127.0.0.1:${grpcPort}`, `127.0.0.1:${grpcPort}`]) {
    const pub = new Publisher(target, publisherToken);
    const r = await pub.publish(channel, create(events.ScanProgressSchema, { scanId, checked: 3, total: 10 }));
    assert.equal(r.duplicate, false);
    const f = await next();
    assert.equal(f.id, r.id);
    assert.equal(f.event, "scan.progress");
    assert.deepEqual(JSON.parse(f.data), { scan_id: scanId, checked: 3, total: 10 });
  }
  next.close();
});

test("rejections carry the code, the field violations and retryable", async () => {
  const pub = new Publisher(`http://127.0.0.1:${grpcPort}`, publisherToken);
  await assert.rejects(
    pub.publish(`scans:${TENANT}:r`, create(events.ScanProgressSchema, { scanId: "nope", checked: 9, total: 1 })),
    (e) => {
      assert.ok(e instanceof PublishError);
      assert.equal(e.code, Code.InvalidArgument);
      assert.deepEqual(e.violations.map((v) => v.field), ["event.scan_progress.scan_id", "event.scan_progress.checked"]);
      assert.equal(e.retryable, false);
      return true;
    },
  );
  // The prefix is checked before sending, as the bridge would.
  assert.throws(
    () => Publisher.request(`scans:${TENANT}:r`, create(events.MessageDeltaSchema, { content: "x" })),
    /messageDelta: may be published to channels with prefix `conversations`; got `scans`/,
  );
  await pub.publish(`conversations:${TENANT}:r`, create(events.MessageDeltaSchema, { content: "x" }));
  const wrong = new Publisher(`http://127.0.0.1:${grpcPort}`, subscriberToken);
  await assert.rejects(
    wrong.publish(`conversations:${TENANT}:r`, create(events.MessageDeltaSchema, { content: "x" })),
    (e) => e.code === Code.PermissionDenied || e.code === Code.Unauthenticated,
  );
  const down = new Publisher("http://127.0.0.1:1", publisherToken);
  await assert.rejects(
    down.publish(`scans:${TENANT}:r`, create(events.ScanProgressSchema, { scanId: TENANT, checked: 1, total: 1 })),
    (e) => e.code === Code.Unavailable && e.retryable,
  );
  for (const bad of ["ftp://127.0.0.1:1", "http://host:1/path", "not a url"]) {
    assert.throws(() => new Publisher(bad, publisherToken), /expected the bridge's gRPC address/);
  }
});

test("publishStream yields one outcome per item, in order", async () => {
  const channel = `scans:${TENANT}:node-s`;
  const pub = new Publisher(`http://127.0.0.1:${grpcPort}`, publisherToken);
  const item = (checked, key) => [channel, create(events.ScanProgressSchema, { scanId: TENANT, checked, total: 3 }), key];
  const out = [];
  for await (const o of pub.publishStream([item(1), item(5), item(2, "k1"), item(2, "k1")])) out.push(o);
  assert.equal(out.length, 4);
  assert.ok(!(out[0] instanceof PublishError));
  assert.ok(out[1] instanceof PublishError);
  assert.equal(out[1].code, Code.InvalidArgument);
  assert.equal(out[1].violations[0].field, "event.scan_progress.checked");
  assert.equal(out[2].id, out[3].id);
  assert.equal(out[3].duplicate, true);
});

test("disconnect reaches the node", async () => {
  const admin = new Publisher(`http://127.0.0.1:${grpcPort}`, adminToken);
  assert.equal(await admin.disconnect({ channel: `scans:${TENANT}:node-gone` }, "test"), 1);
  assert.equal(await admin.disconnect({ tenant: TENANT }), 1);
});
