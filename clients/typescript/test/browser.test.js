// End to end in real headless Chromium: a page subscribes through the
// client, events published through the bridge's gRPC API (the CLI) arrive
// typed; the first token expires mid-stream (bridge.expired) and the page
// refreshes it and continues without loss; the bridge restarts after the
// second token expired, so the browser's reconnect is refused (401), the
// client asks for a third token, and the page resumes without loss.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { createHmac, randomUUID } from "node:crypto";
import { readFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { freePort } from "./helpers.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const BIN = process.env.SSE_BRIDGE_BIN ?? path.resolve(root, "../../target/debug/sse-bridge");
const VALKEY = process.env.VALKEY_SERVER ?? "valkey-server";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SECRET = "browser-test-secret";
const TENANT = randomUUID();
const children = [];


const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
function jwt(claims) {
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64(claims);
  const sig = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}
const now = () => Math.floor(Date.now() / 1000);
const publisherToken = jwt({ sub: "browser-test", scope: "events:publish", tenants: ["*"], exp: now() + 3600 });

function start(cmd, args) {
  const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.on("data", (d) => (log += d));
  child.log = () => log;
  children.push(child);
  return child;
}

async function waitFor(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function reachable(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => (s.end(), resolve(true)));
    s.on("error", () => resolve(false));
  });
}

function publish(grpcPort, resource, checked) {
  return execFileSync(BIN, [
    "publish", "--target", `http://127.0.0.1:${grpcPort}`, "--token", publisherToken,
    "--channel", `scans:${TENANT}:${resource}`, "--event", "scan.progress",
    "--data", JSON.stringify({ scan_id: TENANT, checked, total: 1000 }),
  ]).toString().trim();
}

async function publishWhenUp(grpcPort, resource, checked) {
  return waitFor("the bridge to accept a publish", () => {
    try {
      return publish(grpcPort, resource, checked);
    } catch {
      return undefined;
    }
  });
}

after(async () => {
  for (const c of children) c.kill("SIGKILL");
});

test("typed events, bridge restart and token expiry in real Chromium", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "sse-bridge-browser-"));
  const valkeyPort = await freePort();
  start(VALKEY, ["--bind", "127.0.0.1", "--port", String(valkeyPort), "--save", "", "--dir", dir,
    "--appendonly", "yes", "--appendfsync", "always"]);
  await waitFor("valkey", () => reachable(valkeyPort));

  const pagePort = await freePort();
  const pageOrigin = `http://127.0.0.1:${pagePort}`;
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, pageOrigin);
    if (url.pathname === "/token") {
      const ttl = Number(url.searchParams.get("ttl"));
      res.end(jwt({ sub: "browser-user", tenant_id: url.searchParams.get("tenant"), exp: now() + ttl }));
      return;
    }
    const file = url.pathname === "/page.html" ? path.join(here, "page.html") : path.join(root, url.pathname);
    if (!file.startsWith(root)) return res.writeHead(403).end();
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": file.endsWith(".js") ? "text/javascript" : "text/html" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => server.listen(pagePort, "127.0.0.1", r));

  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  const bridgeArgs = ["serve", "--http-addr", `127.0.0.1:${httpPort}`, "--grpc-addr", `127.0.0.1:${grpcPort}`,
    "--jwt-secret", SECRET, "--cors-origin", pageOrigin, "--valkey-url", `redis://127.0.0.1:${valkeyPort}`,
    "--retry-ms", "300"];
  let bridge = start(BIN, bridgeArgs);
  await waitFor("the bridge", () => reachable(httpPort));

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    const [firstTtl, secondTtl] = [4, 3];
    await page.goto(`${pageOrigin}/page.html?tenant=${TENANT}&bridge=http://127.0.0.1:${httpPort}&first_ttl=${firstTtl}&second_ttl=${secondTtl}`);
    const count = () => page.evaluate(() => window.received.length);

    // The stream is open once the bridge has a subscriber: publish until
    // the first event shows up, then the rest.
    await waitFor("the page to receive", async () => {
      publish(grpcPort, "a", 0);
      await new Promise((r) => setTimeout(r, 200));
      return (await count()) > 0;
    });
    // Probes carry checked 0; the events under test carry 100 and up.
    const expected = [];
    const send = (resource, n) => {
      publish(grpcPort, resource, n);
      expected.push(n);
    };
    const received = () => page.evaluate(() => window.received.map((e) => e.checked));
    send("a", 100);
    send("b", 101);
    await waitFor("typed events", async () => (await received()).includes(101));
    let got = await page.evaluate(() => window.received);
    const typed = got.at(-1);
    assert.equal(typed.event, "scan.progress");
    assert.equal(typeof typed.checked, "number");
    assert.equal(typed.scan_id, TENANT);

    // Token expiry: the first token lasts a few seconds; the page gets
    // bridge.expired, asks for a new token and resumes from its cursor.
    await waitFor("token refresh", () => page.evaluate(() => window.tokens >= 2), 15000);
    const secondIssued = Date.now();
    send("a", 200);
    send("b", 201);
    await waitFor("events after the refresh", async () => (await received()).includes(201));

    // Bridge restart: kill it, publish while it is down is impossible
    // (gRPC is down too), so publish right after it is back, before the
    // page has reconnected, then check nothing is missing.
    bridge.kill("SIGKILL");
    await waitFor("bridge to stop", async () => !(await reachable(httpPort)));
    // Let the second token expire while the bridge is down: the browser's
    // own reconnect then carries an expired token and is refused with 401.
    const left = secondIssued + (secondTtl + 1.5) * 1000 - Date.now();
    if (left > 0) await new Promise((r) => setTimeout(r, left));
    bridge = start(BIN, bridgeArgs);
    const e300 = await publishWhenUp(grpcPort, "b", 300);
    expected.push(300);
    send("a", 301);

    await waitFor("all events after restart", async () => (await received()).includes(301));
    got = await received();
    const tail = got.filter((n) => n >= 100);
    assert.deepEqual(tail, expected, `exactly once, in order (got ${JSON.stringify(got)})`);
    assert.ok(e300.length > 0);
    assert.deepEqual(await page.evaluate(() => window.resets), []);
    assert.ok((await page.evaluate(() => window.tokens)) >= 3, "a third token after the 401");
    assert.ok((await page.evaluate(() => window.refused)) >= 1, "the reconnect was refused and recovered");
  } finally {
    await browser.close();
    server.close();
    for (const c of children) c.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
});
