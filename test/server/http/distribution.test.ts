/**
 * The OCI Distribution spec v1.1.1, requirement by requirement, against a real server process
 * (two workers, so consecutive requests of one upload may land on different processes).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { startRegistry, type RegistryProcess } from "../../helpers/registry.js";
import {
  Client,
  blob,
  errorCode,
  locationPath,
  imageManifest,
  indexManifest,
  sha256,
  OCI_INDEX,
  OCI_MANIFEST,
} from "../../helpers/oci.js";

let registry: RegistryProcess;
let client: Client;

before(async () => {
  registry = await startRegistry({ workers: 2 });
  client = new Client(registry.url);
});
after(async () => {
  await registry?.stop();
});

describe("end-1: determining support", () => {
  it("GET /v2/ answers 200 {} with the API version header", async () => {
    const response = await client.request("GET", "/v2/");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Docker-Distribution-API-Version"), "registry/2.0");
    assert.deepEqual(await response.json(), {});
  });
});

describe("pull: manifests (end-3)", () => {
  const repo = "pull/manifests";
  const manifest = imageManifest({ layers: 2 });
  before(async () => {
    assert.equal((await client.pushManifest(repo, "v1", manifest)).status, 201);
  });

  it("GET by tag returns the exact bytes pushed, their digest and the pushed Content-Type", async () => {
    const response = await client.request("GET", `/v2/${repo}/manifests/v1`, {
      headers: { Accept: OCI_MANIFEST },
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Content-Type"), OCI_MANIFEST);
    assert.equal(response.headers.get("Docker-Content-Digest"), manifest.digest);
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), manifest.bytes);
  });

  it("GET by digest returns the same manifest", async () => {
    const response = await client.request("GET", `/v2/${repo}/manifests/${manifest.digest}`);
    assert.equal(response.status, 200);
    assert.equal(sha256(Buffer.from(await response.arrayBuffer())), manifest.digest);
  });

  it("HEAD answers 200 with digest and Content-Length and no body", async () => {
    const response = await client.request("HEAD", `/v2/${repo}/manifests/v1`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Docker-Content-Digest"), manifest.digest);
    assert.equal(Number(response.headers.get("Content-Length")), manifest.bytes.length);
    assert.equal((await response.arrayBuffer()).byteLength, 0);
  });

  it("an unknown tag, digest or repository is 404 MANIFEST_UNKNOWN", async () => {
    for (const path of [
      `/v2/${repo}/manifests/nope`,
      `/v2/${repo}/manifests/${sha256("x")}`,
      `/v2/no/such/manifests/v1`,
    ]) {
      const response = await client.request("GET", path);
      assert.equal(response.status, 404, path);
      assert.equal(await errorCode(response), "MANIFEST_UNKNOWN");
    }
    assert.equal((await client.request("HEAD", `/v2/${repo}/manifests/nope`)).status, 404);
  });

  it("a manifest of another repository is not served from this one", async () => {
    const response = await client.request("GET", `/v2/pull/other/manifests/${manifest.digest}`);
    assert.equal(response.status, 404);
  });
});

describe("pull: content negotiation (Accept)", () => {
  const repo = "pull/negotiation";
  const amd64 = imageManifest();
  const arm64 = imageManifest();
  const index = indexManifest([amd64, arm64]); // platforms: amd64 first, then arm64
  const DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json";
  before(async () => {
    for (const child of [amd64, arm64]) await client.pushManifest(repo, child.digest, child);
    assert.equal((await client.pushManifest(repo, "multi", index)).status, 201);
    assert.equal((await client.pushManifest(repo, "single", amd64, false)).status, 201);
  });

  const get = (reference: string, accept?: string) =>
    client.request(
      "GET",
      `/v2/${repo}/manifests/${reference}`,
      accept === undefined ? {} : { headers: { Accept: accept } },
    );

  it("serves what was stored to clients that accept it, any type, or say nothing", async () => {
    for (const accept of [
      undefined,
      "*/*",
      `${DOCKER_V2}, ${OCI_INDEX};q=0.9, ${OCI_MANIFEST}`,
      "application/json",
    ]) {
      const response = await get("multi", accept);
      assert.equal(response.status, 200, String(accept));
      assert.equal(response.headers.get("Docker-Content-Digest"), index.digest, String(accept));
    }
  });

  it("answers a client that cannot read an index with the index's linux/amd64 manifest", async () => {
    const response = await get("multi", OCI_MANIFEST);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Content-Type"), OCI_MANIFEST);
    assert.equal(response.headers.get("Docker-Content-Digest"), amd64.digest);
  });

  it("is 404 MANIFEST_UNKNOWN when nothing stored is acceptable", async () => {
    for (const reference of ["multi", "single"]) {
      const response = await get(reference, DOCKER_V2);
      assert.equal(response.status, 404, reference);
      assert.equal(await errorCode(response), "MANIFEST_UNKNOWN");
    }
  });
});

