/**
 * Large blob pulls over TLS go through two pooled read buffers taking turns (http/sendfile.ts,
 * streamFile): the bytes and ranges must be exact, the keep-alive connection must carry on after
 * them, and a client that goes away mid-transfer must cost nothing but its own connection.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import https from "node:https";
import { after, before, describe, it } from "node:test";
import { makeCertificates } from "../../helpers/certs.js";
import { blob, type Blob } from "../../helpers/oci.js";
import { startRegistry, type RegistryProcess } from "../../helpers/registry.js";

let registry: RegistryProcess;
let ca: Buffer;
let large: Blob;
let huge: Blob;
const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });

function request(
  method: string,
  path: string,
  { headers = {}, body }: { headers?: Record<string, string>; body?: Buffer } = {},
) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer; socket: unknown }>(
    (resolve, reject) => {
      const req = https.request(new URL(path, registry.url), { method, headers, agent, ca }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body: Buffer.concat(chunks),
            socket: req.socket,
          }),
        );
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(body);
    },
  );
}

async function push(b: Blob) {
  const response = await request("POST", `/v2/big/tls/blobs/uploads/?digest=${b.digest}`, {
    headers: { "Content-Type": "application/octet-stream", "Content-Length": String(b.size) },
    body: b.data,
  });
  assert.equal(response.status, 201);
}

before(async () => {
  const certs = makeCertificates("tls-pull");
  ca = readFileSync(certs.caCert);
  registry = await startRegistry({ config: { http: { tls: { certificate: certs.cert, key: certs.key } } } });
  large = blob(randomBytes(3 * 1024 * 1024 + 17));
  huge = blob(randomBytes(48 * 1024 * 1024 + 5));
  await push(large);
  await push(huge);
});
after(async () => {
  agent.destroy();
  await registry?.stop();
});

describe("large blob pulls over TLS", () => {
  it("serves whole blobs and ranges byte for byte, and the connection carries on", async () => {
    const whole = await request("GET", `/v2/big/tls/blobs/${large.digest}`);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers["content-length"], String(large.size));
    assert.ok(whole.body.equals(large.data));
    const range = await request("GET", `/v2/big/tls/blobs/${huge.digest}`, {
      headers: { Range: "bytes=1000-9000000" },
    });
    assert.equal(range.status, 206);
    assert.ok(range.body.equals(huge.data.subarray(1000, 9000001)));
    const again = await request("GET", `/v2/big/tls/blobs/${huge.digest}`);
    assert.equal(again.socket, whole.socket, "one keep-alive connection throughout");
    assert.ok(again.body.equals(huge.data));
  });

  it("a client that goes away mid-pull leaves the server serving others", async () => {
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = https.get(new URL(`/v2/big/tls/blobs/${huge.digest}`, registry.url), { ca }, (res) => {
          res.once("data", () => {
            req.destroy();
            resolve();
          });
        });
        req.on("error", (error: NodeJS.ErrnoException) =>
          error.code === "ECONNRESET" ? resolve() : reject(error),
        );
      });
    }
    const [a, b] = await Promise.all([
      request("GET", `/v2/big/tls/blobs/${huge.digest}`),
      request("GET", `/v2/big/tls/blobs/${large.digest}`),
    ]);
    assert.ok(a.body.equals(huge.data));
    assert.ok(b.body.equals(large.data));
  });
});
