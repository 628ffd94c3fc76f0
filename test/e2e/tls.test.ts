/** TLS: skopeo with a private CA, TLS 1.2 minimum, and certificate rotation under a running server. */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { connect } from "node:tls";
import { after, before, describe, it } from "node:test";
import { issueCertificate, makeCertificates, type TestCertificates } from "../helpers/certs.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { run } from "../helpers/tools.js";

let registry: RegistryProcess;
let first: TestCertificates;
let second: TestCertificates;
let live: { cert: string; key: string };

before(async () => {
  first = makeCertificates("first");
  second = makeCertificates("second");
  const dir = tempDir();
  live = { cert: join(dir, "tls.crt"), key: join(dir, "tls.key") };
  copyFileSync(first.cert, live.cert);
  copyFileSync(first.key, live.key);
  registry = await startRegistry({ config: { http: { tls: { certificate: live.cert, key: live.key } } } });
});
after(() => registry?.stop());

const port = () => Number(registry.host.split(":")[1]);

/** The SHA-256 fingerprint of the certificate a new connection is shown. */
function servedFingerprint(options: { maxVersion?: "TLSv1.1" | "TLSv1.2" } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port: port(), rejectUnauthorized: false, ...options }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fingerprint);
    });
    socket.on("error", reject);
  });
}

function fingerprintOf(path: string): string {
  return new X509Certificate(readFileSync(path)).fingerprint256;
}

/** GET /v2/ on a new connection, trusting both CAs. */
function ping(): Promise<number> {
  const ca = [readFileSync(first.caCert), readFileSync(second.caCert)];
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: port(), path: "/v2/", ca, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("TLS", () => {
  it("skopeo pushes and pulls with a private CA (--dest-cert-dir / --cert-dir)", () => {
    const certDir = join(tempDir(), "certs");
    mkdirSync(certDir);
    copyFileSync(first.caCert, join(certDir, "ca.crt"));
    const layout = join(tempDir(), "layout");
    writeOciLayout(layout, "v1", "tls");
    run("skopeo", [
      "--insecure-policy",
      "copy",
      "--dest-cert-dir",
      certDir,
      `oci:${layout}:v1-amd64`,
      `docker://${registry.host}/secure/app:v1`,
    ]);
    const out = run("skopeo", ["inspect", "--cert-dir", certDir, `docker://${registry.host}/secure/app:v1`]);
    assert.equal(JSON.parse(out.stdout).Architecture, "amd64");
  });

  it("refuses TLS below 1.2", async () => {
    await assert.rejects(servedFingerprint({ maxVersion: "TLSv1.1" }));
    assert.ok(await servedFingerprint({ maxVersion: "TLSv1.2" }));
  });

  it("a rotated certificate is served to new connections without a failed request", async () => {
    assert.equal(await servedFingerprint(), fingerprintOf(first.cert));
    let failures = 0;
    let requests = 0;
    let rotating = true;
    const load = (async () => {
      while (rotating) {
        requests++;
        if ((await ping().catch(() => 0)) !== 200) failures++;
      }
    })();
    // As cert-manager does: new files renamed over the old ones (key first, then certificate).
    const stage = tempDir();
    copyFileSync(second.key, join(stage, "k"));
    copyFileSync(second.cert, join(stage, "c"));
    renameSync(join(stage, "k"), live.key);
    renameSync(join(stage, "c"), live.cert);
    await waitUntil(async () => (await servedFingerprint()) === fingerprintOf(second.cert), 10_000);
    rotating = false;
    await load;
    assert.ok(requests > 10);
    assert.equal(failures, 0, `${failures} of ${requests} requests failed during rotation`);
  });

  it("exports when the served certificate expires, following a rotation (for the expiry alert)", async () => {
    const served = new X509Certificate(readFileSync(live.cert));
    const metrics = await (await fetch(`${registry.debugUrl}/metrics`)).text();
    const value = /^registry_tls_certificate_expiry_timestamp_seconds (\S+)$/m.exec(metrics)?.[1];
    assert.equal(Number(value), Date.parse(served.validTo) / 1000);
  });
});

describe("mutual TLS (http.tls.clientcas)", () => {
  it("refuses clients without a certificate from the CA, serves those with one", async () => {
    const server = makeCertificates("mtls-server");
    const clients = makeCertificates("mtls-clients");
    const { cert: clientCert, key: clientKey } = issueCertificate(clients, tempDir(), "client", "node-1", [
      "extendedKeyUsage=clientAuth",
    ]);
    const mtls = await startRegistry({
      config: { http: { tls: { certificate: server.cert, key: server.key, clientcas: [clients.caCert] } } },
    });
    const get = (withCertificate: boolean) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          {
            host: "127.0.0.1",
            port: Number(mtls.host.split(":")[1]),
            path: "/v2/",
            ca: readFileSync(server.caCert),
            agent: false,
            ...(withCertificate ? { cert: readFileSync(clientCert), key: readFileSync(clientKey) } : {}),
          },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          },
        );
        req.on("error", reject);
        req.end();
      });
    try {
      assert.equal(await get(true), 200);
      await assert.rejects(get(false));
    } finally {
      await mtls.stop();
    }
  });
});

describe("oversized requests", () => {
  it("headers past Node's limit are refused (431, or a reset while still sending) and the server carries on", async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: port(),
          path: "/v2/",
          ca: [readFileSync(first.caCert), readFileSync(second.caCert)],
          agent: false,
          headers: { "X-Padding": "x".repeat(64 * 1024) },
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve(String(res.statusCode)));
        },
      );
      // The server answers 431 and closes; a client still writing its headers may see the reset first.
      req.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
      req.end();
    });
    assert.ok(["431", "ECONNRESET", "EPIPE"].includes(outcome), outcome);
    assert.equal(await ping(), 200);
  });
});
