/**
 * What a Kubernetes node and an operator do: containerd's ctr with -u and skopeo login, over TLS
 * with a private CA, through both the Basic and the token flows.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { makeCertificates, type TestCertificates } from "../helpers/certs.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { freePort, startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { run } from "../helpers/tools.js";

let certs: TestCertificates;
let htpasswd: string;
let layout: string;
let containerd: ChildProcess;
let socket: string;
const registries: RegistryProcess[] = [];

async function secureRegistry(withTokens: boolean): Promise<RegistryProcess> {
  const port = await freePort();
  const dir = tempDir();
  const keyPath = join(dir, "token.key");
  writeFileSync(
    keyPath,
    generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }),
  );
  const registry = await startRegistry({
    port,
    config: {
      http: { tls: { certificate: certs.cert, key: certs.key } },
      auth: {
        htpasswd: { realm: "basic", path: htpasswd },
        ...(withTokens
          ? {
              token: {
                realm: `https://127.0.0.1:${port}/token`,
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
});

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

    it("ctr pulls every platform and pushes with -u", async () => {
      const registry = registries.at(-1)!;
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
      ctr("images", "tag", "--force", `${registry.host}/k8s/app:v1`, `${registry.host}/k8s/copy:v1`);
      ctr("images", "push", "--hosts-dir", hosts, "-u", "node:node-pw", `${registry.host}/k8s/copy:v1`);
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
