/**
 * The operations guide's commands that talk to the registry, run as written (host and port
 * replaced), against our registry with htpasswd auth as in values-production.yaml.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { Client, blob, imageManifest } from "../helpers/oci.js";
import { startRegistry, tempDir, type RegistryProcess } from "../helpers/registry.js";

let registry: RegistryProcess;
let open: RegistryProcess;

/** Runs a shell line from the guide with `local-registry:5000` / `localhost:5001` pointed at ours. */
function guide(line: string, server = registry): { status: number; stdout: string } {
  const port = server.host.split(":")[1]!;
  const debugPort = new URL(server.debugUrl).port;
  const command = line
    .replaceAll("local-registry:5000", `127.0.0.1:${port}`)
    .replaceAll("localhost:5000", `127.0.0.1:${port}`)
    .replaceAll("local-registry:5001", `127.0.0.1:${debugPort}`);
  const result = spawnSync("sh", ["-c", command], { encoding: "utf8" });
  return { status: result.status ?? -1, stdout: result.stdout };
}

before(async () => {
  const htpasswd = join(tempDir(), "htpasswd");
  writeFileSync(
    htpasswd,
    spawnSync("htpasswd", ["-nbB", "-C", "5", "admin", "password"], { encoding: "utf8" }).stdout,
  );
  registry = await startRegistry({
    config: { auth: { htpasswd: { realm: "basic-realm", path: htpasswd } } },
  });
  open = await startRegistry();
  const layout = join(tempDir(), "layout");
  writeOciLayout(layout, "tag", "guide");
  const pushed = spawnSync(
    "skopeo",
    [
      "--insecure-policy",
      "copy",
      "--all",
      "--dest-tls-verify=false",
      "--dest-creds",
      "admin:password",
      `oci:${layout}:tag`,
      `docker://${registry.host}/image:tag`,
    ],
    { encoding: "utf8" },
  );
  assert.equal(pushed.status, 0, pushed.stderr);
});
after(async () => {
  await registry?.stop();
  await open?.stop();
});

describe("operations guide commands", () => {
  it("Verify Deployment: curl -s http://local-registry:5000/v2/ | jq . prints {}", () => {
    assert.deepEqual(JSON.parse(guide("curl -s http://local-registry:5000/v2/ | jq .", open).stdout), {});
  });

  it("Daily tasks: wget -q -O - http://localhost:5000/v2/", () => {
    const result = guide("wget -q -O - http://localhost:5000/v2/", open);
    assert.equal(result.status, 0);
    assert.equal(result.stdout, "{}");
  });

  it("Authentication: curl -u username:password http://local-registry:5000/v2/", () => {
    assert.equal(
      guide("curl -s -o /dev/null -w '%{http_code}' -u admin:password http://local-registry:5000/v2/").stdout,
      "200",
    );
    assert.equal(
      guide("curl -s -o /dev/null -w '%{http_code}' http://local-registry:5000/v2/").stdout,
      "401",
    );
  });

  it("Catalog operations: _catalog, tags/list, manifests/<tag>, blobs/<digest>", () => {
    assert.deepEqual(
      JSON.parse(guide("curl -s -u admin:password http://local-registry:5000/v2/_catalog").stdout),
      { repositories: ["image"] },
    );
    assert.deepEqual(
      JSON.parse(guide("curl -s -u admin:password http://local-registry:5000/v2/image/tags/list").stdout),
      { name: "image", tags: ["tag"] },
    );
    const manifest = JSON.parse(
      guide("curl -s -u admin:password http://local-registry:5000/v2/image/manifests/tag").stdout,
    );
    assert.equal(manifest.schemaVersion, 2);
    const child = JSON.parse(
      guide(
        `curl -s -u admin:password http://local-registry:5000/v2/image/manifests/${manifest.manifests[0].digest}`,
      ).stdout,
    );
    const blob = guide(
      `curl -s -u admin:password http://local-registry:5000/v2/image/blobs/${child.config.digest} | sha256sum`,
    ).stdout;
    assert.equal(`sha256:${blob.split(" ")[0]}`, child.config.digest);
  });

  it("Health: curl http://localhost:5000/debug/health", () => {
    assert.equal(guide("curl -s http://localhost:5000/debug/health").stdout, "{}");
  });

  it("Metrics: curl http://local-registry:5001/metrics | grep http_requests_total / storage", () => {
    // A request answered 200 by this test itself, so that it does not rely on the tests before it.
    assert.equal(guide("curl -s -u admin:password http://local-registry:5000/v2/").stdout, "{}");
    assert.match(
      guide("curl -s http://local-registry:5001/metrics | grep http_requests_total").stdout,
      /^http_requests_total\{.*status="200"\} \d+/m,
    );
    // "Review error rates" greps for 5 (5xx): no server error happened here.
    assert.doesNotMatch(
      guide("curl -s http://local-registry:5001/metrics | grep http_requests_total | grep 5").stdout,
      /status="5\d\d"/,
    );
    assert.match(
      guide("curl -s http://local-registry:5001/metrics | grep storage").stdout,
      /^storage_bytes \d+/m,
    );
  });

  it("Garbage Collection: curl -X POST http://local-registry:5000/v2/_oci/artifacts/delete", async () => {
    // On the registry without auth: a tagged image, and an orphan blob older than the default
    // grace period (1h) that the guide's command must collect, and nothing else.
    const client = new Client(open.url);
    const image = imageManifest();
    assert.equal((await client.pushManifest("gc/kept", "v1", image)).status, 201);
    const orphan = blob();
    assert.equal((await client.pushBlob("gc/orphan", orphan)).status, 201);
    const hex = orphan.digest.slice("sha256:".length);
    const v2 = join(open.root, "docker/registry/v2");
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    for (const path of [
      join(v2, "blobs/sha256", hex.slice(0, 2), hex, "data"),
      join(v2, "repositories/gc/orphan/_layers/sha256", hex, "link"),
    ])
      utimesSync(path, twoHoursAgo, twoHoursAgo);
    const report = JSON.parse(
      guide("curl -s -X POST http://local-registry:5000/v2/_oci/artifacts/delete", open).stdout,
    );
    assert.equal(report.dryRun, false);
    assert.deepEqual(report.blobsDeleted, [orphan.digest]);
    assert.deepEqual(report.manifestsDeleted, []);
    assert.equal(report.bytesFreed, orphan.size);
    assert.equal((await client.request("HEAD", `/v2/gc/orphan/blobs/${orphan.digest}`)).status, 404);
    for (const b of image.blobs)
      assert.equal((await client.request("HEAD", `/v2/gc/kept/blobs/${b.digest}`)).status, 200, b.digest);
    assert.equal(
      guide(
        "curl -s -o /dev/null -w '%{http_code}' -X POST http://local-registry:5000/v2/_oci/artifacts/delete",
      ).stdout,
      "401",
    );
    const authenticated = JSON.parse(
      guide("curl -s -u admin:password -X POST http://local-registry:5000/v2/_oci/artifacts/delete").stdout,
    );
    assert.deepEqual(authenticated.blobsDeleted, [], "the pushed image is all referenced");
  });

  it("Using Skopeo: skopeo inspect docker://local-registry:5000/image:tag", () => {
    const result = guide(
      "skopeo inspect --tls-verify=false --creds admin:password docker://local-registry:5000/image:tag",
    );
    assert.equal(result.status, 0);
    assert.ok(JSON.parse(result.stdout).Digest);
  });
});