describe("pull: blobs (end-2)", () => {
  const repo = "pull/blobs";
  const content = blob(Buffer.alloc(100_000, 7));
  before(async () => {
    await client.pushBlob(repo, content);
  });

  it("GET returns the content with Docker-Content-Digest", async () => {
    const response = await client.request("GET", `/v2/${repo}/blobs/${content.digest}`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Docker-Content-Digest"), content.digest);
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), content.data);
  });

  it("HEAD returns Content-Length and no body", async () => {
    const response = await client.request("HEAD", `/v2/${repo}/blobs/${content.digest}`);
    assert.equal(response.status, 200);
    assert.equal(Number(response.headers.get("Content-Length")), content.size);
  });

  it("Range requests answer 206 with Content-Range (resumable pull)", async () => {
    const response = await client.request("GET", `/v2/${repo}/blobs/${content.digest}`, {
      headers: { Range: "bytes=10-19" },
    });
    assert.equal(response.status, 206);
    assert.equal(response.headers.get("Content-Range"), `bytes 10-19/${content.size}`);
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), content.data.subarray(10, 20));
    const open = await client.request("GET", `/v2/${repo}/blobs/${content.digest}`, {
      headers: { Range: "bytes=99990-" },
    });
    assert.equal(open.status, 206);
    assert.equal((await open.arrayBuffer()).byteLength, 10);
    const suffix = await client.request("GET", `/v2/${repo}/blobs/${content.digest}`, {
      headers: { Range: "bytes=-5" },
    });
    assert.deepEqual(Buffer.from(await suffix.arrayBuffer()), content.data.subarray(-5));
  });

  it("an unsatisfiable range is 416 with Content-Range: bytes */size", async () => {
    const response = await client.request("GET", `/v2/${repo}/blobs/${content.digest}`, {
      headers: { Range: "bytes=200000-" },
    });
    assert.equal(response.status, 416);
    assert.equal(response.headers.get("Content-Range"), `bytes */${content.size}`);
  });

  it("an unknown blob, or one not linked to the repository, is 404 BLOB_UNKNOWN", async () => {
    for (const path of [
      `/v2/${repo}/blobs/${sha256("missing")}`,
      `/v2/pull/elsewhere/blobs/${content.digest}`,
    ]) {
      const response = await client.request("GET", path);
      assert.equal(response.status, 404);
      assert.equal(await errorCode(response), "BLOB_UNKNOWN");
    }
  });
});

