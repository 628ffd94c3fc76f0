/**
 * What a Kubernetes node and an operator do: containerd's ctr with -u and skopeo login, over TLS
 * with a private CA, through both the Basic and the token flows.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { makeCertificates, type TestCertificates } from "../helpers/certs.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { tokenRealm, type TokenRealm } from "../helpers/token-realm.js";
import { run } from "../helpers/tools.js";

let certs: TestCertificates;
let htpasswd: string;
let layout: string;
let containerd: ChildProcess;
let socket: string;
const registries: RegistryProcess[] = [];
const realms: TokenRealm[] = [];

async function secureRegistry(withTokens: boolean): Promise<RegistryProcess> {
  // The realm is bound before the registry (which binds a port of its own) and then pointed at it.
  const realm = withTokens
    ? await tokenRealm({ cert: certs.cert, key: certs.key, ca: certs.caCert })
    : undefined;
  if (realm !== undefined) realms.push(realm);
  const dir = tempDir();
  const keyPath = join(dir, "token.key");
  writeFileSync(
    keyPath,
    generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }),
  );
  const registry = await startRegistry({
    config: {
      http: { tls: { certificate: certs.cert, key: certs.key } },
      auth: {
        htpasswd: { realm: "basic", path: htpasswd },
        ...(withTokens
          ? {
              token: {
                realm: realm!.url,
                service: "neam",
                issuer: "neam",
                signingkey: keyPath,
              },
            }
          : {}),
      },
    },
  });
  registries.push(registry);
  realm?.forwardTo(registry.url);
  return registry;
}

/** containerd's hosts.toml for a registry served with our private CA. */
function hostsDir(host: string): string {
  const dir = join(tempDir(), "hosts");
  mkdirSync(join(dir, host), { recursive: true });
  writeFileSync(
    join(dir, host, "hosts.toml"),
    `server = "https://${host}"\n\n[host."https://${host}"]\n  ca = "${certs.caCert}"\n`,
  );
  return dir;
}

const ctr = (...args: string[]) => run("ctr", ["--address", socket, "--namespace", "tls", ...args]);

before(async () => {
  certs = makeCertificates("clients");
  htpasswd = join(tempDir(), "htpasswd");
  writeFileSync(htpasswd, "");
  spawnSync("htpasswd", ["-bB", "-C", "5", htpasswd, "node", "node-pw"]);
  layout = join(tempDir(), "layout");
  writeOciLayout(layout, "v1", "clients");
  const dir = tempDir("neam-containerd-");
  socket = join(dir, "containerd.sock");
  writeFileSync(
    join(dir, "config.toml"),
    `version = 2\nroot = "${join(dir, "root")}"\nstate = "${join(dir, "state")}"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${socket}"\n`,
  );
  containerd = spawn("containerd", ["--config", join(dir, "config.toml")], { stdio: "ignore" });
  await waitUntil(async () => existsSync(socket), 10_000);
});

after(async () => {
  containerd?.kill("SIGTERM");
  for (const registry of registries) await registry.stop();
  for (const realm of realms) await realm.close();
});

/** A private CA directory as skopeo's --cert-dir reads it. */
function certDirectory(): string {
  const certDir = join(tempDir(), "certs");
  mkdirSync(certDir);
  writeFileSync(join(certDir, "ca.crt"), readFileSync(certs.caCert));
  return certDir;
}

/** The sha256 digest of what the registry serves for `ref`, with the node's credentials. */
function servedDigest(ref: string): string {
  const raw = spawnSync("skopeo", [
    "inspect",
    "--raw",
    "--creds",
    "node:node-pw",
    "--cert-dir",
    certDirectory(),
    ref,
  ]);
  assert.equal(raw.status, 0, String(raw.stderr));
  return `sha256:${createHash("sha256").update(raw.stdout).digest("hex")}`;
}

/** The bytes of `digest` in containerd's content store. */
function ctrContent(digest: string): Buffer {
  const result = spawnSync("ctr", ["--address", socket, "--namespace", "tls", "content", "get", digest]);
  assert.equal(result.status, 0, String(result.stderr));
  return result.stdout;
}

