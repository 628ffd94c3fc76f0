// The bench's keep-alive HTTP/1.1 client (bench/http1.ts) decides which answers of the mixed load
// count as errors, so it must read every framing a registry uses — length, chunked, HEAD, 204 —
// keep one connection in step across them, and recover from a connection the server drops.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import { Http1 } from "../../../bench/http1.js";
import { startHttpServer } from "../../helpers/http-server.js";

let server: Awaited<ReturnType<typeof startHttpServer>>;

before(async () => {
  server = await startHttpServer(async (request, response) => {
    const body: Buffer[] = [];
    for await (const chunk of request) body.push(chunk as Buffer);
    const received = Buffer.concat(body);
    switch (request.url) {
      case "/length":
        response.setHeader("Content-Length", "5");
        response.setHeader("X-Mixed-Case", "Value");
        response.end("hello");
        return;
      case "/chunked":
        response.write("first ");
        await new Promise((r) => setTimeout(r, 20));
        response.write("second ");
        response.end("third");
        return;
      case "/head":
        // A HEAD answer announces the length of a body it does not send.
        response.setHeader("Content-Length", "1048576");
        response.end();
        return;
      case "/empty":
        response.statusCode = 204;
        response.end();
        return;
      case "/echo":
        response.setHeader("Content-Length", "71");
        response.end(`sha256:${createHash("sha256").update(received).digest("hex")}`);
        return;
      case "/drop":
        response.socket?.destroy();
        return;
      case "/hang":
        return;
      default:
        response.statusCode = 404;
        response.end("not found");
    }
  });
});

after(async () => {
  await server.stop();
});

test("one connection reads length, chunked, HEAD and 204 answers in turn", async () => {
  const conn = new Http1("127.0.0.1", server.port, 5000);
  const seen = server.requests.length;
  try {
    const plain = await conn.request("GET", "/length");
    assert.equal(plain.status, 200);
    assert.equal(plain.body.toString(), "hello");
    assert.equal(plain.headers.get("x-mixed-case"), "Value");
    const chunked = await conn.request("GET", "/chunked");
    assert.equal(chunked.body.toString(), "first second third");
    const head = await conn.request("HEAD", "/head");
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers.get("content-length"), "1048576");
    const empty = await conn.request("GET", "/empty");
    assert.equal(empty.status, 204);
    const missing = await conn.request("GET", "/nowhere");
    assert.equal(missing.status, 404);
    assert.equal(missing.body.toString(), "not found");
    // Still in step: the answer after all of them is its own.
    assert.equal((await conn.request("GET", "/length")).body.toString(), "hello");
  } finally {
    conn.close();
  }
  assert.deepEqual(
    server.requests.slice(seen).map((r) => `${r.method} ${r.url}`),
    ["GET /length", "GET /chunked", "HEAD /head", "GET /empty", "GET /nowhere", "GET /length"],
  );
});

test("a request body arrives byte for byte, small or large", async () => {
  const conn = new Http1("127.0.0.1", server.port, 5000);
  try {
    for (const size of [0, 1, 64 * 1024, 3 * 1024 * 1024]) {
      const body = Buffer.alloc(size, size % 251);
      const reply = await conn.request("PUT", "/echo", { "Content-Type": "application/octet-stream" }, body);
      assert.equal(
        reply.body.toString(),
        `sha256:${createHash("sha256").update(body).digest("hex")}`,
        `${size}`,
      );
    }
  } finally {
    conn.close();
  }
});

test("a dropped connection fails the request in flight and the next one reconnects", async () => {
  const conn = new Http1("127.0.0.1", server.port, 5000);
  try {
    await assert.rejects(conn.request("GET", "/drop"), /connection closed|ECONNRESET/);
    assert.equal((await conn.request("GET", "/length")).body.toString(), "hello");
  } finally {
    conn.close();
  }
});

test("an answer that does not come fails the request after the bound, and the connection recovers", async () => {
  const conn = new Http1("127.0.0.1", server.port, 300);
  try {
    await assert.rejects(conn.request("GET", "/hang"), /no answer within 300 ms/);
    assert.equal((await conn.request("GET", "/length")).body.toString(), "hello");
  } finally {
    conn.close();
  }
});
