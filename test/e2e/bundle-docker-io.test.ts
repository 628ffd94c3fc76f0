/**
 * The air gap end to end, with the reference registry (Debian's `docker-registry`, Basic auth and
 * TLS from a private CA) posing as docker.io on the connected side: `bundle create` reaches it as
 * `sync` would (`sync.upstreams`: url, username, passwordfile, ca) for a multi-arch image and its
 * signature; `bundle import --via-server` brings the bundle into an empty site registry that
 * resolves upstream names through the sync manifest; containerd (hosts.toml from `mirror-config`)
 * and skopeo (the path form) pull `docker.io/library/demo:v1` from the site with the digests the
 * upstream serves, for every platform.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { makeCertificates, type TestCertificates } from "../helpers/certs.js";
import { startContainerd, type Containerd } from "../helpers/containerd.js";
import { OCI_MANIFEST } from "../helpers/oci.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { startReference } from "../helpers/reference.js";
import { startRegistry, tempDir, type RegistryProcess } from "../helpers/registry.js";
import { run } from "../helpers/tools.js";

const MAIN = new URL("../../server/src/main.js", import.meta.url).pathname;
const HUB = "hub:hub-pw";

let certs: TestCertificates;
let certDir: string;
let hub: Awaited<ReturnType<typeof startReference>>;
let site: RegistryProcess;
let dir: string;
let manifestFile: string;
let written: ReturnType<typeof writeOciLayout>;
let signature: string;
let containerd: Containerd | undefined;

const sha256 = (data: Buffer | string) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** A request to the TLS upstream, as its admin (pushing what skopeo cannot: a signature). */
function hubRequest(
  method: string,
  path: string,
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; location?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${hub.url}${path}`,
      {
        method,
        ca: readFileSync(certs.caCert),
        headers: {
          Authorization: `Basic ${Buffer.from(HUB).toString("base64")}`,
          ...(body ? { "Content-Length": String(body.length) } : {}),
          ...headers,
        },
      },
      (res) => {
        res.resume();
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            ...(res.headers.location ? { location: res.headers.location } : {}),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function hubPushBlob(repository: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const digest = sha256(data);
  const started = await hubRequest("POST", `/v2/${repository}/blobs/uploads/`);
  assert.equal(started.status, 202);
  const location = new URL(started.location!, hub.url);
  location.searchParams.set("digest", digest);
  const done = await hubRequest("PUT", `${location.pathname}${location.search}`, data, {
    "Content-Type": "application/octet-stream",
  });
  assert.equal(done.status, 201);
  return { digest, size: data.length };
}

/** The digest of the manifest bytes a registry serves for `reference` (skopeo, as a node would). */
function served(reference: string, args: string[]): string {
  return sha256(run("skopeo", ["inspect", "--raw", ...args, reference]).stdout);
}

before(async () => {
  dir = tempDir("neam-bundle-hub-");
  certs = makeCertificates("hub");
  certDir = join(dir, "certs");
  mkdirSync(certDir);
  copyFileSync(certs.caCert, join(certDir, "ca.crt"));
  const htpasswd = join(dir, "htpasswd");
  writeFileSync(htpasswd, run("htpasswd", ["-nbB", "-C", "4", "hub", "hub-pw"]).stdout);
  hub = await startReference(join(dir, "hub-data"), {
    htpasswd,
    tls: { cert: certs.cert, key: certs.key, ca: certs.caCert },
  });
  // The multi-arch image, as docker.io/library/demo:v1 would hold it.
  written = writeOciLayout(join(dir, "layout"), "v1", "hub");
  run("skopeo", [
    "--insecure-policy",
    "copy",
    "--all",
    "--dest-creds",
    HUB,
    "--dest-cert-dir",
    certDir,
    `oci:${join(dir, "layout")}:v1`,
    `docker://${hub.host}/library/demo:v1`,
  ]);
  // A signature of the amd64 image, under the tag schema registry:2 uses for referrers.
  const amd64 = readFileSync(join(dir, "layout/blobs/sha256", written.manifests.amd64!.slice(7)));
  const config = await hubPushBlob("library/demo", Buffer.from("{}"));
  const layer = await hubPushBlob("library/demo", Buffer.from('{"critical":{"image":"signed"}}'));
  const sig = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: "application/vnd.dev.cosign.artifact.sig.v1+json",
      config: { mediaType: "application/vnd.oci.empty.v1+json", ...config },
      layers: [{ mediaType: "application/vnd.dev.cosign.simplesigning.v1+json", ...layer }],
      subject: { mediaType: OCI_MANIFEST, digest: written.manifests.amd64, size: amd64.length },
    }),
  );
  signature = sha256(sig);
  const tag = `sha256-${written.manifests.amd64!.slice(7)}.sig`;
  const pushed = await hubRequest("PUT", `/v2/library/demo/manifests/${tag}`, sig, {
    "Content-Type": OCI_MANIFEST,
  });
  assert.equal(pushed.status, 201);

  manifestFile = join(dir, "sync-manifest.yaml");
  writeFileSync(
    manifestFile,
    stringify({
      sync: { images: [{ source: "docker.io/library/demo:v1", target: "local-registry:5000/demo:v1" }] },
    }),
  );
  site = await startRegistry({ config: { sync: { manifest: manifestFile } } });
});

