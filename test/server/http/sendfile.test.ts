/**
 * Large blob pulls over plain HTTP are copied off the event loop by the native addon
 * (server/native/sendfile.c): the bytes, ranges and the connection after them must be exactly what
 * the stream path gives, and a client that goes away mid-transfer must cost nothing but its own
 * connection.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { sendfileAvailable } from "../../../server/src/http/sendfile.js";
import { blob, Client, type Blob } from "../../helpers/oci.js";
import { startRegistry, type RegistryProcess } from "../../helpers/registry.js";

let registry: RegistryProcess;
let client: Client;
let large: Blob;
let huge: Blob;

before(async () => {
  registry = await startRegistry();
  client = new Client(registry.url);
  large = blob(randomBytes(3 * 1024 * 1024 + 17));
  huge = blob(randomBytes(64 * 1024 * 1024));
  await client.pushBlob("big/blob", large);
  await client.pushBlob("big/blob", huge);
});
after(() => registry?.stop());

/** GETs over one keep-alive connection, so a broken connection after sendfile would show. */
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function get(path: string, headers: Record<string, string> = {}, method = "GET") {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer; socket: unknown }>(
    (resolve, reject) => {
      const request = http.request(new URL(path, registry.url), { agent, headers, method }, (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (c: Buffer) => chunks.push(c));
        response.on("end", () =>
          resolve({
            status: response.statusCode!,
            headers: response.headers,
            body: Buffer.concat(chunks),
            socket: request.socket,
          }),
        );
        response.on("error", reject);
      });
      request.on("error", reject);
      request.end();
    },
  );
}

describe("zero-copy blob pulls (sendfile)", () => {
  it("is built and loaded here (test/setup.sh installs the compilers)", () => {
    assert.equal(sendfileAvailable, true);
  });

  it("serves whole blobs and ranges byte for byte, and the connection carries on", async () => {
    const whole = await get(`/v2/big/blob/blobs/${large.digest}`);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers["content-length"], String(large.size));
    assert.equal(whole.headers["docker-content-digest"], large.digest);
    assert.ok(whole.body.equals(large.data));

    const middle = await get(`/v2/big/blob/blobs/${large.digest}`, { Range: "bytes=1000000-2500000" });
    assert.equal(middle.status, 206);
    assert.equal(middle.headers["content-range"], `bytes 1000000-2500000/${large.size}`);
    assert.ok(middle.body.equals(large.data.subarray(1000000, 2500001)));
    assert.equal(middle.socket, whole.socket, "the same keep-alive connection");

    const tail = await get(`/v2/big/blob/blobs/${large.digest}`, { Range: `bytes=-${200_000}` });
    assert.equal(tail.status, 206);
    assert.ok(tail.body.equals(large.data.subarray(large.size - 200_000)));

    const head = await get(`/v2/big/blob/blobs/${large.digest}`, {}, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    const manifestless = await get(`/v2/big/blob/blobs/${huge.digest}`, { Range: "bytes=0-9" });
    assert.ok(manifestless.body.equals(huge.data.subarray(0, 10)));
    assert.equal(manifestless.socket, whole.socket);
  });

  it("serves concurrent pulls of one blob correctly", async () => {
    const pulls = await Promise.all(
      Array.from({ length: 6 }, () => client.request("GET", `/v2/big/blob/blobs/${large.digest}`)),
    );
    for (const response of pulls) assert.ok(Buffer.from(await response.arrayBuffer()).equals(large.data));
  });

  it("a client that reads slowly gets every byte in order (the socket takes partial writes)", async () => {
    const body = await new Promise<Buffer>((resolve, reject) => {
      const request = http.get(new URL(`/v2/big/blob/blobs/${huge.digest}`, registry.url), (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (c: Buffer) => {
          chunks.push(c);
          // Now and then stop reading long enough for the socket's buffers to fill up.
          if (chunks.length % 64 === 1) {
            response.pause();
            setTimeout(() => response.resume(), 20);
          }
        });
        response.on("end", () => resolve(Buffer.concat(chunks)));
        response.on("error", reject);
      });
      request.on("error", reject);
    });
    assert.equal(body.length, huge.size);
    assert.ok(body.equals(huge.data));
  });

  it("the stream path (TLS, or no addon) serves the same bytes", async () => {
    process.env.NEAM_REGISTRY_NATIVE = "0";
    const streaming = await startRegistry({ root: registry.root }).finally(
      () => delete process.env.NEAM_REGISTRY_NATIVE,
    );
    try {
      const other = new Client(streaming.url);
      const whole = await other.request("GET", `/v2/big/blob/blobs/${large.digest}`);
      assert.ok(Buffer.from(await whole.arrayBuffer()).equals(large.data));
      const part = await other.request("GET", `/v2/big/blob/blobs/${large.digest}`, {
        headers: { Range: "bytes=1000000-2500000" },
      });
      assert.equal(part.status, 206);
      assert.ok(Buffer.from(await part.arrayBuffer()).equals(large.data.subarray(1000000, 2500001)));
    } finally {
      await streaming.stop();
    }
  });

  it("a client that goes away mid-transfer costs only its connection", async () => {
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve) => {
        const request = http.get(new URL(`/v2/big/blob/blobs/${huge.digest}`, registry.url), (response) => {
          let received = 0;
          response.on("data", (chunk: Buffer) => {
            received += chunk.length;
            if (received > 1024 * 1024) request.destroy();
          });
          response.on("close", () => resolve());
        });
        request.on("error", () => resolve());
      });
    }
    const after = await client.request("GET", `/v2/big/blob/blobs/${large.digest}`);
    assert.ok(Buffer.from(await after.arrayBuffer()).equals(large.data));
    assert.doesNotMatch(registry.log(), /request failed|"level":50/);
  });
});
