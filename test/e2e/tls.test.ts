/**
 * TLS: skopeo with a private CA, TLS 1.2 minimum (1.3 when configured), cipher suites, certificate
 * and client-CA rotation under a running server. Each test can run alone (--test-name-pattern):
 * those that rotate files start a registry of their own.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { connect, type ConnectionOptions } from "node:tls";
import { after, before, describe, it } from "node:test";
import { issueCertificate, makeCertificates, type TestCertificates } from "../helpers/certs.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { run } from "../helpers/tools.js";

let registry: RegistryProcess;
let first: TestCertificates;
let second: TestCertificates;

before(async () => {
  // Different validity, so an expiry that stayed at the first certificate's cannot pass for the second's.
  first = makeCertificates("first", { days: 2 });
  second = makeCertificates("second", { days: 30 });
  registry = await startRegistry({ config: { http: { tls: { certificate: first.cert, key: first.key } } } });
});
after(() => registry?.stop());

const portOf = (server: RegistryProcess) => Number(server.host.split(":")[1]);
const port = () => portOf(registry);

/** The SHA-256 fingerprint of the certificate a new connection to `server` is shown. */
function servedFingerprint(
  options: Omit<ConnectionOptions, "host" | "port"> = {},
  server: RegistryProcess = registry,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: "127.0.0.1", port: portOf(server), rejectUnauthorized: false, ...options },
      () => {
        const fingerprint = socket.getPeerCertificate().fingerprint256;
        socket.end();
        resolve(fingerprint);
      },
    );
    socket.on("error", reject);
  });
}

/** The cipher a new connection negotiates with `server`. */
function negotiatedCipher(options: Omit<ConnectionOptions, "host" | "port">, server: RegistryProcess) {
  return new Promise<string>((resolve, reject) => {
    const socket = connect(
      { host: "127.0.0.1", port: portOf(server), rejectUnauthorized: false, ...options },
      () => {
        const cipher = socket.getCipher().name;
        socket.end();
        resolve(cipher);
      },
    );
    socket.on("error", reject);
  });
}

function fingerprintOf(path: string): string {
  return new X509Certificate(readFileSync(path)).fingerprint256;
}

/** GET /v2/ on a new connection to `server`, trusting both CAs: the status and the certificate shown. */
function ping(server: RegistryProcess = registry): Promise<{ status: number; fingerprint: string }> {
  const ca = [readFileSync(first.caCert), readFileSync(second.caCert)];
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port: portOf(server), path: "/v2/", ca, agent: false },
      (res) => {
        const fingerprint = (res.socket as import("node:tls").TLSSocket).getPeerCertificate().fingerprint256;
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0, fingerprint }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** A registry of its own serving `first` from files the test may replace (`live`). */
async function rotatingRegistry() {
  const dir = tempDir();
  const live = { cert: join(dir, "tls.crt"), key: join(dir, "tls.key") };
  copyFileSync(first.cert, live.cert);
  copyFileSync(first.key, live.key);
  const server = await startRegistry({
    config: { http: { tls: { certificate: live.cert, key: live.key } } },
  });
  /** As cert-manager does: new files renamed over the old ones (key first, then certificate). */
  const replace = (files: { cert?: string; key?: string }) => {
    const stage = tempDir();
    if (files.key !== undefined) {
      copyFileSync(files.key, join(stage, "k"));
      renameSync(join(stage, "k"), live.key);
    }
    if (files.cert !== undefined) {
      copyFileSync(files.cert, join(stage, "c"));
      renameSync(join(stage, "c"), live.cert);
    }
  };
  return { server, live, replace };
}

async function expiryMetric(server: RegistryProcess): Promise<number> {
  const metrics = await (await fetch(`${server.debugUrl}/metrics`)).text();
  const value = /^registry_tls_certificate_expiry_timestamp_seconds (\S+)$/m.exec(metrics)?.[1];
  return Number(value);
}