describe("push: monolithic (end-4a, end-4b, end-6)", () => {
  const repo = "push/mono";

  it("POST then PUT ?digest= creates the blob: 202 with Location, then 201 with Location", async () => {
    const content = blob();
    const post = await client.request("POST", `/v2/${repo}/blobs/uploads/`);
    assert.equal(post.status, 202);
    const location = post.headers.get("Location")!;
    assert.match(locationPath(post), /^\/v2\/push\/mono\/blobs\/uploads\/[0-9a-f-]{36}$/);
    assert.ok(post.headers.get("Docker-Upload-UUID"));
    const put = await client.request("PUT", `${location}?digest=${content.digest}`, {
      body: content.data,
      headers: { "Content-Type": "application/octet-stream" },
    });
    assert.equal(put.status, 201);
    assert.equal(locationPath(put), `/v2/${repo}/blobs/${content.digest}`);
    assert.equal(put.headers.get("Docker-Content-Digest"), content.digest);
    assert.equal((await client.request("HEAD", `/v2/${repo}/blobs/${content.digest}`)).status, 200);
  });

  it("a single POST ?digest= with the body creates the blob (201)", async () => {
    const content = blob();
    const response = await client.request("POST", `/v2/${repo}/blobs/uploads/?digest=${content.digest}`, {
      body: content.data,
    });
    assert.equal(response.status, 201);
    assert.equal(locationPath(response), `/v2/${repo}/blobs/${content.digest}`);
  });

  it("a zero-length blob can be pushed and pulled", async () => {
    const empty = blob(Buffer.alloc(0));
    await client.pushBlob(repo, empty);
    const response = await client.request("GET", `/v2/${repo}/blobs/${empty.digest}`);
    assert.equal(response.status, 200);
    assert.equal((await response.arrayBuffer()).byteLength, 0);
  });

  it("a digest that does not match the content is 400 DIGEST_INVALID and nothing is stored", async () => {
    const content = blob();
    const wrong = sha256("something else");
    const response = await client.request("POST", `/v2/${repo}/blobs/uploads/?digest=${wrong}`, {
      body: content.data,
    });
    assert.equal(response.status, 400);
    assert.equal(await errorCode(response), "DIGEST_INVALID");
    assert.equal((await client.request("HEAD", `/v2/${repo}/blobs/${wrong}`)).status, 404);
    assert.equal((await client.request("HEAD", `/v2/${repo}/blobs/${content.digest}`)).status, 404);
  });

  it("PUT without ?digest= is 400 DIGEST_INVALID; a malformed digest too", async () => {
    const location = await client.startUpload(repo);
    const missing = await client.request("PUT", location, { body: "abc" });
    assert.equal(missing.status, 400);
    assert.equal(await errorCode(missing), "DIGEST_INVALID");
    for (const bad of ["sha256:xyz", "md5:abc", "sha256", "sha256:" + "A".repeat(64)]) {
      const response = await client.request("PUT", `${location}?digest=${encodeURIComponent(bad)}`, {
        body: "abc",
      });
      assert.equal(response.status, 400, bad);
      assert.equal(await errorCode(response), "DIGEST_INVALID");
    }
  });

  it("a wrong digest at PUT cancels the session", async () => {
    const location = await client.startUpload(repo);
    const response = await client.request("PUT", `${location}?digest=${sha256("other")}`, { body: "abc" });
    assert.equal(response.status, 400);
    assert.equal((await client.request("GET", location)).status, 404);
  });

  // Bodies up to 1 MiB are read whole and written in one step; larger ones stream through a
  // scratch file: both must store exactly the same, and refuse the same.
  for (const [label, size] of [
    ["small", 3000],
    ["large (streamed)", 1024 * 1024 + 1],
  ] as const) {
    it(`${label} bodies: POST ?digest= and POST-then-PUT store them; a wrong digest stores nothing`, async () => {
      const single = blob(randomBytes(size));
      const post = await client.request("POST", `/v2/${repo}/blobs/uploads/?digest=${single.digest}`, {
        body: single.data,
      });
      assert.equal(post.status, 201);
      const closing = blob(randomBytes(size));
      const location = await client.startUpload(repo);
      const put = await client.request("PUT", `${location}?digest=${closing.digest}`, {
        body: closing.data,
        headers: { "Content-Range": `0-${size - 1}` },
      });
      assert.equal(put.status, 201);
      for (const b of [single, closing]) {
        const get = await client.request("GET", `/v2/${repo}/blobs/${b.digest}`);
        assert.equal(sha256(Buffer.from(await get.arrayBuffer())), b.digest);
      }

      const content = blob(randomBytes(size));
      const wrong = sha256("not this");
      const refused = await client.request("POST", `/v2/${repo}/blobs/uploads/?digest=${wrong}`, {
        body: content.data,
      });
      assert.equal(refused.status, 400);
      assert.equal(await errorCode(refused), "DIGEST_INVALID");
      const session = await client.startUpload(repo);
      const refusedPut = await client.request("PUT", `${session}?digest=${wrong}`, { body: content.data });
      assert.equal(refusedPut.status, 400);
      assert.equal(await errorCode(refusedPut), "DIGEST_INVALID");
      assert.equal((await client.request("GET", session)).status, 404);
      const short = await client.startUpload(repo);
      const mismatched = await client.request("PUT", `${short}?digest=${content.digest}`, {
        body: content.data,
        headers: { "Content-Range": `0-${size}` },
      });
      assert.equal(mismatched.status, 416);
      for (const digest of [wrong, content.digest]) {
        assert.equal((await client.request("HEAD", `/v2/${repo}/blobs/${digest}`)).status, 404);
      }
    });
  }

  it("sha512 digests are accepted", async () => {
    const { createHash } = await import("node:crypto");
    const data = Buffer.from("sha512 content");
    const digest = `sha512:${createHash("sha512").update(data).digest("hex")}`;
    const response = await client.request("POST", `/v2/${repo}/blobs/uploads/?digest=${digest}`, {
      body: data,
    });
    assert.equal(response.status, 201);
    const get = await client.request("GET", `/v2/${repo}/blobs/${digest}`);
    assert.deepEqual(Buffer.from(await get.arrayBuffer()), data);
  });
});

