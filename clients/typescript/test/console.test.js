// The developer console (/console) in real headless Chromium, at desktop
// and phone widths: paste the tokens `serve --dev` printed, tail a channel,
// publish `scan.progress` through the generated form (gRPC-Web) and see the
// frame in the tail; a value the page's checks refuse is shown on its field
// without a request, and one sent anyway comes back as the bridge's field
// violation, shown on its field. Screenshots go to target/console/.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { freePort } from "./helpers.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
const BIN = process.env.SSE_BRIDGE_BIN ?? path.resolve(root, "target/debug/sse-bridge");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = path.resolve(root, "target/console");
const children = [];


/** Starts `serve --dev` and reads the tenant and tokens from its banner. */
async function devServer() {
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  const child = spawn(BIN, ["serve", "--dev", "--http-addr", `127.0.0.1:${httpPort}`, "--grpc-addr", `127.0.0.1:${grpcPort}`],
    { stdio: ["ignore", "pipe", "ignore"] });
  children.push(child);
  const lines = readline.createInterface({ input: child.stdout });
  const banner = { httpPort };
  let next = null;
  for await (const line of lines) {
    if (next) { banner[next] = line.trim(); next = null; }
    const tenant = line.match(/^Subscriber token \(tenant ([0-9a-f-]{36})/);
    if (tenant) { banner.tenant = tenant[1]; next = "subscriber"; }
    if (line.startsWith("Publisher token")) next = "publisher";
    if (banner.publisher) break;
  }
  assert.ok(banner.tenant && banner.subscriber && banner.publisher, "the banner has a tenant and both tokens");
  return banner;
}

after(() => {
  for (const c of children) c.kill("SIGKILL");
});

test("the console tails, publishes over gRPC-Web and shows violations on their fields", async () => {
  await mkdir(SHOTS, { recursive: true });
  const dev = await devServer();
  const channel = `scans:${dev.tenant}:console-1`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const requests = [];
    page.on("request", (r) => { if (r.url().includes("/ssebridge.v1.Publisher/")) requests.push(r.method()); });
    await page.goto(`http://127.0.0.1:${dev.httpPort}/console`);
    await page.waitForSelector("body[data-ready='1']");
    // The catalogue lists events by prefix.
    const catalogue = await page.textContent("#catalogue");
    for (const s of ["scans:<tenant>:<id>", "conversations:<tenant>:<id>", "scan.progress", "message.delta"]) {
      assert.ok(catalogue.includes(s), `catalogue shows ${s}`);
    }

    // A refused stream says why (here: no token yet).
    await page.fill("#tail-channels", channel);
    await page.click("#tail-connect");
    await page.waitForSelector("#tail-status.bad");
    assert.match(await page.textContent("#tail-status"), /Refused: unauthenticated/);

    await page.fill("#sub-token", dev.subscriber);
    await page.fill("#pub-token", dev.publisher);
    await page.fill("#tail-channels", channel);
    await page.click("#tail-connect");
    await page.waitForSelector("#tail-status.ok");

    await page.selectOption("#pub-event", "scan.progress");
    await page.fill("#pub-channel", channel);
    const scan = randomUUID();
    await page.fill("#field-scan_id", scan);
    await page.fill("#field-checked", "3");
    await page.fill("#field-total", "10");
    await page.click("#pub-send");
    await page.waitForSelector("#pub-result.ok");
    const id = await page.getAttribute("#pub-result", "data-id");
    assert.match(id, /^\d+-\d+$/);
    const row = await page.waitForSelector(`#tail-rows tr[data-id='${id}']`);
    assert.equal(await row.getAttribute("data-event"), "scan.progress");
    assert.deepEqual(JSON.parse(await row.$eval("pre", (p) => p.textContent)), { scan_id: scan, checked: 3, total: 10 });
    await page.screenshot({ path: path.join(SHOTS, "console-desktop.png"), fullPage: true });

    // The page's own checks: shown on the field, nothing sent.
    const sent = requests.length;
    await page.fill("#field-scan_id", "not-a-uuid");
    await page.click("#pub-send");
    await page.waitForSelector("#pub-result.bad");
    assert.match(await page.textContent(".violation[data-for='scan_id']"), /UUID/);
    assert.equal(requests.length, sent, "nothing was sent");

    // Sent anyway: the bridge's violation comes back on its field.
    await page.check("#pub-skip-checks");
    await page.fill("#field-scan_id", scan);
    await page.fill("#field-checked", "30");
    await page.click("#pub-send");
    await page.waitForFunction(() => document.querySelector("#pub-result").textContent.startsWith("Refused"));
    assert.match(await page.textContent("#pub-result"), /gRPC status 3/);
    assert.match(await page.textContent(".violation[data-for='checked']"), /must be <= total/);
    assert.equal(await page.textContent(".violation[data-for='scan_id']"), "");

    // Phone width: everything fits without sideways scrolling.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal overflow at 390 px (${overflow} px)`);
    assert.ok(await page.isVisible("#pub-send"));
    await page.screenshot({ path: path.join(SHOTS, "console-phone.png"), fullPage: true });
  } finally {
    await browser.close();
  }
});
