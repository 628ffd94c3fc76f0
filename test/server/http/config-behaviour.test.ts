/** What the reference registry's config keys change, checked against real server processes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Client, blob, errorCode, imageManifest } from "../../helpers/oci.js";
import { startRegistry } from "../../helpers/registry.js";

describe("Location headers", () => {
  it("are absolute, from the request's scheme and Host, by default (as the reference)", async () => {
    const registry = await startRegistry();
    try {
      const response = await new Client(registry.url).request("POST", "/v2/loc/app/blobs/uploads/");
      assert.match(
        response.headers.get("Location")!,
        new RegExp(`^http://${registry.host}/v2/loc/app/blobs/uploads/[0-9a-f-]{36}$`),
      );
    } finally {
      await registry.stop();
    }
  });

  it("are relative with http.relativeurls, and use http.host when configured", async () => {
    const relative = await startRegistry({ config: { http: { relativeurls: true } } });
    const hosted = await startRegistry({
      config: { http: { host: "https://registry.neam.internal:5000/" } },
    });
    try {
      const r1 = await new Client(relative.url).request("POST", "/v2/loc/app/blobs/uploads/");
      assert.match(r1.headers.get("Location")!, /^\/v2\/loc\/app\/blobs\/uploads\//);
      const content = blob();
      const r2 = await new Client(hosted.url).pushBlob("loc/app", content);
      assert.equal(
        r2.headers.get("Location"),
        `https://registry.neam.internal:5000/v2/loc/app/blobs/${content.digest}`,
      );
    } finally {
      await relative.stop();
      await hosted.stop();
    }
  });
});

describe("storage.delete.enabled: false", () => {
  it("answers every delete with 405 UNSUPPORTED and keeps the content", async () => {
    const registry = await startRegistry({ deleteEnabled: false });
    const client = new Client(registry.url);
    try {
      const manifest = imageManifest();
      await client.pushManifest("nodelete/app", "v1", manifest);
      for (const path of [
        `/v2/nodelete/app/manifests/${manifest.digest}`,
        "/v2/nodelete/app/manifests/v1",
        `/v2/nodelete/app/blobs/${manifest.blobs[0]!.digest}`,
      ]) {
        const response = await client.request("DELETE", path);
        assert.equal(response.status, 405, path);
        assert.equal(await errorCode(response), "UNSUPPORTED");
      }
      assert.equal((await client.request("GET", "/v2/nodelete/app/manifests/v1")).status, 200);
    } finally {
      await registry.stop();
    }
  });
});

describe("storage.maintenance.readonly", () => {
  it("serves pulls and refuses pushes, mounts and deletes with 405 UNSUPPORTED", async () => {
    const writable = await startRegistry();
    const manifest = imageManifest();
    await new Client(writable.url).pushManifest("ro/app", "v1", manifest);
    await writable.stop();
    const registry = await startRegistry({
      root: writable.root,
      config: { storage: { maintenance: { readonly: { enabled: true } } } },
    });
    const client = new Client(registry.url);
    try {
      assert.equal((await client.request("GET", "/v2/ro/app/manifests/v1")).status, 200);
      const attempts: [string, string, RequestInit?][] = [
        ["POST", "/v2/ro/app/blobs/uploads/"],
        ["POST", `/v2/ro/app/blobs/uploads/?digest=${blob(Buffer.from("x")).digest}`, { body: "x" }],
        ["POST", `/v2/ro/other/blobs/uploads/?mount=${manifest.blobs[0]!.digest}&from=ro/app`],
        [
          "PUT",
          "/v2/ro/app/manifests/v2",
          { body: manifest.bytes, headers: { "Content-Type": manifest.mediaType } },
        ],
        ["DELETE", "/v2/ro/app/manifests/v1"],
      ];
      for (const [method, path, init] of attempts) {
        const response = await client.request(method, path, init);
        assert.equal(response.status, 405, `${method} ${path}`);
        assert.equal(await errorCode(response), "UNSUPPORTED");
      }
      assert.equal((await client.request("GET", "/v2/ro/app/manifests/v1")).status, 200);
    } finally {
      await registry.stop();
    }
  });
});
