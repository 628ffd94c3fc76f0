/**
 * Chart uploads that would take the server's memory (a gzip bomb: a few MB expanding to more
 * than 4 GiB), and chart requests that must not tell who may not read them what exists. Against
 * a registry process the test starts, with RSS read from /proc and health polled meanwhile.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { Header } from "tar";
import { chartArchive } from "../helpers/charts.js";
import { basicAuth } from "../helpers/oci.js";
import { rssBytes, startRegistry, tempDir, type RegistryProcess } from "../helpers/registry.js";

const MiB = 1024 * 1024;
/** Each gzip member inflates to this many zeros. */
const MEMBER_BYTES = 256 * MiB;
/** Members in the bomb: 17 × 256 MiB = 4.25 GiB once inflated. */
const MEMBERS = 17;

/**
 * A chart archive that is a gzip bomb: a tar whose first entry, `bomb/templates/zeros`, holds
 * 4.25 GiB of zeros, compressed as consecutive gzip members (valid gzip: `gzip -d` and Node's
 * gunzip read them as one stream), so the test deflates 256 MiB once instead of 4 GiB.
 */
function gzipBomb(): Buffer {
  const total = MEMBER_BYTES * MEMBERS;
  const header = new Header({
    path: "bomb/templates/zeros",
    mode: 0o644,
    size: total,
    type: "File",
    mtime: new Date(0),
  });
  const block = Buffer.alloc(512);
  header.encode(block, 0);
  const zeros = Buffer.alloc(MEMBER_BYTES);
  const member = gzipSync(zeros, { level: 9 });
  const first = gzipSync(Buffer.concat([block, zeros.subarray(512)]), { level: 9 });
  // The first member carries the tar header in place of 512 zeros: the sizes add up to `total`.
  return Buffer.concat([
    first,
    ...Array.from({ length: MEMBERS - 1 }, () => member),
    gzipSync(Buffer.alloc(512)),
  ]);
}

function htpasswdFile(users: string[]): string {
  const file = join(tempDir(), "htpasswd");
  writeFileSync(
    file,
    users
      .map((u) =>
        spawnSync("htpasswd", ["-nbB", "-C", "5", u, `${u}-pw`], { encoding: "utf8" }).stdout.trim(),
      )
      .join("\n") + "\n",
  );
  return file;
}

