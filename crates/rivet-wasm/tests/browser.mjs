// Headless Chromium (Debian's chromium) driven over the DevTools protocol from Node: start the
// browser, open a page, wait until an expression holds, read values back, take a screenshot.
// Needs Node's WebSocket (node --experimental-websocket on Node 20).

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Whether the browser is installed (bootstrap.sh installs Debian's chromium). */
export function haveChromium() {
  return existsSync(CHROMIUM);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A started headless Chromium with one page at `url`; `close()` ends it. */
export async function openPage(url, { width = 1100, height = 900 } = {}) {
  const profile = mkdtempSync(path.join(tmpdir(), "rivet-chromium-"));
  // The flags keep a headless browser off the network (this machine has none) and quiet.
  const browser = spawn(CHROMIUM, [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--user-data-dir=${profile}`, "--remote-debugging-port=0", `--window-size=${width},${height}`, "about:blank",
  ], { stdio: ["ignore", "ignore", "pipe"], detached: true });
  let stderr = "";
  browser.stderr.on("data", (d) => { stderr += d; });
  const portFile = path.join(profile, "DevToolsActivePort");
  for (let i = 0; !existsSync(portFile) || readFileSync(portFile, "utf8").split("\n").length < 2; i++) {
    if (i > 300 || browser.exitCode !== null) throw new Error(`chromium did not start: ${stderr.slice(-2000)}`);
    await sleep(100);
  }
  const port = readFileSync(portFile, "utf8").split("\n")[0];
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const page = targets.find((t) => t.type === "page");
  const socket = new WebSocket(page.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
  let id = 0;
  const pending = new Map();
  const console_ = [];
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.id !== undefined && pending.has(message.id)) {
      const { resolve, reject } = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) reject(new Error(`${message.error.message}`));
      else resolve(message.result);
    } else if (message.method === "Runtime.consoleAPICalled") {
      console_.push(message.params.args.map((a) => a.value ?? a.description).join(" "));
    } else if (message.method === "Runtime.exceptionThrown") {
      console_.push(`exception: ${message.params.exceptionDetails.exception?.description ?? message.params.exceptionDetails.text}`);
    }
  };
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      id += 1;
      pending.set(id, { resolve, reject });
      socket.send(JSON.stringify({ id, method, params }));
    });
  await send("Runtime.enable");
  await send("Page.enable");
  await send("Page.navigate", { url });

  /** The value of `expression` in the page. */
  async function evaluate(expression) {
    const { result, exceptionDetails } = await send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
    if (exceptionDetails) throw new Error(`${expression}: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`);
    return result.value;
  }

  return {
    evaluate,
    console: console_,
    /** Polls until `expression` is truthy, for at most `seconds`. */
    async waitFor(expression, seconds = 120) {
      for (let waited = 0; waited < seconds * 10; waited++) {
        if (await evaluate(expression).catch(() => false)) return;
        await sleep(100);
      }
      throw new Error(`timed out waiting for ${expression}; console: ${console_.join(" | ")}`);
    },
    /** Chooses `file` in the file input `selector`, as a person picking it would. */
    async setFile(selector, file) {
      const { root } = await send("DOM.getDocument");
      const { nodeId } = await send("DOM.querySelector", { nodeId: root.nodeId, selector });
      await send("DOM.setFileInputFiles", { nodeId, files: [file] });
    },
    /** A PNG of the page as it is. */
    async screenshot() {
      const { data } = await send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true });
      return Buffer.from(data, "base64");
    },
    async close() {
      socket.close();
      const exited = new Promise((resolve) => (browser.exitCode !== null ? resolve() : browser.once("exit", resolve)));
      // The whole process group: the renderers and helpers too, not only the browser process.
      try {
        process.kill(-browser.pid, "SIGTERM");
      } catch {
        browser.kill();
      }
      await exited;
      rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
    },
  };
}

/** Starts examples/web/serve.mjs on a free port with `args`; returns `{ url, close }`. */
export async function startServer(root, args = []) {
  const server = spawn(process.execPath, [path.join(root, "examples/web/serve.mjs"), "--port", "0", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    server.stdout.on("data", (d) => {
      out += d;
      const match = /serving (http:\/\/\S+)/.exec(out);
      if (match) resolve(match[1]);
    });
    server.once("exit", (code) => reject(new Error(`serve.mjs exited with ${code}`)));
  });
  return {
    url,
    close: () => new Promise((resolve) => { server.once("exit", resolve); server.kill(); }),
  };
}
