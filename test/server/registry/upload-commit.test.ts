/**
 * A chunked upload whose running hash the server holds commits in one storage step, without
 * asking for the session's size first: the move of the data checks that it holds exactly the
 * bytes that hash covers. Shown with two servers on one root (as replicas share one): a chunk
 * appended through the other server is never stored under the digest of fewer bytes.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Client, sha256 } from "../../helpers/oci.js";
import { startRegistry, type RegistryProcess } from "../../helpers/registry.js";

const REPO = "commit/check";

const patch = (client: Client, location: string, offset: number, data: Buffer) =>
  client.patchChunk(location, offset, data);

async function commit(client: Client, location: string, digest: string): Promise<Response> {
  return client.request("PUT", `${location}${location.includes("?") ? "&" : "?"}digest=${digest}`);
}

describe("upload commit", () => {
  let a: RegistryProcess;
  let b: RegistryProcess;
  before(async () => {
    a = await startRegistry();
    b = await startRegistry({ root: a.root });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
  });

  it("a chunk appended through another server is never stored under the digest of the chunks before it", async () => {
    const [first, second] = [randomBytes(4000), randomBytes(3000)];
    const onA = new Client(a.url);
    const onB = new Client(b.url);
    let location = new URL(await onA.startUpload(REPO), a.url).pathname;
    location = await patch(onA, location, 0, first);
    // A holds the running hash of `first`; the second chunk goes through B.
    await patch(onB, location, first.length, second);
    const short = await commit(onA, location, sha256(first));
    assert.equal(short.status, 400, await short.text());
    assert.equal((await onA.request("HEAD", `/v2/${REPO}/blobs/${sha256(first)}`)).status, 404);
  });

  it("and with the digest of everything, the commit stores everything", async () => {
    const [first, second] = [randomBytes(5000), randomBytes(2000)];
    const all = Buffer.concat([first, second]);
    const onA = new Client(a.url);
    const onB = new Client(b.url);
    let location = new URL(await onA.startUpload(REPO), a.url).pathname;
    location = await patch(onA, location, 0, first);
    await patch(onB, location, first.length, second);
    const put = await commit(onA, location, sha256(all));
    assert.equal(put.status, 201, await put.text());
    const got = await onA.request("GET", `/v2/${REPO}/blobs/${sha256(all)}`);
    assert.equal(got.status, 200);
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(all));
    // The session is gone with the commit.
    assert.equal((await onA.request("GET", location)).status, 404);
  });

  it("a chunked upload committed on the server that hashed it stores the blob and removes the session", async () => {
    const data = randomBytes(6000);
    const client = new Client(a.url);
    let location = new URL(await client.startUpload(REPO), a.url).pathname;
    location = await patch(client, location, 0, data.subarray(0, 2500));
    location = await patch(client, location, 2500, data.subarray(2500));
    const put = await commit(client, location, sha256(data));
    assert.equal(put.status, 201, await put.text());
    const got = await client.request("GET", `/v2/${REPO}/blobs/${sha256(data)}`);
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(data));
    assert.equal((await client.request("GET", location)).status, 404);
    assert.equal((await commit(client, location, sha256(data))).status, 404);
  });
});