describe("push: chunked and streamed (end-5, end-6, end-13)", () => {
  const repo = "push/chunked";

  it("PATCH chunks in order with Content-Range, then PUT closes the session", async () => {
    const content = blob(Buffer.alloc(300_000, 3));
    let location = await client.startUpload(repo);
    for (let offset = 0; offset < content.size; offset += 100_000) {
      const chunk = content.data.subarray(offset, offset + 100_000);
      const response = await client.request("PATCH", location, {
        body: chunk,
        headers: {
          "Content-Type": "application/octet-stream",
          "Content-Range": `${offset}-${offset + chunk.length - 1}`,
          "Content-Length": String(chunk.length),
        },
      });
      assert.equal(response.status, 202);
      assert.equal(response.headers.get("Range"), `0-${offset + chunk.length - 1}`);
      location = response.headers.get("Location")!;
    }
    const status = await client.request("GET", location);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get("Range"), `0-${content.size - 1}`);
    const put = await client.request("PUT", `${location}?digest=${content.digest}`);
    assert.equal(put.status, 201);
    const get = await client.request("GET", `/v2/${repo}/blobs/${content.digest}`);
    assert.equal(sha256(Buffer.from(await get.arrayBuffer())), content.digest);
  });

  it("an out-of-order chunk is 416 and the session keeps its offset", async () => {
    const location = await client.startUpload(repo);
    const first = await client.request("PATCH", location, {
      body: "hello",
      headers: { "Content-Range": "0-4" },
    });
    assert.equal(first.status, 202);
    const gap = await client.request("PATCH", location, {
      body: "world",
      headers: { "Content-Range": "10-14" },
    });
    assert.equal(gap.status, 416);
    const overlap = await client.request("PATCH", location, {
      body: "world",
      headers: { "Content-Range": "0-4" },
    });
    assert.equal(overlap.status, 416);
    const status = await client.request("GET", location);
    assert.equal(status.headers.get("Range"), "0-4");
  });

  it("a Content-Range that disagrees with Content-Length, or is malformed, is 416", async () => {
    const location = await client.startUpload(repo);
    const mismatch = await client.request("PATCH", location, {
      body: "hello",
      headers: { "Content-Range": "0-9" },
    });
    assert.equal(mismatch.status, 416);
    const malformed = await client.request("PATCH", location, {
      body: "hello",
      headers: { "Content-Range": "bananas" },
    });
    assert.equal(malformed.status, 416);
    assert.equal((await client.request("GET", location)).headers.get("Range"), "0-0");
  });

  it("a streamed PATCH (no Content-Range, chunked encoding) then PUT with the final chunk", async () => {
    const head = Buffer.alloc(50_000, 1);
    const tail = Buffer.alloc(20_000, 2);
    const content = blob(Buffer.concat([head, tail]));
    const location = await client.startUpload(repo);
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(head.subarray(0, 25_000));
        controller.enqueue(head.subarray(25_000));
        controller.close();
      },
    });
    const patch = await client.request("PATCH", location, { body: stream, duplex: "half" } as RequestInit);
    assert.equal(patch.status, 202);
    assert.equal(patch.headers.get("Range"), "0-49999");
    const put = await client.request("PUT", `${patch.headers.get("Location")}?digest=${content.digest}`, {
      body: tail,
      headers: { "Content-Range": "50000-69999" },
    });
    assert.equal(put.status, 201);
    const get = await client.request("GET", `/v2/${repo}/blobs/${content.digest}`);
    assert.equal(sha256(Buffer.from(await get.arrayBuffer())), content.digest);
  });

  it("DELETE cancels a session (204); it is then unknown (404 BLOB_UPLOAD_UNKNOWN)", async () => {
    const location = await client.startUpload(repo);
    assert.equal((await client.request("DELETE", location)).status, 204);
    const status = await client.request("GET", location);
    assert.equal(status.status, 404);
    assert.equal(await errorCode(status), "BLOB_UPLOAD_UNKNOWN");
    assert.equal((await client.request("DELETE", location)).status, 404);
  });

  it("an unknown or malformed upload id is 404 BLOB_UPLOAD_UNKNOWN", async () => {
    for (const id of ["0b8c4c9e-5d0c-4a4f-9d6e-000000000000", "not-a-uuid", "..%2F..%2Fetc"]) {
      for (const method of ["GET", "PATCH", "DELETE"]) {
        const response = await client.request(
          method,
          `/v2/${repo}/blobs/uploads/${id}`,
          method === "PATCH" ? { body: "x" } : {},
        );
        assert.equal(response.status, 404, `${method} ${id}`);
        assert.equal(await errorCode(response), "BLOB_UPLOAD_UNKNOWN");
      }
    }
  });
});

