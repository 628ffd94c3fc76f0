/**
 * Content across the gap: `bundle create` from an upstream (our registry standing in for
 * docker.io, reached through `sync.upstreams` as `sync` reaches it), `bundle import` into an empty
 * site registry, deltas from the site's have-list, split parts, a tampered part, an import cut
 * half way and run again, and a plain OCI layout tar.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync, truncateSync, writeFileSync, copyFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { blob, Client, imageManifest, indexManifest, OCI_MANIFEST, type Manifest } from "../helpers/oci.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { startRegistry, tempDir, type RegistryProcess } from "../helpers/registry.js";
import { run, servedDigest } from "../helpers/tools.js";

const MAIN = new URL("../../server/src/main.js", import.meta.url).pathname;

let upstream: RegistryProcess;
let dir: string;
let configFile: string;
let index: Manifest;
let amd64: Manifest;
let arm64: Manifest;
let signature: Manifest;
let big: Manifest;

function cli(...args: string[]) {
  return run(process.execPath, [MAIN, "bundle", ...args], { allowFailure: true, timeout: 120_000 });
}

function json<T>(result: { status: number; stdout: string; stderr: string }): T {
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout) as T;
}

function syncManifest(file: string, images: { source: string; target: string; platform?: string }[]): string {
  writeFileSync(join(dir, file), stringify({ sync: { images } }));
  return join(dir, file);
}

async function push(client: Client, repo: string, reference: string, manifest: Manifest) {
  const response = await client.pushManifest(repo, reference, manifest);
  assert.equal(response.status, 201, await response.text());
}

interface ImportReport {
  images: { target: string; digest: string }[];
  uploaded: number;
  mounted: number;
  skipped: number;
  bytesSent: number;
}

before(async () => {
  dir = tempDir("neam-bundle-");
  upstream = await startRegistry();
  const client = new Client(upstream.url);
  amd64 = imageManifest({ layers: 2 });
  arm64 = imageManifest({ layers: 2 });
  index = indexManifest([amd64, arm64]);
  await push(client, "library/nginx", amd64.digest, amd64);
  await push(client, "library/nginx", arm64.digest, arm64);
  await push(client, "library/nginx", "1.25", index);
  // A signature of the amd64 image, found through the referrers API.
  signature = imageManifest({
    layers: 1,
    artifactType: "application/vnd.dev.cosign.artifact.sig.v1+json",
    subject: { digest: amd64.digest, size: amd64.bytes.length, mediaType: OCI_MANIFEST },
  });
  await push(client, "library/nginx", signature.digest, signature);
  // An image with a few MiB of layers, for split parts.
  const layers = [blob(randomBytes(3 << 20)), blob(randomBytes(3 << 20))];
  const config = blob(JSON.stringify({ architecture: "amd64", os: "linux" }));
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: config.digest,
        size: config.size,
      },
      layers: layers.map((l) => ({
        mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
        digest: l.digest,
        size: l.size,
      })),
    }),
  );
  big = {
    bytes: body,
    digest: `sha256:${(await import("node:crypto")).createHash("sha256").update(body).digest("hex")}`,
    mediaType: OCI_MANIFEST,
    blobs: [config, ...layers],
  };
  await push(client, "tools/big", "v1", big);
  configFile = join(dir, "config.yml");
  writeFileSync(
    configFile,
    stringify({
      version: 0.1,
      storage: { filesystem: { rootdirectory: join(dir, "unused") } },
      sync: {
        upstreams: [
          { registry: "docker.io", url: upstream.url },
          { registry: "quay.io", url: upstream.url },
        ],
      },
    }),
  );
});

after(async () => {
  await upstream?.stop();
});

async function tagsOf(site: RegistryProcess, repository: string): Promise<string[]> {
  const response = await new Client(site.url).request("GET", `/v2/${repository}/tags/list`);
  if (response.status === 404) return [];
  return ((await response.json()) as { tags: string[] | null }).tags ?? [];
}

describe("bundles", () => {
  it("carry every image, platform filter and referrer into an empty registry with the same digests", async () => {
    const manifest = syncManifest("m1.yaml", [
      { source: "docker.io/library/nginx:1.25", target: "local-registry:5000/nginx:1.25" },
      {
        source: "docker.io/nginx:1.25",
        target: "local-registry:5000/nginx-amd64:1.25",
        platform: "linux/amd64",
      },
    ]);
    const out = join(dir, "site.tar");
    const created = json<{ images: number; blobs: number; manifests: number }>(
      cli("create", "--manifest", manifest, "--out", out, "--config", configFile, "--json"),
    );
    // Both platforms' configs and layers (the amd64-only image shares its three), the signature's
    // config and layer; the index, both images and the signature.
    const blobs = new Set([...amd64.blobs, ...arm64.blobs, ...signature.blobs].map((b) => b.digest));
    assert.deepEqual(
      { images: created.images, blobs: created.blobs, manifests: created.manifests },
      { images: 2, blobs: blobs.size, manifests: 4 },
    );
    assert.equal(json<{ problems: string[] }>(cli("inspect", out, "--json")).problems.length, 0);

    const site = await startRegistry();
    try {
      const report = json<ImportReport>(cli("import", out, "--url", site.url, "--json"));
      assert.equal(report.skipped, 0);
      assert.equal(servedDigest(`docker://${site.host}/nginx:1.25`), index.digest);
      assert.equal(servedDigest(`docker://${site.host}/nginx-amd64:1.25`), amd64.digest);
      // The amd64-only image brought only amd64's blobs into its repository.
      const client = new Client(site.url);
      for (const b of amd64.blobs)
        assert.equal((await client.request("HEAD", `/v2/nginx-amd64/blobs/${b.digest}`)).status, 200);
      for (const b of arm64.blobs.slice(1))
        assert.equal((await client.request("HEAD", `/v2/nginx-amd64/blobs/${b.digest}`)).status, 404);
      // The signature came along and is found as the amd64 image's referrer.
      const referrers = (await (
        await client.request("GET", `/v2/nginx/referrers/${amd64.digest}`)
      ).json()) as {
        manifests: { digest: string }[];
      };
      assert.deepEqual(
        referrers.manifests.map((m) => m.digest),
        [signature.digest],
      );
      // Importing again changes nothing and sends nothing.
      const again = json<ImportReport>(cli("import", out, "--url", site.url, "--json"));
      assert.equal(again.bytesSent, 0);
      assert.equal(again.uploaded, 0);
    } finally {
      await site.stop();
    }
  });

  it("leave out what the site's have-list holds, and import to the same end state", async () => {
    const site = await startRegistry();
    try {
      const first = syncManifest("m2.yaml", [
        {
          source: "docker.io/library/nginx:1.25",
          target: "local-registry:5000/nginx:1.25",
          platform: "linux/amd64",
        },
      ]);
      const full = join(dir, "first.tar");
      json(cli("create", "--manifest", first, "--out", full, "--config", configFile, "--json"));
      json(cli("import", full, "--url", site.url, "--json"));

      const have = join(dir, "have.json");
      json(cli("have", "--url", site.url, "--out", have, "--json"));
      const held = new Set((JSON.parse(readFileSync(have, "utf8")) as { digests: string[] }).digests);
      assert.ok(amd64.blobs.every((b) => held.has(b.digest)));

      const second = syncManifest("m3.yaml", [
        { source: "docker.io/library/nginx:1.25", target: "local-registry:5000/web/nginx:1.25" },
      ]);
      const delta = join(dir, "delta.tar");
      const report = json<{ omitted: number; blobs: number }>(
        cli("create", "--manifest", second, "--out", delta, "--have", have, "--config", configFile, "--json"),
      );
      // amd64's blobs and its signature's (which came along with it the first time).
      const siteHad = amd64.blobs.length + signature.blobs.length;
      assert.equal(report.omitted, siteHad);
      // No blob the site holds is in the archive (counted from the tar's own listing).
      const listed = run("tar", ["-tf", delta])
        .stdout.split("\n")
        .filter((n) => n.startsWith("blobs/"));
      const carried = listed.map((n) => n.replace("blobs/sha256/", "sha256:"));
      const manifests = new Set([index.digest, amd64.digest, arm64.digest, signature.digest]);
      assert.equal(carried.filter((d) => held.has(d) && !manifests.has(d)).length, 0);
      assert.ok(carried.includes(arm64.blobs[1]!.digest));

      const imported = json<ImportReport>(cli("import", delta, "--url", site.url, "--json"));
      assert.equal(imported.mounted, siteHad, "what the site had was mounted, not sent");
      assert.equal(servedDigest(`docker://${site.host}/web/nginx:1.25`), index.digest);
    } finally {
      await site.stop();
    }
  });

  it("split into parts: a tampered part commits no tag and says what failed", async () => {
    const manifest = syncManifest("m4.yaml", [
      { source: "quay.io/tools/big:v1", target: "local-registry:5000/tools/big:v1" },
    ]);
    const out = join(dir, "split.tar");
    const created = json<{ parts: { name: string }[] }>(
      cli(
        "create",
        "--manifest",
        manifest,
        "--out",
        out,
        "--split",
        "1MiB",
        "--config",
        configFile,
        "--json",
      ),
    );
    assert.ok(created.parts.length >= 6, `${created.parts.length} parts`);
    assert.ok(readdirSync(dir).includes("split.tar.sha256"));
    // The list is sha256sum's format: the parts check with the standard tool too.
    assert.equal(
      run("bash", ["-c", `cd ${dir} && sha256sum --quiet -c split.tar.sha256`], { allowFailure: true })
        .status,
      0,
    );
    assert.equal(json<{ problems: string[] }>(cli("inspect", out, "--json")).problems.length, 0);

    const site = await startRegistry();
    try {
      // One flipped byte in the middle of part 2 (inside the first big layer).
      const part = join(dir, "split.tar.002");
      const bytes = readFileSync(part);
      bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
      writeFileSync(part, bytes);
      const inspected = cli("inspect", out, "--json");
      assert.equal(inspected.status, 1);
      const failed = cli("import", out, "--url", site.url);
      assert.equal(failed.status, 1);
      assert.match(failed.stderr, /sha256:[a-f0-9]{64}|split\.tar\.002/);
      assert.equal(failed.stderr.trim().split("\n").length, 1);
      assert.deepEqual(await tagsOf(site, "tools/big"), [], "no tag was committed");
    } finally {
      await site.stop();
    }
  });

  it("an import cut half way, run again, completes without re-sending what landed", async () => {
    const manifest = syncManifest("m5.yaml", [
      { source: "quay.io/tools/big:v1", target: "local-registry:5000/tools/big:v1" },
    ]);
    const out = join(dir, "whole.tar");
    json(cli("create", "--manifest", manifest, "--out", out, "--config", configFile, "--json"));
    // The archive cut after the first large layer: what a killed transfer or import leaves.
    const cut = join(dir, "cut.tar");
    copyFileSync(out, cut);
    truncateSync(cut, Math.floor(statSync(out).size * 0.6));
    const site = await startRegistry();
    try {
      const first = cli("import", cut, "--url", site.url);
      assert.equal(first.status, 1);
      assert.match(first.stderr, /the bundle is cut short in blobs\/sha256\/[a-f0-9]{64}/);
      assert.deepEqual(await tagsOf(site, "tools/big"), []);
      const present: typeof big.blobs = [];
      for (const b of big.blobs)
        if ((await new Client(site.url).request("HEAD", `/v2/tools/big/blobs/${b.digest}`)).status === 200)
          present.push(b);
      assert.ok(
        present.some((b) => b.size > 1 << 20),
        "the first layer landed before the cut",
      );
      const second = json<ImportReport>(cli("import", out, "--url", site.url, "--json"));
      const remaining = big.blobs.filter((b) => !present.includes(b)).reduce((sum, b) => sum + b.size, 0);
      assert.equal(second.bytesSent, remaining, "only what had not landed was sent");
      assert.equal(second.skipped, present.length);
      assert.equal(servedDigest(`docker://${site.host}/tools/big:v1`), big.digest);
    } finally {
      await site.stop();
    }
  });

  it("import a plain OCI layout tar from other tools", async () => {
    const layout = join(dir, "layout");
    const written = writeOciLayout(layout, "v1", "plain");
    const tarFile = join(dir, "layout.tar");
    run("tar", ["-cf", tarFile, "-C", layout, "."]);
    const site = await startRegistry();
    try {
      const refused = cli("import", tarFile, "--url", site.url);
      assert.equal(refused.status, 1);
      assert.match(refused.stderr, /give --repository/);
      json(cli("import", tarFile, "--url", site.url, "--repository", "apps/plain", "--json"));
      assert.equal(servedDigest(`docker://${site.host}/apps/plain:v1`), written.index);
      assert.equal(servedDigest(`docker://${site.host}/apps/plain:v1-amd64`), written.manifests.amd64);
    } finally {
      await site.stop();
    }
  });
});

/** A bundle written by hand: a content list that may lie, and entries as given. */
async function hostileBundle(file: string, list: unknown, entries: { name: string; data: Buffer }[]) {
  const { pack } = await import("tar-stream");
  const { createWriteStream } = await import("node:fs");
  const { pipeline } = await import("node:stream/promises");
  const tar = pack();
  const written = pipeline(tar, createWriteStream(file));
  tar.entry({ name: "neam-bundle.json" }, Buffer.from(JSON.stringify(list)));
  for (const e of entries) tar.entry({ name: e.name }, e.data);
  tar.finalize();
  await written;
}