const expiryOf = (path: string) => Date.parse(new X509Certificate(readFileSync(path)).validTo) / 1000;

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

  it("refuses TLS below 1.2, and TLS 1.2 ciphers without forward secrecy", async () => {
    await assert.rejects(servedFingerprint({ maxVersion: "TLSv1.1" }));
    assert.ok(await servedFingerprint({ maxVersion: "TLSv1.2" }));
    await assert.rejects(negotiatedCipher({ maxVersion: "TLSv1.2", ciphers: "AES128-GCM-SHA256" }, registry));
  });

  it("a rotated certificate is served to new connections without a failed request", async () => {
    const { server, replace } = await rotatingRegistry();
    try {
      assert.equal(await servedFingerprint({}, server), fingerprintOf(first.cert));
      const seen: string[] = [];
      let failures = 0;
      let rotated = false;
      const load = (async () => {
        // Requests on new connections until some were served the new certificate.
        while (seen.filter((f) => f === fingerprintOf(second.cert)).length < 3) {
          const answer = await ping(server).catch(() => undefined);
          if (answer?.status !== 200) failures++;
          else seen.push(answer.fingerprint);
          if (failures > 0 || (!rotated && seen.length > 1000)) break;
        }
      })();
      await waitUntil(async () => seen.length > 0, 10_000);
      rotated = true;
      replace({ key: second.key, cert: second.cert });
      // Bounded by waiting for the rotation to be observed, not by counting in a time window.
      await waitUntil(
        async () => (await servedFingerprint({}, server)) === fingerprintOf(second.cert),
        15_000,
      );
      await load;
      assert.equal(failures, 0, `${failures} of ${seen.length + failures} requests failed during rotation`);
      assert.equal(seen[0], fingerprintOf(first.cert));
      assert.equal(seen.at(-1), fingerprintOf(second.cert));
    } finally {
      await server.stop();
    }
  });

  it("exports when the served certificate expires, following a rotation (for the expiry alert)", async () => {
    const { server, replace } = await rotatingRegistry();
    try {
      assert.notEqual(expiryOf(first.cert), expiryOf(second.cert), "the two certificates expire apart");
      assert.equal(await expiryMetric(server), expiryOf(first.cert));
      replace({ key: second.key, cert: second.cert });
      await waitUntil(
        async () => (await servedFingerprint({}, server)) === fingerprintOf(second.cert),
        15_000,
      );
      assert.equal(await expiryMetric(server), expiryOf(second.cert));
    } finally {
      await server.stop();
    }
  });

  it("a certificate that does not match its key keeps the previous certificate until the pair agrees", async () => {
    const { server, replace } = await rotatingRegistry();
    try {
      replace({ cert: second.cert }); // the new certificate, the old key: not a pair
      await waitUntil(async () => server.log().includes("TLS certificate not reloaded"), 15_000);
      assert.match(server.log(), /key values mismatch/);
      const answer = await ping(server);
      assert.deepEqual(answer, { status: 200, fingerprint: fingerprintOf(first.cert) });
      assert.equal(await expiryMetric(server), expiryOf(first.cert), "the expiry of the certificate served");
      replace({ key: second.key });
      await waitUntil(
        async () => (await servedFingerprint({}, server)) === fingerprintOf(second.cert),
        15_000,
      );
      assert.deepEqual(await ping(server), { status: 200, fingerprint: fingerprintOf(second.cert) });
      assert.equal(await expiryMetric(server), expiryOf(second.cert));
    } finally {
      await server.stop();
    }
  });

  it("http.tls.ciphersuites: TLS 1.2 connections get a configured suite, and only those", async () => {
    const server = await startRegistry({
      config: {
        http: {
          tls: { certificate: first.cert, key: first.key, ciphersuites: ["ECDHE-ECDSA-AES256-GCM-SHA384"] },
        },
      },
    });
    try {
      assert.equal(
        await negotiatedCipher({ maxVersion: "TLSv1.2" }, server),
        "ECDHE-ECDSA-AES256-GCM-SHA384",
      );
      await assert.rejects(
        negotiatedCipher({ maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256" }, server),
        "a suite left out of the list is refused",
      );
      assert.match(await negotiatedCipher({}, server), /^TLS_/, "TLS 1.3 suites are not affected");
    } finally {
      await server.stop();
    }
  });

  it("TLS 1.3: AES-128-GCM for clients that list the AES suites, ChaCha20 for those that put it first", async () => {
    // Node's client lists AES-256-GCM first; Go's (skopeo, containerd) AES-128-GCM on AES hardware.
    // The server's order decides: AES-128-GCM, as Go's server picks (the reference registry).
    const aesFirst = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";
    assert.equal(await negotiatedCipher({ ciphers: aesFirst }, registry), "TLS_AES_128_GCM_SHA256");
    assert.equal(await negotiatedCipher({}, registry), "TLS_AES_128_GCM_SHA256", "Node's default list");
    // openssl s_client with Go's order on AES hardware.
    const sClient = spawnSync(
      "openssl",
      [
        "s_client",
        "-connect",
        registry.host,
        "-ciphersuites",
        "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384",
      ],
      { input: "", encoding: "utf8", timeout: 20_000 },
    );
    assert.match(sClient.stdout, /New, TLSv1\.3, Cipher is TLS_AES_128_GCM_SHA256/, sClient.stdout);
    const chachaFirst = "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";
    assert.equal(await negotiatedCipher({ ciphers: chachaFirst }, registry), "TLS_CHACHA20_POLY1305_SHA256");
  });

  it("http.tls.ciphersuites naming TLS 1.3 suites: those, in that order", async () => {
    const server = await startRegistry({
      config: {
        http: {
          tls: {
            certificate: first.cert,
            key: first.key,
            ciphersuites: ["TLS_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256"],
          },
        },
      },
    });
    try {
      assert.equal(await negotiatedCipher({}, server), "TLS_AES_256_GCM_SHA384");
      await assert.rejects(
        negotiatedCipher({ ciphers: "TLS_AES_128_GCM_SHA256" }, server),
        "a TLS 1.3 suite left out of the list is refused",
      );
      assert.equal(
        await negotiatedCipher({ maxVersion: "TLSv1.2" }, server),
        "ECDHE-ECDSA-AES128-GCM-SHA256",
      );
    } finally {
      await server.stop();
    }
  });

  it("http.tls.minimumtls: tls1.3 refuses TLS 1.2 (openssl s_client, curl)", async () => {
    const server = await startRegistry({
      config: { http: { tls: { certificate: first.cert, key: first.key, minimumtls: "tls1.3" } } },
    });
    try {
      const sClient = (version: string) =>
        spawnSync("openssl", ["s_client", "-connect", server.host, version, "-CAfile", first.caCert], {
          input: "",
          encoding: "utf8",
          timeout: 20_000,
        });
      const tls12 = sClient("-tls1_2");
      assert.notEqual(tls12.status, 0, tls12.stdout);
      const tls13 = sClient("-tls1_3");
      assert.equal(tls13.status, 0, tls13.stderr);
      assert.match(tls13.stdout, /Protocol\s*:\s*TLSv1\.3|New, TLSv1\.3/);
      const curl = (...args: string[]) =>
        spawnSync(
          "curl",
          ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", first.caCert, ...args],
          {
            encoding: "utf8",
            timeout: 20_000,
          },
        );
      const old = curl("--tls-max", "1.2", `${server.url}/v2/`);
      assert.equal(old.stdout, "000");
      assert.equal(old.status, 35, "curl: SSL connect error");
      assert.equal(curl("--tlsv1.3", `${server.url}/v2/`).stdout, "200");
    } finally {
      await server.stop();
    }
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
    try {
      const get = clientGet(mtls, server.caCert);
      assert.equal(await get({ cert: clientCert, key: clientKey }), 200);
      await assert.rejects(get());
    } finally {
      await mtls.stop();
    }
  });

  it("a replaced client CA file is loaded: the new CA's clients get in, the old CA's no longer", async () => {
    const server = makeCertificates("mtls-server");
    const oldCa = makeCertificates("old-clients");
    const newCa = makeCertificates("new-clients");
    const oldClient = issueCertificate(oldCa, tempDir(), "client", "old", ["extendedKeyUsage=clientAuth"]);
    const newClient = issueCertificate(newCa, tempDir(), "client", "new", ["extendedKeyUsage=clientAuth"]);
    const clientcas = join(tempDir(), "clients-ca.crt");
    copyFileSync(oldCa.caCert, clientcas);
    const mtls = await startRegistry({
      config: { http: { tls: { certificate: server.cert, key: server.key, clientcas: [clientcas] } } },
    });
    try {
      const get = clientGet(mtls, server.caCert);
      assert.equal(await get(oldClient), 200);
      await assert.rejects(get(newClient));
      const stage = join(tempDir(), "ca");
      copyFileSync(newCa.caCert, stage);
      renameSync(stage, clientcas);
      await waitUntil(async () => (await get(newClient).catch(() => 0)) === 200, 15_000);
      await assert.rejects(get(oldClient));
    } finally {
      await mtls.stop();
    }
  });
});

/** GET /v2/ on `server` over a new connection, with a client certificate or none. */
function clientGet(server: RegistryProcess, serverCa: string) {
  return (client?: { cert: string; key: string }) =>
    new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: portOf(server),
          path: "/v2/",
          ca: readFileSync(serverCa),
          agent: false,
          ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("error", reject);
      req.end();
    });
}

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
    assert.equal((await ping()).status, 200);
  });
});