describe("push: cross-repository mount (end-11)", () => {
  const content = blob();
  before(async () => {
    await client.pushBlob("mount/source", content);
  });

  it("mounts from the named repository: 201 with Location and digest", async () => {
    const response = await client.request(
      "POST",
      `/v2/mount/target/blobs/uploads/?mount=${content.digest}&from=mount/source`,
    );
    assert.equal(response.status, 201);
    assert.equal(locationPath(response), `/v2/mount/target/blobs/${content.digest}`);
    assert.equal(response.headers.get("Docker-Content-Digest"), content.digest);
    assert.equal((await client.request("HEAD", `/v2/mount/target/blobs/${content.digest}`)).status, 200);
  });

  it("mounts without from when the blob exists in the registry", async () => {
    const response = await client.request("POST", `/v2/mount/auto/blobs/uploads/?mount=${content.digest}`);
    assert.equal(response.status, 201);
  });

  it("falls back to an upload session (202) when the blob is not in the named repository", async () => {
    const unknown = await client.request(
      "POST",
      `/v2/mount/target2/blobs/uploads/?mount=${sha256("nope")}&from=mount/source`,
    );
    assert.equal(unknown.status, 202);
    assert.ok(unknown.headers.get("Location"));
    const wrongSource = await client.request(
      "POST",
      `/v2/mount/target3/blobs/uploads/?mount=${content.digest}&from=mount/empty`,
    );
    assert.equal(wrongSource.status, 202);
  });
});