describe("hostile bundles", () => {
  const data = Buffer.from("sixteen bytes!!\n");
  const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest, size: data.length },
      layers: [],
    }),
  );
  const manifestDigest = `sha256:${createHash("sha256").update(manifest).digest("hex")}`;
  const list = (repository = "staging/harmless") => ({
    version: 1,
    created: new Date().toISOString(),
    images: [{ source: "x", target: `${repository}:v1`, digest: manifestDigest, mediaType: OCI_MANIFEST }],
    content: [
      {
        digest,
        size: data.length,
        mediaType: "application/octet-stream",
        manifest: false,
        repositories: [repository],
        source: "x",
      },
      {
        digest: manifestDigest,
        size: manifest.length,
        mediaType: OCI_MANIFEST,
        manifest: true,
        repositories: [repository],
        source: "x",
      },
    ],
  });

  it("an entry longer than its content list says sends nothing past it (no smuggled request)", async () => {
    const site = await startRegistry();
    try {
      const victim = imageManifest();
      await push(new Client(site.url), "prod/app", "v1", victim);
      const smuggled = Buffer.from(
        `DELETE /v2/prod/app/manifests/${victim.digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n`,
      );
      const file = join(dir, "smuggle.tar");
      await hostileBundle(file, list(), [
        { name: `blobs/sha256/${digest.slice(7)}`, data: Buffer.concat([data, smuggled]) },
        { name: `blobs/sha256/${manifestDigest.slice(7)}`, data: manifest },
      ]);
      const result = cli("import", file, "--url", site.url);
      assert.equal(result.status, 1);
      assert.match(result.stderr, new RegExp(`${digest}`));
      assert.equal(servedDigest(`docker://${site.host}/prod/app:v1`), victim.digest, "nothing was deleted");
      assert.deepEqual(await tagsOf(site, "staging/harmless"), []);
    } finally {
      await site.stop();
    }
  });

  it("a small tampered blob fails at once, naming its digest (no hang)", async () => {
    const site = await startRegistry();
    try {
      const file = join(dir, "tampered-small.tar");
      const tampered = Buffer.from(data);
      tampered[0] = tampered[0]! ^ 1;
      await hostileBundle(file, list(), [
        { name: `blobs/sha256/${digest.slice(7)}`, data: tampered },
        { name: `blobs/sha256/${manifestDigest.slice(7)}`, data: manifest },
      ]);
      const started = Date.now();
      const result = run(process.execPath, [MAIN, "bundle", "import", file, "--url", site.url], {
        allowFailure: true,
        timeout: 30_000,
      });
      assert.equal(result.status, 1, `exit ${result.status} after ${Date.now() - started} ms`);
      assert.match(result.stderr, new RegExp(digest));
      assert.deepEqual(await tagsOf(site, "staging/harmless"), []);
      assert.equal(
        json<{ problems: string[] }>({ ...cli("inspect", file, "--json"), status: 0 }).problems.length,
        1,
      );
    } finally {
      await site.stop();
    }
  });

  it("a content list with names the registry would refuse is refused before anything is written", async () => {
    const site = await startRegistry();
    try {
      const file = join(dir, "badname.tar");
      await hostileBundle(file, list("apps/../secret/other"), []);
      const result = cli("import", file, "--url", site.url);
      assert.equal(result.status, 1);
      assert.match(result.stderr, /content list: .*is not (a repository name|repository:tag)/);
      assert.equal(result.stderr.trim().split("\n").length, 1);
    } finally {
      await site.stop();
    }
  });
});
