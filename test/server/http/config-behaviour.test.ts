/** What the reference registry's config keys change, checked against real server processes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Client, blob, errorCode, imageManifest } from "../../helpers/oci.js";

const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;
import { startRegistry } from "../../helpers/registry.js";
import { startReference } from "../../helpers/reference.js";
import { tempDir } from "../../helpers/registry.js";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

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

describe("http.prefix", () => {
  it("serves the API below the path, with Location and Link headers under it, as the reference does", async () => {
    const ours = await startRegistry({ config: { http: { prefix: "/nested/reg/" } } });
    const reference = await startReference(join(tempDir("neam-prefix-ref-"), "data"), {
      prefix: "/nested/reg/",
    });
    try {
      for (const server of [ours, reference]) {
        const base = `${server.url}/nested/reg`;
        assert.equal((await fetch(`${base}/v2/`)).status, 200, server.url);
        assert.equal((await fetch(`${server.url}/v2/`)).status, 404, "outside the prefix");
        assert.equal((await fetch(`${server.url}/nested/regv2/`)).status, 404);
        for (const repo of ["pre/one", "pre/two"]) {
          const image = imageManifest({ layers: 1 });
          for (const b of image.blobs) {
            const post = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: "POST" });
            const location = post.headers.get("Location")!;
            assert.ok(location.startsWith(`${base}/v2/${repo}/blobs/uploads/`), location);
            const put = await fetch(`${location}${location.includes("?") ? "&" : "?"}digest=${b.digest}`, {
              method: "PUT",
              body: b.data,
            });
            assert.equal(put.status, 201);
            assert.equal(put.headers.get("Location"), `${base}/v2/${repo}/blobs/${b.digest}`);
          }
          const manifest = await fetch(`${base}/v2/${repo}/manifests/v1`, {
            method: "PUT",
            body: image.bytes,
            headers: { "Content-Type": image.mediaType },
          });
          assert.equal(manifest.status, 201);
          assert.ok(manifest.headers.get("Location")!.startsWith(`${base}/v2/${repo}/manifests/sha256:`));
          assert.equal(
            (
              await fetch(`${base}/v2/${repo}/manifests/v1`, {
                method: "HEAD",
                headers: { Accept: image.mediaType },
              })
            ).status,
            200,
          );
        }
        const page = await fetch(`${base}/v2/_catalog?n=1`);
        assert.deepEqual(await page.json(), { repositories: ["pre/one"] });
        const link = page.headers.get("Link")!;
        assert.match(link, /^<\/nested\/reg\/v2\/_catalog\?/, link);
        const next = /^<([^>]+)>/.exec(link)![1]!;
        assert.deepEqual(await (await fetch(`${server.url}${next}`)).json(), { repositories: ["pre/two"] });
      }
      // Our own paths live below it too: the chart repository and the admin API the CLI calls.
      assert.equal((await fetch(`${ours.url}/nested/reg/chartrepo/index.yaml`)).status, 200);
      assert.equal((await fetch(`${ours.url}/chartrepo/index.yaml`)).status, 404);
      const gc = spawnSync(process.execPath, [MAIN, "gc", "--url", `${ours.url}/nested/reg/`], {
        encoding: "utf8",
      });
      assert.equal(gc.status, 0, gc.stderr);
    } finally {
      await ours.stop();
      await reference.stop();
    }
  });

  it("that is not a path is refused at start, naming the key", () => {
    const config = join(tempDir(), "config.yml");
    writeFileSync(config, "version: 0.1\nhttp: {prefix: 'nested/reg'}\n");
    const result = spawnSync(process.execPath, [MAIN, "config", "check", "--config", config], {
      encoding: "utf8",
    });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /http\.prefix/);
  });
});