describe("push: manifests (end-7)", () => {
  const repo = "push/manifests";

  it("PUT by tag answers 201 with Location and Docker-Content-Digest", async () => {
    const manifest = imageManifest();
    const response = await client.pushManifest(repo, "latest", manifest);
    assert.equal(response.status, 201);
    assert.equal(locationPath(response), `/v2/${repo}/manifests/${manifest.digest}`);
    assert.equal(response.headers.get("Docker-Content-Digest"), manifest.digest);
  });

  it("PUT by digest stores an untagged manifest", async () => {
    const manifest = imageManifest();
    const response = await client.pushManifest(repo, manifest.digest, manifest);
    assert.equal(response.status, 201);
    assert.equal((await client.request("GET", `/v2/${repo}/manifests/${manifest.digest}`)).status, 200);
  });

  it("PUT by a digest that does not match the body is 400 DIGEST_INVALID", async () => {
    const manifest = imageManifest();
    const response = await client.pushManifest(repo, sha256("other"), manifest);
    assert.equal(response.status, 400);
    assert.equal(await errorCode(response), "DIGEST_INVALID");
  });

  it("a manifest referencing a missing blob is 400 MANIFEST_BLOB_UNKNOWN and stores nothing", async () => {
    const manifest = imageManifest();
    await client.pushBlob(repo, manifest.blobs[0]!);
    const response = await client.pushManifest(repo, "broken", manifest, false);
    assert.equal(response.status, 400);
    assert.equal(await errorCode(response), "MANIFEST_BLOB_UNKNOWN");
    assert.equal((await client.request("GET", `/v2/${repo}/manifests/broken`)).status, 404);
    assert.equal((await client.request("GET", `/v2/${repo}/manifests/${manifest.digest}`)).status, 404);
  });

  it("an index whose child manifest is missing is 400 MANIFEST_BLOB_UNKNOWN", async () => {
    const child = imageManifest();
    const response = await client.pushManifest(repo, "idx-broken", indexManifest([child]));
    assert.equal(response.status, 400);
    assert.equal(await errorCode(response), "MANIFEST_BLOB_UNKNOWN");
  });

  it("an index over pushed manifests is accepted and served with the index media type", async () => {
    const children = [imageManifest(), imageManifest()];
    for (const child of children) await client.pushManifest(repo, child.digest, child);
    const index = indexManifest(children);
    assert.equal((await client.pushManifest(repo, "multi", index)).status, 201);
    const response = await client.request("GET", `/v2/${repo}/manifests/multi`);
    assert.equal(response.headers.get("Content-Type"), OCI_INDEX);
  });

  it("invalid manifests are 400 MANIFEST_INVALID", async () => {
    const cases: [string, string][] = [
      ["not json", OCI_MANIFEST],
      ["[]", OCI_MANIFEST],
      [
        JSON.stringify({ schemaVersion: 1, name: "x" }),
        "application/vnd.docker.distribution.manifest.v1+json",
      ],
      [JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] }), OCI_MANIFEST],
      [
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: "x", digest: "bad", size: 1 },
          layers: [],
        }),
        OCI_MANIFEST,
      ],
      [JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }), OCI_MANIFEST],
      [
        JSON.stringify({ schemaVersion: 2, mediaType: "application/x-unknown", manifests: [] }),
        "application/x-unknown",
      ],
    ];
    for (const [body, type] of cases) {
      const response = await client.request("PUT", `/v2/${repo}/manifests/bad`, {
        body,
        headers: { "Content-Type": type },
      });
      assert.equal(response.status, 400, body);
      assert.equal(await errorCode(response), "MANIFEST_INVALID", body);
    }
  });

  it("a manifest above the size limit is 413", async () => {
    const body = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [],
      annotations: { pad: "x".repeat(4 * 1024 * 1024) },
    });
    const response = await client.request("PUT", `/v2/${repo}/manifests/huge`, {
      body,
      headers: { "Content-Type": OCI_INDEX },
    });
    assert.equal(response.status, 413);
  });

  it("an invalid tag is 400", async () => {
    const manifest = imageManifest();
    const response = await client.pushManifest(repo, "-bad", manifest);
    assert.equal(response.status, 400);
    const long = await client.pushManifest(repo, "a".repeat(129), manifest, false);
    assert.equal(long.status, 400);
  });

  it("retagging moves the tag to the new manifest", async () => {
    const first = imageManifest();
    const second = imageManifest();
    await client.pushManifest(repo, "moving", first);
    await client.pushManifest(repo, "moving", second);
    const response = await client.request("HEAD", `/v2/${repo}/manifests/moving`);
    assert.equal(response.headers.get("Docker-Content-Digest"), second.digest);
  });
});

describe("referrers (end-12a, end-12b) and subject", () => {
  const repo = "refs/app";
  const subject = imageManifest();
  const sbom = imageManifest({
    artifactType: "application/vnd.example.sbom.v1",
    annotations: { "org.example.kind": "sbom" },
    subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.bytes.length },
  });
  const signature = imageManifest({
    configMediaType: "application/vnd.example.signature.config.v1+json",
    subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.bytes.length },
  });

  before(async () => {
    // Referrers first: a subject that does not exist yet must be accepted.
    const response = await client.pushManifest(repo, sbom.digest, sbom);
    assert.equal(response.status, 201);
    assert.equal(response.headers.get("OCI-Subject"), subject.digest);
    assert.equal((await client.pushManifest(repo, signature.digest, signature)).status, 201);
    assert.equal((await client.pushManifest(repo, "v1", subject)).status, 201);
  });

  it("lists referrers as an image index with artifactType and annotations", async () => {
    const response = await client.request("GET", `/v2/${repo}/referrers/${subject.digest}`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Content-Type"), OCI_INDEX);
    const index = (await response.json()) as {
      schemaVersion: number;
      mediaType: string;
      manifests: {
        digest: string;
        artifactType?: string;
        annotations?: Record<string, string>;
        size: number;
      }[];
    };
    assert.equal(index.schemaVersion, 2);
    assert.equal(index.mediaType, OCI_INDEX);
    const byDigest = new Map(index.manifests.map((m) => [m.digest, m]));
    assert.equal(byDigest.size, 2);
    assert.equal(byDigest.get(sbom.digest)?.artifactType, "application/vnd.example.sbom.v1");
    assert.deepEqual(byDigest.get(sbom.digest)?.annotations, { "org.example.kind": "sbom" });
    assert.equal(byDigest.get(sbom.digest)?.size, sbom.bytes.length);
    // Without artifactType, an image manifest's config media type stands in.
    assert.equal(
      byDigest.get(signature.digest)?.artifactType,
      "application/vnd.example.signature.config.v1+json",
    );
  });

  it("filters by artifactType and says so in OCI-Filters-Applied", async () => {
    const response = await client.request(
      "GET",
      `/v2/${repo}/referrers/${subject.digest}?artifactType=application/vnd.example.sbom.v1`,
    );
    assert.equal(response.headers.get("OCI-Filters-Applied"), "artifactType");
    const index = (await response.json()) as { manifests: { digest: string }[] };
    assert.deepEqual(
      index.manifests.map((m) => m.digest),
      [sbom.digest],
    );
  });

  it("an unknown subject or repository gets an empty index (200), never 404", async () => {
    for (const path of [
      `/v2/${repo}/referrers/${sha256("none")}`,
      `/v2/refs/none/referrers/${subject.digest}`,
    ]) {
      const response = await client.request("GET", path);
      assert.equal(response.status, 200);
      assert.deepEqual(((await response.json()) as { manifests: unknown[] }).manifests, []);
    }
  });

  it("an invalid digest is 400", async () => {
    const response = await client.request("GET", `/v2/${repo}/referrers/sha256:nothex`);
    assert.equal(response.status, 400);
  });

  it("a deleted referrer leaves the list", async () => {
    const extra = imageManifest({
      artifactType: "application/vnd.example.temp",
      subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.bytes.length },
    });
    await client.pushManifest(repo, extra.digest, extra);
    assert.equal((await client.request("DELETE", `/v2/${repo}/manifests/${extra.digest}`)).status, 202);
    const index = (await (await client.request("GET", `/v2/${repo}/referrers/${subject.digest}`)).json()) as {
      manifests: { digest: string }[];
    };
    assert.ok(!index.manifests.some((m) => m.digest === extra.digest));
  });
});

