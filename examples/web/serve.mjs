// A static server for the Rivet WebAssembly page, with no dependencies: serves this folder at /,
// the npm package `make wasm` writes (target/wasm/pkg) at /pkg/ and the bundled models at
// /models/, and sends the cross-origin isolation headers (COOP/COEP) a page needs for shared
// memory. Binds to loopback only.
//
//   node examples/web/serve.mjs [--port 8040]     then open http://127.0.0.1:8040/
//
// Extra roots may be mounted: --mount /ort/=node_modules/onnxruntime-web/dist (the benchmark
// page does). `--port 0` picks a free port; the first line printed gives the address.

import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const args = process.argv.slice(2);
const mounts = [
  ["/pkg/", path.join(root, "target/wasm/pkg")],
  ["/models/", path.join(root, "models")],
];
let port = 8040;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--port") port = Number(args[++i]);
  else if (args[i] === "--mount") {
    const [prefix, dir] = args[++i].split("=");
    mounts.unshift([prefix, path.resolve(dir)]);
  } else {
    console.error(`unknown argument ${args[i]} (usage: serve.mjs [--port N] [--mount /PREFIX/=DIR])`);
    process.exit(2);
  }
}
mounts.push(["/", here]);

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".css": "text/css; charset=utf-8",
  ".onnx": "application/octet-stream",
  ".npy": "application/octet-stream",
};

/** The file a URL path names, or null when it is outside every mount. */
function resolve(urlPath) {
  for (const [prefix, dir] of mounts) {
    if (!urlPath.startsWith(prefix)) continue;
    const file = path.resolve(dir, "." + urlPath.slice(prefix.length - 1));
    if (file !== dir && !file.startsWith(dir + path.sep)) return null;
    return file;
  }
  return null;
}

const server = createServer((request, response) => {
  const headers = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
  };
  let urlPath;
  try {
    urlPath = decodeURIComponent(new URL(request.url, "http://localhost").pathname);
  } catch {
    response.writeHead(400, headers).end("bad path");
    return;
  }
  if (urlPath.endsWith("/")) urlPath += "index.html";
  const file = resolve(urlPath);
  let stat = null;
  try {
    stat = file && statSync(file);
  } catch {
    stat = null;
  }
  if (!stat || !stat.isFile()) {
    response.writeHead(404, { ...headers, "Content-Type": "text/plain" }).end(`not found: ${urlPath}`);
    return;
  }
  const type = TYPES[path.extname(file)] ?? "application/octet-stream";
  response.writeHead(200, { ...headers, "Content-Type": type, "Content-Length": stat.size });
  createReadStream(file).pipe(response);
});

server.listen(port, "127.0.0.1", () => {
  console.log(`serving http://127.0.0.1:${server.address().port}/`);
});
