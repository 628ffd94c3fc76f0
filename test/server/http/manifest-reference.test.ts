/**
 * What the OCI conformance suite v1.1.1 expects of manifest references (its "Pull manifests",
 * "Error codes" and "Manifest delete" cases, and their neighbours), against a real server. The Go
 * suite cannot be fetched here, so its expectations are written down as tests.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startRegistry, type RegistryProcess } from "../../helpers/registry.js";
import { Client, errorCode, imageManifest, OCI_MANIFEST } from "../../helpers/oci.js";

/** The suite's `nonexistentManifest`: a leading dot makes it no tag at all. */
const NOT_A_TAG = ".INVALID_MANIFEST_NAME";
/** The error codes of the spec's table: a 4xx body must carry one of them. */
const SPEC_CODES = [
  "BLOB_UNKNOWN",
  "BLOB_UPLOAD_INVALID",
  "BLOB_UPLOAD_UNKNOWN",
  "DIGEST_INVALID",
  "MANIFEST_BLOB_UNKNOWN",
  "MANIFEST_INVALID",
  "MANIFEST_UNKNOWN",
  "NAME_INVALID",
  "NAME_UNKNOWN",
  "SIZE_INVALID",
  "UNAUTHORIZED",
  "DENIED",
  "UNSUPPORTED",
  "TOOMANYREQUESTS",
];

let registry: RegistryProcess;
let client: Client;
const repo = "conformance/refs";
const manifest = imageManifest();

before(async () => {
  registry = await startRegistry();
  client = new Client(registry.url);
  const pushed = await client.pushManifest(repo, "tagtest0", manifest);
  assert.equal(pushed.status, 201);
});
after(async () => {
  await registry?.stop();
});

describe("a reference that is neither a tag nor a digest", () => {
  it("HEAD is 404", async () => {
    const response = await client.request("HEAD", `/v2/${repo}/manifests/${NOT_A_TAG}`);
    assert.equal(response.status, 404);
  });

  it("GET is 404 MANIFEST_UNKNOWN", async () => {
    const response = await client.request("GET", `/v2/${repo}/manifests/${NOT_A_TAG}`, {
      headers: { Accept: OCI_MANIFEST },
    });
    assert.equal(response.status, 404);
    assert.equal(await errorCode(response), "MANIFEST_UNKNOWN");
  });

  it("GET of a 129-character name and of one in a repository never pushed are 404 too", async () => {
    for (const path of [`/v2/${repo}/manifests/${"a".repeat(129)}`, `/v2/never/pushed/manifests/-x`]) {
      const response = await client.request("GET", path);
      assert.equal(response.status, 404, path);
      assert.equal(await errorCode(response), "MANIFEST_UNKNOWN", path);
    }
  });

  it("DELETE is 404 MANIFEST_UNKNOWN and deletes nothing", async () => {
    const response = await client.request("DELETE", `/v2/${repo}/manifests/${NOT_A_TAG}`);
    assert.equal(response.status, 404);
    assert.equal(await errorCode(response), "MANIFEST_UNKNOWN");
    const still = await client.request("HEAD", `/v2/${repo}/manifests/tagtest0`);
    assert.equal(still.status, 200);
  });

  it("PUT is still 400 MANIFEST_INVALID, and stores nothing", async () => {
    const response = await client.pushManifest(repo, NOT_A_TAG, imageManifest());
    assert.equal(response.status, 400);
    assert.equal(await errorCode(response), "MANIFEST_INVALID");
    const tags = (await (await client.request("GET", `/v2/${repo}/tags/list`)).json()) as { tags: string[] };
    assert.deepEqual(tags.tags, ["tagtest0"]);
  });
});

describe("neighbouring cases of the suite", () => {
  it("HEAD and GET by tag and by digest are 200 with the digest", async () => {
    for (const method of ["HEAD", "GET"])
      for (const reference of ["tagtest0", manifest.digest]) {
        const response = await client.request(method, `/v2/${repo}/manifests/${reference}`, {
          headers: { Accept: OCI_MANIFEST },
        });
        assert.equal(response.status, 200, `${method} ${reference}`);
        assert.equal(response.headers.get("Docker-Content-Digest"), manifest.digest);
      }
  });

  it("a valid tag that was never pushed is 404 MANIFEST_UNKNOWN", async () => {
    const response = await client.request("GET", `/v2/${repo}/manifests/nosuchtag`);
    assert.equal(response.status, 404);
    assert.equal(await errorCode(response), "MANIFEST_UNKNOWN");
  });

  it("an unknown blob digest is 404 to HEAD and GET", async () => {
    const dummy = `sha256:${"0".repeat(64)}`;
    for (const method of ["HEAD", "GET"]) {
      const response = await client.request(method, `/v2/${repo}/blobs/${dummy}`);
      assert.equal(response.status, 404, method);
    }
  });

  it("PUT to `sha256:totallywrong` is 400 with a code from the spec's table", async () => {
    const response = await client.request("PUT", `/v2/${repo}/manifests/sha256:totallywrong`, {
      body: "{}",
      headers: { "Content-Type": OCI_MANIFEST },
    });
    assert.equal(response.status, 400);
    const code = await errorCode(response);
    assert.ok(code !== undefined && SPEC_CODES.includes(code), String(code));
  });

  it("a malformed digest stays 400 DIGEST_INVALID for GET and DELETE (it is a digest, badly written)", async () => {
    for (const method of ["GET", "DELETE"]) {
      const response = await client.request(method, `/v2/${repo}/manifests/sha256:zz`);
      assert.equal(response.status, 400, method);
      assert.equal(await errorCode(response), "DIGEST_INVALID", method);
    }
  });

  it("DELETE by tag is 202, then by digest 202, then GET by digest 404", async () => {
    const deleted = await client.request("DELETE", `/v2/${repo}/manifests/tagtest0`);
    assert.equal(deleted.status, 202);
    const byDigest = await client.request("DELETE", `/v2/${repo}/manifests/${manifest.digest}`);
    assert.equal(byDigest.status, 202);
    const gone = await client.request("GET", `/v2/${repo}/manifests/${manifest.digest}`);
    assert.equal(gone.status, 404);
    assert.equal(await errorCode(gone), "MANIFEST_UNKNOWN");
  });
});