describe("discovery: tags (end-8a, end-8b) and catalog", () => {
  const repo = "disc/tags";
  const tags = ["b", "a", "C", "v1.0", "v1.1", "_x", "z-9"];
  before(async () => {
    const manifest = imageManifest();
    await client.pushManifest(repo, tags[0]!, manifest);
    for (const tag of tags.slice(1)) await client.pushManifest(repo, tag, manifest, false);
  });

  it("lists all tags in lexical order", async () => {
    const response = await client.request("GET", `/v2/${repo}/tags/list`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { name: repo, tags: [...tags].sort() });
  });

  it("paginates with n and Link, and continues after last", async () => {
    const sorted = [...tags].sort();
    const seen: string[] = [];
    let path: string | undefined = `/v2/${repo}/tags/list?n=3`;
    while (path !== undefined) {
      const response = await client.request("GET", path);
      const body = (await response.json()) as { tags: string[] };
      assert.ok(body.tags.length <= 3);
      seen.push(...body.tags);
      const link = response.headers.get("Link");
      path = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1] : undefined;
    }
    assert.deepEqual(seen, sorted);
    const after = await client.request("GET", `/v2/${repo}/tags/list?n=2&last=${sorted[2]}`);
    assert.deepEqual(((await after.json()) as { tags: string[] }).tags, sorted.slice(3, 5));
    const lastOnly = await client.request("GET", `/v2/${repo}/tags/list?last=${sorted[4]}`);
    assert.deepEqual(((await lastOnly.json()) as { tags: string[] }).tags, sorted.slice(5));
  });

  it("n=0 returns an empty list and no Link", async () => {
    const response = await client.request("GET", `/v2/${repo}/tags/list?n=0`);
    assert.deepEqual(((await response.json()) as { tags: string[] }).tags, []);
    assert.equal(response.headers.get("Link"), null);
  });

  it("a bad n is 400", async () => {
    assert.equal((await client.request("GET", `/v2/${repo}/tags/list?n=-1`)).status, 400);
    assert.equal((await client.request("GET", `/v2/${repo}/tags/list?n=abc`)).status, 400);
  });

  it("an unknown repository is 404 NAME_UNKNOWN", async () => {
    const response = await client.request("GET", "/v2/disc/unknown/tags/list");
    assert.equal(response.status, 404);
    assert.equal(await errorCode(response), "NAME_UNKNOWN");
  });

  it("the catalog lists repositories in order and paginates", async () => {
    const all = ((await (await client.request("GET", "/v2/_catalog")).json()) as { repositories: string[] })
      .repositories;
    assert.ok(all.includes(repo));
    assert.deepEqual(all, [...all].sort());
    const first = await client.request("GET", "/v2/_catalog?n=1");
    assert.equal(((await first.json()) as { repositories: string[] }).repositories.length, 1);
    assert.match(first.headers.get("Link") ?? "", /^<\/v2\/_catalog\?n=1&last=[^>]+>; rel="next"$/);
  });
});

