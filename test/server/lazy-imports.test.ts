import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { freePort, startRegistry, tempDir, type StartOptions } from "../helpers/registry.js";

/**
 * What a configuration does not use is not loaded: a module graph stays resident for the life of
 * the process (the AWS SDK and ioredis cost a registry on a filesystem about 20 MiB of RSS each).
 * The registry runs with a hook (NODE_OPTIONS, as an operator could set it) that writes down every
 * module it loads, ESM and CommonJS.
 */
const HEAVY = ["@aws-sdk/client-s3", "@aws-sdk/lib-storage", "ioredis", "jose", "tar-stream", "cli-progress"];

async function loadedBy(options: StartOptions): Promise<Set<string>> {
  const dir = tempDir("neam-lazy-");
  const list = join(dir, "loaded.txt");
  writeFileSync(list, "");
  const esm = join(dir, "esm-hook.mjs");
  const cjs = join(dir, "cjs-hook.cjs");
  writeFileSync(
    esm,
    `import { register } from "node:module";
register("data:text/javascript," + encodeURIComponent(
  'import { appendFileSync } from "node:fs";' +
  'export async function load(url, context, next) { appendFileSync(${JSON.stringify(list)}, url + "\\\\n"); return next(url, context); }'
));
`,
  );
  writeFileSync(
    cjs,
    `const Module = require("node:module");
const { appendFileSync } = require("node:fs");
const resolve = Module._resolveFilename;
Module._resolveFilename = function (...args) {
  const path = resolve.apply(this, args);
  appendFileSync(${JSON.stringify(list)}, path + "\\n");
  return path;
};
`,
  );
  const saved = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = `--require ${cjs} --import ${esm}`;
  let registry;
  try {
    registry = await startRegistry(options);
  } finally {
    if (saved === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = saved;
  }
  try {
    // A first request: what serving loads on first use counts too.
    assert.equal((await fetch(`${registry.url}/v2/`)).status, options.config?.auth ? 401 : 200);
  } finally {
    await registry.stop();
  }
  const packages = new Set<string>();
  for (const line of readFileSync(list, "utf8").split("\n")) {
    const match = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(line);
    if (match) packages.add(match[1]!);
  }
  // The hook saw the registry's own dependencies: a hook that saw nothing would pass anything.
  assert.ok(packages.has("koa") && packages.has("zod"), [...packages].join(" "));
  return packages;
}

describe("serve loads only what its configuration uses", () => {
  it("a filesystem registry without redis or token auth loads neither the AWS SDK, ioredis nor jose", async () => {
    const packages = await loadedBy({});
    for (const name of HEAVY) assert.ok(!packages.has(name), `${name} was loaded`);
  });

  it("redis and token auth, when configured, load theirs", async () => {
    const dir = tempDir("neam-lazy-key-");
    const key = join(dir, "signing.pem");
    writeFileSync(
      key,
      generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }),
    );
    // Nothing listens there: the registry starts anyway (writes answer 503 until Redis is back).
    const redisPort = await freePort();
    const packages = await loadedBy({
      config: {
        redis: { addr: `127.0.0.1:${redisPort}`, dialtimeout: "100ms" },
        auth: {
          token: { realm: "http://127.0.0.1/token", service: "s", issuer: "i", signingkey: key },
        },
      },
    });
    assert.ok(packages.has("ioredis"), "ioredis");
    assert.ok(packages.has("jose"), "jose");
    assert.ok(!packages.has("@aws-sdk/client-s3"), "no S3 without storage.s3");
  });
});