after(async () => {
  containerd?.stop();
  await site?.stop();
  await hub?.stop();
});

describe("a bundle from docker-registry posing as docker.io (Basic auth, TLS)", () => {
  it("carries the image and its signature; nodes pull docker.io/library/demo:v1 from the site", async () => {
    const passwordFile = join(dir, "hub-password");
    writeFileSync(passwordFile, "hub-pw\n");
    const config = join(dir, "config.yml");
    writeFileSync(
      config,
      stringify({
        version: 0.1,
        storage: { filesystem: { rootdirectory: join(dir, "unused") } },
        sync: {
          upstreams: [
            {
              registry: "docker.io",
              url: hub.url,
              username: "hub",
              passwordfile: passwordFile,
              ca: certs.caCert,
            },
          ],
        },
      }),
    );
    const bundle = join(dir, "site.tar");
    const created = run(process.execPath, [
      MAIN,
      "bundle",
      "create",
      "--manifest",
      manifestFile,
      "--out",
      bundle,
      "--config",
      config,
      "--json",
    ]);
    // The index, two images and the signature.
    assert.equal((JSON.parse(created.stdout) as { manifests: number }).manifests, 4);

    const imported = JSON.parse(
      run(process.execPath, [MAIN, "bundle", "import", bundle, "--via-server", "--url", site.url, "--json"])
        .stdout,
    ) as { images: { target: string; digest: string }[] };
    assert.deepEqual(imported.images, [{ target: "demo:v1", digest: written.index }]);

    // What the upstream serves, per platform, and what the site serves under the upstream name.
    const upstreamArgs = ["--creds", HUB, "--cert-dir", certDir];
    assert.equal(served(`docker://${hub.host}/library/demo:v1`, upstreamArgs), written.index);
    assert.equal(
      served(`docker://${site.host}/docker.io/library/demo:v1`, ["--tls-verify=false"]),
      written.index,
    );
    for (const digest of Object.values(written.manifests)) {
      assert.equal(served(`docker://${hub.host}/library/demo@${digest}`, upstreamArgs), digest);
      assert.equal(
        served(`docker://${site.host}/docker.io/library/demo@${digest}`, ["--tls-verify=false"]),
        digest,
      );
    }
    // The signature is found as the amd64 image's referrer, under the upstream name too.
    const referrers = (await (
      await fetch(`${site.url}/v2/library/demo/referrers/${written.manifests.amd64}?ns=docker.io`)
    ).json()) as { manifests: { digest: string }[] };
    assert.deepEqual(
      referrers.manifests.map((m) => m.digest),
      [signature],
    );

    // containerd on a node with no route out: the hosts.toml mirror-config writes.
    containerd = await startContainerd("neam-bundle-hub-ctr-");
    const hostsDir = join(dir, "certs.d");
    run(process.execPath, [
      MAIN,
      "mirror-config",
      "--format",
      "containerd",
      "--manifest",
      manifestFile,
      "--registry",
      site.url,
      "--out",
      hostsDir,
    ]);
    const ctr = (...args: string[]) =>
      run("ctr", ["--address", containerd!.socket, "--namespace", "k8s.io", ...args]);
    ctr("images", "pull", "--hosts-dir", hostsDir, "--all-platforms", "docker.io/library/demo:v1");
    const listed = ctr("images", "ls")
      .stdout.split("\n")
      .find((line) => line.startsWith("docker.io/library/demo:v1 "));
    assert.ok(listed?.includes(written.index), listed);
    const content = ctr("content", "ls").stdout;
    for (const [platform, digest] of Object.entries(written.manifests))
      assert.ok(content.includes(digest), `${platform} ${digest} in containerd's content store`);
  });
});