describe("content management (end-9, end-10)", () => {
  const repo = "manage/app";

  it("deleting a tag (202) removes the tag but not the manifest", async () => {
    const manifest = imageManifest();
    await client.pushManifest(repo, "temp", manifest);
    assert.equal((await client.request("DELETE", `/v2/${repo}/manifests/temp`)).status, 202);
    assert.equal((await client.request("GET", `/v2/${repo}/manifests/temp`)).status, 404);
    assert.equal((await client.request("GET", `/v2/${repo}/manifests/${manifest.digest}`)).status, 200);
    assert.equal((await client.request("DELETE", `/v2/${repo}/manifests/temp`)).status, 404);
  });

  it("deleting a manifest by digest (202) removes it and every tag pointing at it", async () => {
    const manifest = imageManifest();
    await client.pushManifest(repo, "one", manifest);
    await client.pushManifest(repo, "two", manifest, false);
    assert.equal((await client.request("DELETE", `/v2/${repo}/manifests/${manifest.digest}`)).status, 202);
    for (const ref of ["one", "two", manifest.digest]) {
      assert.equal((await client.request("GET", `/v2/${repo}/manifests/${ref}`)).status, 404, ref);
    }
    const tags = ((await (await client.request("GET", `/v2/${repo}/tags/list`)).json()) as { tags: string[] })
      .tags;
    assert.ok(!tags.includes("one") && !tags.includes("two"));
    assert.equal((await client.request("DELETE", `/v2/${repo}/manifests/${manifest.digest}`)).status, 404);
  });

  it("deleting a blob (202) unlinks it; deleting it again is 404", async () => {
    const content = blob();
    await client.pushBlob(repo, content);
    assert.equal((await client.request("DELETE", `/v2/${repo}/blobs/${content.digest}`)).status, 202);
    assert.equal((await client.request("HEAD", `/v2/${repo}/blobs/${content.digest}`)).status, 404);
    const again = await client.request("DELETE", `/v2/${repo}/blobs/${content.digest}`);
    assert.equal(again.status, 404);
    assert.equal(await errorCode(again), "BLOB_UNKNOWN");
  });
});

describe("bad input is a 4xx with the spec's code, never a 500", () => {
  it("invalid repository names are 400 NAME_INVALID", async () => {
    const names = ["UPPER/case", "a/../b", "%2e%2e/x", "a//b", "-lead", "a".repeat(256), "x%00y", "trail-"];
    for (const name of names) {
      const response = await client.raw("GET", `/v2/${name}/tags/list`);
      assert.equal(response.status, 400, name);
      assert.equal(JSON.parse(response.body).errors[0].code, "NAME_INVALID", name);
    }
  });

  it("malformed digests in blob, manifest and mount URLs are 400 DIGEST_INVALID", async () => {
    for (const path of [
      "/v2/bad/in/blobs/sha256:123",
      "/v2/bad/in/blobs/sha256:..%2F..%2Fetc",
      "/v2/bad/in/manifests/sha256:zz",
      "/v2/bad/in/blobs/uploads/?mount=sha256:nope&from=x",
      "/v2/bad/in/blobs/uploads/?digest=foo:bar",
    ]) {
      const method = path.includes("uploads") ? "POST" : "GET";
      const response = await client.request(method, path);
      assert.equal(response.status, 400, path);
      assert.equal(await errorCode(response), "DIGEST_INVALID", path);
    }
  });

  it("an unsupported method on a known endpoint is 405 UNSUPPORTED", async () => {
    const response = await client.request("PATCH", "/v2/some/repo/manifests/latest");
    assert.equal(response.status, 405);
    assert.equal(await errorCode(response), "UNSUPPORTED");
  });

  it("nothing stored earlier is affected by the bad requests above", async () => {
    const response = await client.request("GET", "/v2/pull/manifests/manifests/v1");
    assert.equal(response.status, 200);
    assert.ok(!registry.log().includes('"level":50'), "no request failed with an internal error");
  });
});