for (const flow of ["Basic", "token"] as const) {
  describe(`TLS + ${flow} authentication`, () => {
    it("skopeo login with the private CA, then push and pull with the stored credentials", async () => {
      const registry = await secureRegistry(flow === "token");
      const certDir = join(tempDir(), "certs");
      mkdirSync(certDir);
      writeFileSync(join(certDir, "ca.crt"), spawnSync("cat", [certs.caCert]).stdout);
      const authfile = join(tempDir(), "auth.json");
      run("skopeo", [
        "login",
        "--authfile",
        authfile,
        "--cert-dir",
        certDir,
        "-u",
        "node",
        "-p",
        "node-pw",
        registry.host,
      ]);
      const bad = run(
        "skopeo",
        [
          "login",
          "--authfile",
          join(tempDir(), "x.json"),
          "--cert-dir",
          certDir,
          "-u",
          "node",
          "-p",
          "wrong",
          registry.host,
        ],
        { allowFailure: true },
      );
      assert.notEqual(bad.status, 0);
      run("skopeo", [
        "--insecure-policy",
        "copy",
        "--all",
        "--authfile",
        authfile,
        "--dest-cert-dir",
        certDir,
        `oci:${layout}:v1`,
        `docker://${registry.host}/k8s/app:v1`,
      ]);
      const info = run("skopeo", [
        "inspect",
        "--authfile",
        authfile,
        "--cert-dir",
        certDir,
        `docker://${registry.host}/k8s/app:v1`,
      ]);
      assert.ok(JSON.parse(info.stdout).Digest);
    });

    it("ctr pulls every platform and pushes with -u; what it pulled is what was pushed", async () => {
      const registry = await secureRegistry(flow === "token");
      // Content of its own (containerd shares blobs it already holds across pulls and namespaces).
      const own = join(tempDir(), "layout");
      const layoutDigests = writeOciLayout(own, "v1", `ctr-${flow}`);
      const layoutBlob = (digest: string) => readFileSync(join(own, "blobs/sha256", digest.slice(7)));
      run("skopeo", [
        "--insecure-policy",
        "copy",
        "--all",
        "--dest-creds",
        "node:node-pw",
        "--dest-cert-dir",
        certDirectory(),
        `oci:${own}:v1`,
        `docker://${registry.host}/k8s/app:v1`,
      ]);
      const hosts = hostsDir(registry.host);
      ctr(
        "images",
        "pull",
        "--hosts-dir",
        hosts,
        "-u",
        "node:node-pw",
        "--all-platforms",
        `${registry.host}/k8s/app:v1`,
      );
      // The image ctr recorded is the index pushed, and its content store holds every manifest,
      // config and layer of both platforms byte for byte.
      const listed = ctr("images", "ls", `name==${registry.host}/k8s/app:v1`).stdout;
      assert.ok(listed.includes(layoutDigests.index), listed);
      assert.deepEqual(ctrContent(layoutDigests.index), layoutBlob(layoutDigests.index));
      for (const digest of Object.values(layoutDigests.manifests)) {
        assert.deepEqual(ctrContent(digest), layoutBlob(digest));
        const manifest = JSON.parse(layoutBlob(digest).toString()) as {
          config: { digest: string };
          layers: { digest: string }[];
        };
        for (const blob of [manifest.config, ...manifest.layers])
          assert.deepEqual(ctrContent(blob.digest), layoutBlob(blob.digest), blob.digest);
      }
      ctr("images", "tag", "--force", `${registry.host}/k8s/app:v1`, `${registry.host}/k8s/copy:v1`);
      ctr("images", "push", "--hosts-dir", hosts, "-u", "node:node-pw", `${registry.host}/k8s/copy:v1`);
      assert.equal(
        servedDigest(`docker://${registry.host}/k8s/copy:v1`),
        layoutDigests.index,
        "ctr pushed the same index back",
      );
      const refused = run(
        "ctr",
        [
          "--address",
          socket,
          "--namespace",
          "tls",
          "images",
          "pull",
          "--hosts-dir",
          hosts,
          "-u",
          "node:wrong",
          `${registry.host}/k8s/app:v1`,
        ],
        { allowFailure: true },
      );
      assert.notEqual(refused.status, 0);
    });
  });
}
