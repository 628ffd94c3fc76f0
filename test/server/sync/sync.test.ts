/**
 * Sync from upstream registries (the operations guide's sync manifest), against real upstreams:
 * the reference registry (Debian docker-registry) standing in for docker.io and gcr.io, and our
 * own registry with token auth for an upstream that asks for credentials.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { stringify } from "yaml";
import {
  assertServed,
  basicAuth,
  Client,
  imageManifest,
  indexManifest,
  type Manifest,
} from "../../helpers/oci.js";
import { startReference } from "../../helpers/reference.js";
import { startRegistry, tempDir, type RegistryProcess } from "../../helpers/registry.js";
import { tokenRealm } from "../../helpers/token-realm.js";

const run = promisify(execFile);
const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;

type Upstream = Awaited<ReturnType<typeof startReference>>;

interface Report {
  images: {
    source: string;
    target: string;
    outcome: string;
    digest?: string;
    bytes: number;
    error?: string;
  }[];
  failed: number;
  tagsDeleted: string[];
  manifestsDeleted: string[];
}

async function push(client: Client, repo: string, tag: string, m: Manifest, children: Manifest[] = []) {
  for (const child of children) {
    const response = await client.pushManifest(repo, child.digest, child);
    assert.equal(response.status, 201, await response.text());
  }
  const response = await client.pushManifest(repo, tag, m);
  assert.equal(response.status, 201, await response.text());
}

function writeManifest(manifest: unknown): string {
  const path = join(tempDir(), "sync-manifest.yaml");
  writeFileSync(path, stringify(manifest));
  return path;
}

async function syncCli(
  registry: RegistryProcess,
  manifestPath: string,
  ...extra: string[]
): Promise<{ code: number; report?: Report; stderr?: string }> {
  return run(process.execPath, [
    MAIN,
    "sync",
    "--manifest",
    manifestPath,
    "--url",
    registry.url,
    "--json",
    ...extra,
  ]).then(
    ({ stdout }) => ({ code: 0, report: JSON.parse(stdout) as Report }),
    (error: { code: number; stdout: string; stderr: string }) => ({
      code: error.code,
      report: error.stdout ? (JSON.parse(error.stdout) as Report) : undefined,
      stderr: error.stderr,
    }),
  );
}

describe("sync from upstream registries", () => {
  let upstream: Upstream;
  let upstreamClient: Client;
  let registry: RegistryProcess;
  let client: Client;
  const nginx = imageManifest({ layers: 2 });
  const amd64 = imageManifest();
  const arm64 = imageManifest();
  const spire = indexManifest([amd64, arm64]);

  before(async () => {
    upstream = await startReference(join(tempDir(), "upstream"));
    upstreamClient = new Client(upstream.url);
    await push(upstreamClient, "library/nginx", "1.25-alpine", nginx);
    await push(upstreamClient, "spiffe-io/spire-server", "1.8.0", spire, [amd64, arm64]);
    // docker.io and gcr.io are both reached at the site's mirror: the upstream registry.
    registry = await startRegistry({
      config: {
        sync: {
          upstreams: [
            { registry: "docker.io", url: upstream.url },
            { registry: "gcr.io", url: upstream.url },
          ],
        },
      },
    });
    client = new Client(registry.url);
  });
  after(async () => {
    await registry?.stop();
    await upstream?.stop();
  });

  it("mirrors the operations guide's manifest: one platform of an index, by its target names", async () => {
    const guide = writeManifest({
      sync: {
        frequency: "daily",
        images: [
          {
            source: "docker.io/library/nginx:1.25-alpine",
            target: "local-registry:5000/nginx:1.25-alpine",
            platform: "linux/amd64",
            schedule: "0 2 * * *",
          },
          {
            source: "gcr.io/spiffe-io/spire-server:1.8.0",
            target: "local-registry:5000/spiffe-io/spire-server:1.8.0",
            platform: "linux/amd64",
            schedule: "0 3 * * *",
          },
        ],
        policies: { keep_last_versions: 3, max_image_age_days: 30, cleanup_unused: true },
      },
    });
    const first = await syncCli(registry, guide);
    assert.equal(first.code, 0, JSON.stringify(first));
    assert.deepEqual(
      first.report!.images.map((i) => [i.outcome, i.digest]),
      [
        ["synced", nginx.digest],
        ["synced", amd64.digest],
      ],
    );
    assert.equal(
      first.report!.images[0]!.bytes,
      nginx.blobs.reduce((n, b) => n + b.size, 0),
    );
    await assertServed(client, "nginx", "1.25-alpine", nginx);
    await assertServed(client, "spiffe-io/spire-server", "1.8.0", amd64);

    // Nothing changed upstream: nothing fetched, nothing written.
    const second = await syncCli(registry, guide);
    assert.deepEqual(
      second.report!.images.map((i) => [i.outcome, i.bytes]),
      [
        ["unchanged", 0],
        ["unchanged", 0],
      ],
    );

    // The tag moves upstream: the next run follows it, fetching only the new blobs.
    const patched = imageManifest({ layers: 1 });
    await push(upstreamClient, "library/nginx", "1.25-alpine", patched);
    const third = await syncCli(registry, guide, "--schedule", "0 2 * * *");
    assert.deepEqual(
      third.report!.images.map((i) => [i.source, i.outcome, i.digest]),
      [["docker.io/library/nginx:1.25-alpine", "synced", patched.digest]],
    );
    await assertServed(client, "nginx", "1.25-alpine", patched);
  });

  it("copies a whole multi-arch index, digests unchanged, when no platform is given", async () => {
    const path = writeManifest({
      sync: { images: [{ source: "gcr.io/spiffe-io/spire-server:1.8.0", target: "local/spire/all:1.8.0" }] },
    });
    const { code, report } = await syncCli(registry, path);
    assert.equal(code, 0);
    assert.equal(report!.images[0]!.digest, spire.digest);
    await assertServed(client, "spire/all", "1.8.0", spire);
    for (const child of [amd64, arm64]) await assertServed(client, "spire/all", child.digest, child);
  });

  it("reports a failing image, syncs the others, exits 1 and records the failure for the alerts", async () => {
    const path = writeManifest({
      sync: {
        images: [
          { source: "docker.io/library/missing:1.0", target: "local/missing:1.0" },
          { source: "docker.io/library/nginx:1.25-alpine", target: "local/other-nginx:1" },
          {
            source: "gcr.io/spiffe-io/spire-server:1.8.0",
            target: "local/spire/s390x:1",
            platform: "linux/s390x",
          },
        ],
      },
    });
    const { code, report } = await syncCli(registry, path);
    assert.equal(code, 1);
    assert.deepEqual(
      report!.images.map((i) => i.outcome),
      ["failed", "synced", "failed"],
    );
    assert.match(report!.images[0]!.error!, /404 MANIFEST_UNKNOWN/);
    assert.match(report!.images[2]!.error!, /has no linux\/s390x image/);
    const metrics = await (await fetch(`${registry.debugUrl}/metrics`)).text();
    assert.match(metrics, /registry_task_last_run_success\{task="sync"\} 0/);
    assert.match(metrics, /registry_task_last_run_items\{task="sync",kind="images_failed"\} 2/);
  });

  it("applies the retention policies to the repositories it syncs, never to the tags it lists", async () => {
    const root = registry.root;
    const repo = "retained/app";
    const versions: Record<string, Manifest> = {};
    for (const tag of ["v0", "v1", "v2", "hotfix"]) {
      versions[tag] = imageManifest();
      await push(client, repo, tag, versions[tag]!);
    }
    const ago = (days: number) => new Date(Date.now() - days * 86_400_000);
    const setAge = (tag: string, days: number) => {
      const links = join(root, "docker/registry/v2/repositories", repo, "_manifests");
      utimesSync(join(links, "tags", tag, "current/link"), ago(days), ago(days));
      const hex = versions[tag]!.digest.slice(7);
      utimesSync(join(links, "revisions/sha256", hex, "link"), ago(days), ago(days));
    };
    setAge("v0", 40); // older than max_image_age_days
    setAge("v1", 3);
    setAge("hotfix", 2);
    setAge("v2", 1);
    const path = writeManifest({
      sync: {
        images: [{ source: "docker.io/library/nginx:1.25-alpine", target: `local/${repo}:stable` }],
        policies: { keep_last_versions: 3, max_image_age_days: 30, cleanup_unused: true },
      },
    });
    const { code, report } = await syncCli(registry, path);
    assert.equal(code, 0);
    // stable (listed) + the two most recent others make three; v0 is also too old.
    assert.deepEqual([...report!.tagsDeleted].sort(), [`${repo}:v0`, `${repo}:v1`]);
    assert.deepEqual(
      [...report!.manifestsDeleted].sort(),
      [`${repo}@${versions.v0!.digest}`, `${repo}@${versions.v1!.digest}`].sort(),
    );
    const tags = (await (await client.request("GET", `/v2/${repo}/tags/list`)).json()) as { tags: string[] };
    assert.deepEqual(tags.tags, ["hotfix", "stable", "v2"]);
    await assertServed(client, repo, "v2", versions.v2!);
  });

  it("refuses a bad manifest or schedule with a one-line reason, and syncs nothing", async () => {
    const response = await client.request("POST", "/v2/_neam/sync", {
      body: "sync:\n  images:\n    - source: nginx\n      target: x\n",
    });
    assert.equal(response.status, 400);
    const body = (await response.json()) as { errors: { code: string; message: string }[] };
    assert.equal(body.errors[0]!.code, "UNSUPPORTED");
    assert.match(
      body.errors[0]!.message,
      /^sync manifest: sync\.images\.0\.source: must be an image reference/,
    );
    const badSchedule = await client.request("POST", "/v2/_neam/sync?schedule=every%20day", { body: "" });
    assert.equal(badSchedule.status, 400);

    const path = writeManifest({
      sync: { images: [{ source: "docker.io/nginx:1", target: "x/y:1" }], extra: 1 },
    });
    const cli = await syncCli(registry, path);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr!, /^neam-registry: sync manifest: unknown key "sync.extra"\n$/);
  });
});

describe("sync from an upstream with token authentication", () => {
  it("fetches a token with the configured credentials and mirrors the image", async () => {
    const dir = tempDir();
    const htpasswd = join(dir, "htpasswd");
    writeFileSync(htpasswd, "");
    await run(process.execPath, [
      MAIN,
      "user",
      "add",
      "--file",
      htpasswd,
      "--cost",
      "4",
      "mirror",
      "mirror-pw",
    ]);
    const key = join(dir, "token.key");
    writeFileSync(
      key,
      generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }),
    );
    // The realm binds its own port first, so the upstream needs none picked in advance; being on
    // another port than the upstream, it must be listed to get the credentials.
    const realm = await tokenRealm();
    const upstream = await startRegistry({
      config: {
        auth: {
          htpasswd: { realm: "basic", path: htpasswd },
          token: {
            realm: realm.url,
            service: "upstream",
            issuer: "upstream",
            signingkey: key,
          },
        },
      },
    });
    const password = join(dir, "upstream-password");
    writeFileSync(password, "mirror-pw\n");
    realm.forwardTo(upstream.url);
    const registry = await startRegistry({
      config: {
        sync: {
          upstreams: [
            {
              registry: "registry.example",
              url: upstream.url,
              username: "mirror",
              passwordfile: password,
              tokenrealms: [realm.url],
            },
          ],
        },
      },
    });
    try {
      const image = imageManifest({ layers: 2 });
      const up = new Client(upstream.url);
      const token = (await (
        await up.request("GET", "/token?service=upstream&scope=repository:team/app:pull,push", {
          headers: basicAuth("mirror", "mirror-pw"),
        })
      ).json()) as { token: string };
      const auth = { Authorization: `Bearer ${token.token}` };
      for (const b of image.blobs) {
        const r = await up.request("POST", `/v2/team/app/blobs/uploads/?digest=${b.digest}`, {
          body: b.data,
          headers: auth,
        });
        assert.equal(r.status, 201);
      }
      const put = await up.request("PUT", "/v2/team/app/manifests/2.0", {
        body: image.bytes,
        headers: { ...auth, "Content-Type": image.mediaType },
      });
      assert.equal(put.status, 201);

      const path = writeManifest({
        sync: { images: [{ source: "registry.example/team/app:2.0", target: "local/app:2.0" }] },
      });
      const { code, report } = await syncCli(registry, path);
      assert.equal(code, 0, JSON.stringify(report));
      await assertServed(new Client(registry.url), "app", "2.0", image);

      // Without credentials the upstream's refusal is the image's error.
      const anonymous = await startRegistry({
        config: { sync: { upstreams: [{ registry: "registry.example", url: upstream.url }] } },
      });
      try {
        const failed = await syncCli(anonymous, path);
        assert.equal(failed.code, 1);
        assert.match(failed.report!.images[0]!.error!, /401|403/);
      } finally {
        await anonymous.stop();
      }
    } finally {
      await registry.stop();
      await upstream.stop();
      await realm.close();
    }
  });
});