describe("a gzip bomb uploaded as a chart", () => {
  let registry: RegistryProcess;
  let bomb: Buffer;
  before(async () => {
    bomb = gzipBomb();
    registry = await startRegistry();
  });
  after(() => registry?.stop());

  it("is refused 413 with a clear error; RSS stays within 64 MiB and health answers within 1 s", async () => {
    assert.ok(bomb.length < 8 * MiB, `the bomb is ${bomb.length} bytes`);
    const pid = registry.pids()[0]!;
    const base = rssBytes(pid);
    let peak = base;
    let slowest = 0;
    let uploading = true;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 20);
    const probe = (async () => {
      while (uploading) {
        const started = Date.now();
        const response = await fetch(`${registry.debugUrl}/debug/health`, {
          signal: AbortSignal.timeout(5000),
        });
        assert.equal(response.status, 200);
        slowest = Math.max(slowest, Date.now() - started);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    let response: Response;
    try {
      response = await fetch(`${registry.url}/chartrepo/api/charts`, {
        method: "POST",
        body: bomb,
        headers: { "Content-Type": "application/gzip" },
      });
    } finally {
      uploading = false;
      clearInterval(sampler);
    }
    await probe;
    peak = Math.max(peak, rssBytes(pid));
    assert.equal(response.status, 413);
    assert.match(((await response.json()) as { error: string }).error, /expands more than \d+ times/);
    assert.ok(peak - base < 64 * MiB, `RSS grew by ${Math.round((peak - base) / MiB)} MiB`);
    assert.ok(slowest < 1000, `health took ${slowest} ms during the upload`);
    // The same through cm-push's multipart form.
    const form = new FormData();
    form.append("chart", new Blob([bomb]), "bomb-1.0.0.tgz");
    const multipart = await fetch(`${registry.url}/chartrepo/team/api/charts`, {
      method: "POST",
      body: form,
    });
    assert.equal(multipart.status, 413);
    assert.ok(rssBytes(pid) - base < 64 * MiB);
    // Nothing was stored, and a real chart still goes in.
    const index = await (await fetch(`${registry.url}/chartrepo/api/charts`)).json();
    assert.deepEqual(index, {});
    const chart = await fetch(`${registry.url}/chartrepo/api/charts`, {
      method: "POST",
      body: chartArchive("fine", "1.0.0"),
    });
    assert.equal(chart.status, 201);
  });
});

describe("chart uploads and downloads are authorized before anything is read or looked up", () => {
  let registry: RegistryProcess;
  before(async () => {
    registry = await startRegistry({
      config: {
        auth: {
          htpasswd: { realm: "charts", path: htpasswdFile(["alice", "bob"]) },
          access: {
            rules: [
              { subjects: ["user:alice"], repositories: ["charts/**"], actions: ["*"] },
              { subjects: ["user:bob"], repositories: ["other/**"], actions: ["*"] },
            ],
          },
        },
      },
    });
    const stored = await fetch(`${registry.url}/chartrepo/api/charts`, {
      method: "POST",
      body: chartArchive("secret", "1.0.0"),
      headers: basicAuth("alice", "alice-pw"),
    });
    assert.equal(stored.status, 201);
  });
  after(() => registry?.stop());

  it("a bomb from nobody is refused 401 before its body is read", async () => {
    // Only the headers are sent: the answer must not wait for the body.
    const bomb = gzipBomb();
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(registry.url).port), "127.0.0.1");
      let text = "";
      socket.on("data", (data: Buffer) => {
        text += data.toString("latin1");
        if (text.includes("\r\n\r\n")) resolve(text);
      });
      socket.on("error", reject);
      socket.on("close", () => resolve(text));
      socket.write(
        `POST /chartrepo/api/charts HTTP/1.1\r\nHost: x\r\nContent-Length: ${bomb.length}\r\n\r\n`,
      );
      setTimeout(() => socket.destroy(), 2000).unref();
    });
    assert.match(answer, /^HTTP\/1\.1 401 /);
    assert.match(answer, /WWW-Authenticate: Basic realm="charts"/i);
  });

  it("a chart pushed by a user without push on its repository is 403, and not stored", async () => {
    const response = await fetch(`${registry.url}/chartrepo/api/charts`, {
      method: "POST",
      body: chartArchive("intruder", "1.0.0", 2 * MiB),
      headers: basicAuth("bob", "bob-pw"),
    });
    assert.equal(response.status, 403);
    const index = await fetch(`${registry.url}/chartrepo/api/charts`, {
      headers: basicAuth("alice", "alice-pw"),
    });
    assert.deepEqual(Object.keys((await index.json()) as object), ["secret"]);
  });

  it("charts/<file>: the same answer for an existing and a missing chart to who may not pull", async () => {
    const get = (file: string, headers: Record<string, string> = {}) =>
      fetch(`${registry.url}/chartrepo/charts/${file}`, { headers }).then((r) => r.status);
    for (const method of ["GET", "HEAD"]) {
      const as = (file: string, headers: Record<string, string> = {}) =>
        fetch(`${registry.url}/chartrepo/charts/${file}`, { method, headers }).then((r) => r.status);
      assert.equal(await as("secret-1.0.0.tgz", basicAuth("bob", "bob-pw")), 403, method);
      assert.equal(await as("missing-1.0.0.tgz", basicAuth("bob", "bob-pw")), 403, method);
      assert.equal(await as("secret-1.0.0.tgz"), 401, method);
      assert.equal(await as("missing-1.0.0.tgz"), 401, method);
    }
    // Who may pull tells them apart.
    assert.equal(await get("secret-1.0.0.tgz", basicAuth("alice", "alice-pw")), 200);
    assert.equal(await get("missing-1.0.0.tgz", basicAuth("alice", "alice-pw")), 404);
    // Every other chart route answers bob alike too.
    for (const path of [
      "api/charts/secret",
      "api/charts/missing",
      "api/charts/secret/1.0.0",
      "api/charts/missing/1.0.0",
    ]) {
      const response = await fetch(`${registry.url}/chartrepo/${path}`, {
        headers: basicAuth("bob", "bob-pw"),
      });
      assert.equal(response.status, 403, path);
    }
  });
});
