// Shared helpers for SafeText's real-browser tests (CommonJS, so NODE_PATH finds playwright-core).
//
// Every script is run as   node <script>.cjs BASE_URL OUTPUT_DIR [CONFIG_JSON]
// and prints exactly one line starting with "SAFETEXT_RESULT " followed by a JSON object; screenshots
// and a log go to OUTPUT_DIR. The browser is the system Chromium (SAFETEXT_CHROMIUM, default
// /usr/bin/chromium), launched headless through playwright-core; nothing is downloaded.
"use strict";

const fs = require("fs");
const path = require("path");

const RESULT_PREFIX = "SAFETEXT_RESULT ";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--no-first-run"];

function loadPlaywright() {
  try {
    return require("playwright-core");
  } catch (error) {
    emit({ ok: false, fatal: `playwright-core not found (set NODE_PATH or SAFETEXT_NODE_PATH): ${error.message}` });
    process.exit(2);
  }
}

function parseArgs() {
  const [base, out, config] = process.argv.slice(2);
  if (!base || !out) {
    console.error("usage: node <script>.cjs BASE_URL OUTPUT_DIR [CONFIG_JSON]");
    process.exit(2);
  }
  fs.mkdirSync(out, { recursive: true });
  return { base: base.replace(/\/+$/, ""), out, config: config ? JSON.parse(config) : {} };
}

function emit(result) {
  process.stdout.write(RESULT_PREFIX + JSON.stringify(result) + "\n");
}

const started = Date.now();
function elapsed() {
  return Math.round((Date.now() - started) / 100) / 10;
}

function logger(out) {
  const file = path.join(out, "browser.log");
  fs.writeFileSync(file, "");
  return (...parts) => {
    const line = `[${elapsed().toFixed(1)}s] ` + parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" ");
    fs.appendFileSync(file, line + "\n");
    process.stderr.write(line + "\n");
  };
}

async function launch() {
  const { chromium } = loadPlaywright();
  const executablePath = process.env.SAFETEXT_CHROMIUM || "/usr/bin/chromium";
  return chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true });
}

// Collects console errors, page errors and failed requests; `ours` keeps those that come from SafeText.
function watchPage(page, log) {
  const seen = { console: [], pageErrors: [], failedRequests: [], warnings: [] };
  page.on("console", (msg) => {
    const type = msg.type();
    if (type !== "error" && type !== "warning") return;
    const location = msg.location() || {};
    const entry = { type, text: msg.text().slice(0, 2000), url: location.url || "", line: location.lineNumber };
    (type === "error" ? seen.console : seen.warnings).push(entry);
    if (type === "error") log("console error:", entry);
  });
  page.on("pageerror", (error) => {
    const entry = { text: String(error && error.message).slice(0, 2000), stack: String(error && error.stack).slice(0, 4000) };
    seen.pageErrors.push(entry);
    log("page error:", entry);
  });
  page.on("requestfailed", (request) => {
    seen.failedRequests.push({ url: request.url(), failure: (request.failure() || {}).errorText || "" });
  });
  page.on("response", (response) => {
    if (response.status() >= 400) seen.failedRequests.push({ url: response.url(), status: response.status() });
  });
  return seen;
}

const SAFETEXT_PATTERN = /safetext/i;

function fromSafeText(entry) {
  return [entry.text, entry.url, entry.stack].some((value) => value && SAFETEXT_PATTERN.test(value));
}

function summarise(seen) {
  return {
    console_errors: seen.console,
    page_errors: seen.pageErrors,
    failed_requests: seen.failedRequests.slice(0, 50),
    safetext_errors: [...seen.console, ...seen.pageErrors].filter(fromSafeText),
    safetext_failed_requests: seen.failedRequests.filter((r) => SAFETEXT_PATTERN.test(r.url)),
    safetext_warnings: seen.warnings.filter(fromSafeText),
  };
}

async function screenshot(page, out, name, options = {}) {
  const file = path.join(out, name);
  try {
    if (options.element) {
      await options.element.screenshot({ path: file });
    } else {
      await page.screenshot({ path: file, ...options });
    }
    return file;
  } catch (error) {
    return null;
  }
}

let current = null; // { page, out }: where a failed step's screenshot goes

// Runs `body(page, context)`; always prints one result line and closes the browser.
async function main(body) {
  const args = parseArgs();
  const log = logger(args.out);
  const result = { ok: false, steps: {}, screenshots: [] };
  let browser;
  try {
    browser = await launch();
    result.browser = browser.version();
    const viewport = args.config.viewport || { width: 1400, height: 900 };
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(args.config.timeout_ms || 60000);
    const seen = watchPage(page, log);
    current = { page, out: args.out, result };
    try {
      await body({ page, context, args, log, result });
      result.ok = true;
    } catch (error) {
      result.error = String((error && error.stack) || error).slice(0, 4000);
      log("FAILED:", result.error);
      result.screenshots.push(await screenshot(page, args.out, "failure.png"));
    } finally {
      Object.assign(result, summarise(seen));
    }
  } catch (error) {
    result.error = String((error && error.stack) || error).slice(0, 4000);
    result.fatal = true;
  } finally {
    result.seconds = elapsed();
    if (browser) await browser.close().catch(() => {});
    result.screenshots = result.screenshots.filter(Boolean);
    emit(result);
  }
}

// Runs one named step; its outcome (value or error) goes into result.steps[name] and the run goes on.
async function step(result, log, name, fn) {
  const t0 = Date.now();
  log(`step ${name} ...`);
  try {
    const value = await fn();
    result.steps[name] = { ok: true, seconds: (Date.now() - t0) / 1000, ...(value || {}) };
  } catch (error) {
    result.steps[name] = { ok: false, seconds: (Date.now() - t0) / 1000,
      error: String((error && error.stack) || error).slice(0, 3000) };
    if (current) {
      const file = await screenshot(current.page, current.out, `failed_${name.replace(/[^a-z0-9_-]+/gi, "_")}.png`);
      if (file) result.screenshots.push(file);
    }
  }
  log(`step ${name}:`, result.steps[name]);
  return result.steps[name];
}

// Pixels of an image the page can load (by URL), decoded in the page: size, SHA-256 of the RGBA data and
// the RGB values, so that two runs' pictures can be compared exactly or by mean difference.
async function pixelsOf(page, src) {
  return page.evaluate(async (src) => {
    const img = new Image();
    img.src = src;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, c.width, c.height).data;
    const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", data))].map((b) => b.toString(16).padStart(2, "0")).join("");
    return { width: c.width, height: c.height, digest, pixels: Array.from(data.filter((_, i) => i % 4 !== 3)) };
  }, src);
}

module.exports = { main, step, screenshot, emit, RESULT_PREFIX, fromSafeText, pixelsOf };
