/**
 * A chunked upload's running sha256 is saved in storage after each chunk
 * (`_uploads/<id>/hashstates/sha256/<offset>`, in the reference registry's format), so a session
 * resumed after a restart, or on another replica, commits without reading its data back; a saved
 * state that is missing, torn or wrong only costs that read.
 *
 * "Without reading back" is shown by changing the upload's data file on disk while the server is
 * down (same size, other bytes): a commit that re-read it would compute another digest and refuse
 * the upload; one that continues the saved hash accepts the digest of what the client sent.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  openSync,
  readFileSync,
  readdirSync,
  writeFileSync,
  writeSync,
  closeSync,
} from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { native } from "../../../server/src/native.js";
import { Client, blob, sha256 } from "../../helpers/oci.js";
import { startReference } from "../../helpers/reference.js";
import { startRegistry, tempDir, type RegistryProcess } from "../../helpers/registry.js";

const skip = native === undefined ? "hash states are saved by the native addon, not built here" : false;

/** Chunks of odd sizes, so saved states hold a partial sha256 block. */
const parts = [randomBytes(1024 * 1024 + 13), randomBytes(2 * 1024 * 1024 + 7), randomBytes(333)];
const whole = blob(Buffer.concat(parts));

function uploadDir(root: string, repo: string, location: string): string {
  const id = location.split("/").at(-1)!.split("?")[0]!;
  return join(root, "docker/registry/v2/repositories", repo, "_uploads", id);
}

/** Overwrites the first bytes of the upload's data with other bytes, keeping its size. */
function scribble(dir: string): void {
  const fd = openSync(join(dir, "data"), "r+");
  writeSync(fd, randomBytes(4096), 0, 4096, 0);
  closeSync(fd);
}

const patch = (client: Client, location: string, offset: number, data: Buffer) =>
  client.patchChunk(location, offset, data);

/** A Location without its host (a restarted server listens elsewhere), query kept (the reference's `_state`). */
function pathOf(location: string, base: string): string {
  const url = new URL(location, base);
  return url.pathname + url.search;
}

/** Starts an upload on `registry` and sends the first two parts; the path of the session. */
async function firstTwoParts(registry: RegistryProcess | { url: string }, repo: string): Promise<string> {
  const client = new Client(registry.url);
  let location = pathOf(await client.startUpload(repo), registry.url);
  location = await patch(client, location, 0, parts[0]!);
  return patch(client, location, parts[0]!.length, parts[1]!);
}

/** On a restarted server: the last part, then the commit; the commit's status. */
async function finish(registry: RegistryProcess, location: string): Promise<number> {
  const client = new Client(registry.url);
  const last = await patch(client, location, parts[0]!.length + parts[1]!.length, parts[2]!);
  const put = await client.request("PUT", `${last}${last.includes("?") ? "&" : "?"}digest=${whole.digest}`);
  return put.status;
}

describe("chunked upload hash states", { skip }, () => {
  it("a session resumed after a restart commits from its saved hash, without reading its data back", async () => {
    const root = join(tempDir(), "data");
    let registry = await startRegistry({ root });
    const location = await firstTwoParts(registry, "hs/resumed");
    await registry.kill();

    const dir = uploadDir(root, "hs/resumed", location);
    const size = parts[0]!.length + parts[1]!.length;
    // One state, for the bytes received so far, in the reference registry's (Go's) format.
    assert.deepEqual(readdirSync(join(dir, "hashstates/sha256")), [String(size)]);
    const state = readFileSync(join(dir, "hashstates/sha256", String(size)));
    assert.equal(state.length, 108);
    assert.equal(state.subarray(0, 4).toString("latin1"), "sha\x03");
    scribble(dir);

    registry = await startRegistry({ root });
    try {
      assert.equal(await finish(registry, location), 201);
    } finally {
      await registry.stop();
    }
  });

  for (const [label, spoil] of [
    ["torn", (state: Buffer) => state.subarray(0, 50)],
    ["well-formed but wrong", (state: Buffer) => Buffer.from(state).fill(0x5a, 4, 36)],
  ] as const) {
    it(`a ${label} saved hash falls back to reading the data`, async () => {
      const root = join(tempDir(), "data");
      let registry = await startRegistry({ root });
      const location = await firstTwoParts(registry, "hs/spoiled");
      await registry.kill();
      const states = join(uploadDir(root, "hs/spoiled", location), "hashstates/sha256");
      for (const name of readdirSync(states)) {
        writeFileSync(join(states, name), spoil(readFileSync(join(states, name))));
      }

      registry = await startRegistry({ root });
      try {
        assert.equal(await finish(registry, location), 201);
        const get = await new Client(registry.url).request("GET", `/v2/hs/spoiled/blobs/${whole.digest}`);
        assert.equal(sha256(Buffer.from(await get.arrayBuffer())), whole.digest);
      } finally {
        await registry.stop();
      }
    });
  }

  it("a session the reference registry began is committed from the hash state it saved", async (t) => {
    if (!existsSync("/usr/bin/docker-registry")) return t.skip("docker-registry is not installed");
    const root = join(tempDir(), "data");
    const reference = await startReference(root);
    let location: string;
    try {
      location = await firstTwoParts(reference, "hs/reference");
    } finally {
      await reference.stop();
    }
    scribble(uploadDir(root, "hs/reference", location));
    const registry = await startRegistry({ root });
    try {
      assert.equal(await finish(registry, location), 201);
    } finally {
      await registry.stop();
    }
  });
});
