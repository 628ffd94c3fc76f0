/**
 * How sync reaches its upstreams (`sync.upstreams`): Basic auth, HTTPS with a private `ca`, sync
 * by digest (against the reference registry), redirects to another server (a CDN) and token
 * realms that point elsewhere (against upstreams the test serves itself), and what error texts
 * and the config accept of credentials.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { makeCertificates } from "../../helpers/certs.js";
import { startHttpServer } from "../../helpers/http-server.js";
import { assertServed, Client, imageManifest, type Manifest } from "../../helpers/oci.js";
import { writeOciLayout } from "../../helpers/oci-layout.js";
import { startReference } from "../../helpers/reference.js";
import { startRegistry, tempDir, type RegistryProcess } from "../../helpers/registry.js";
import { skopeo } from "../../helpers/tools.js";

const run = promisify(execFile);
const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;

interface Report {
  images: { source: string; outcome: string; digest?: string; error?: string }[];
}

async function sync(registry: RegistryProcess, images: { source: string; target: string }[]) {
  const path = join(tempDir(), "sync-manifest.yaml");
  writeFileSync(path, stringify({ sync: { images } }));
  return run(process.execPath, [MAIN, "sync", "--manifest", path, "--url", registry.url, "--json"]).then(
    ({ stdout }) => ({ code: 0, report: JSON.parse(stdout) as Report }),
    (error: { code: number; stdout: string }) => ({
      code: error.code,
      report: JSON.parse(error.stdout) as Report,
    }),
  );
}

function passwordFile(password: string): string {
  const path = join(tempDir(), "password");
  writeFileSync(path, `${password}\n`);
  return path;
}

/**
 * Serves `image` as `team/app:1.0` (and by digest) the way a registry does; `authorized` decides
 * which requests get it (the others a 401 with `challenge`), `blob` may answer a blob instead.
 */
function registryHandler(
  image: Manifest,
  options: {
    authorized?: (request: IncomingMessage) => boolean;
    challenge?: string;
    blob?: (digest: string, response: ServerResponse) => boolean;
  } = {},
) {
  return (request: IncomingMessage, response: ServerResponse) => {
    const path = new URL(request.url!, "http://x").pathname;
    if (options.authorized !== undefined && !options.authorized(request)) {
      response.writeHead(401, { "WWW-Authenticate": options.challenge ?? 'Basic realm="upstream"' });
      response.end();
      return;
    }
    const manifest = /^\/v2\/team\/app\/manifests\/(1\.0|sha256:[0-9a-f]{64})$/.exec(path);
    if (manifest !== null && (manifest[1] === "1.0" || manifest[1] === image.digest)) {
      response.writeHead(200, { "Content-Type": image.mediaType, "Docker-Content-Digest": image.digest });
      response.end(request.method === "HEAD" ? undefined : image.bytes);
      return;
    }
    // Blobs at their API path, and at /same-origin/ (where a redirect may send the client).
    const blob = /^\/(?:v2\/team\/app\/blobs|same-origin)\/(sha256:[0-9a-f]{64})$/.exec(path);
    const direct = path.startsWith("/same-origin/");
    const found = image.blobs.find((b) => b.digest === blob?.[1]);
    if (found !== undefined && (direct || !options.blob?.(found.digest, response))) {
      response.writeHead(200, { "Content-Length": found.size });
      response.end(request.method === "HEAD" ? undefined : found.data);
      return;
    }
    if (found !== undefined) return;
    response.writeHead(404, { "Content-Type": "application/json" });
    response.end(JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN", message: "unknown" }] }));
  };
}

describe("sync upstreams: Basic auth, HTTPS with a private CA, by digest (the reference registry)", () => {
  it("syncs with credentials over HTTPS trusting `ca`, by tag and by digest; without either it fails", async () => {
    const certs = makeCertificates("upstream");
    const htpasswd = join(tempDir(), "htpasswd");
    const hashed = spawnSync("htpasswd", ["-Bbn", "mirror", "mirror-pw"], { encoding: "utf8" });
    assert.equal(hashed.status, 0, hashed.stderr);
    writeFileSync(htpasswd, hashed.stdout);
    const upstream = await startReference(join(tempDir(), "upstream"), {
      htpasswd,
      tls: { cert: certs.cert, key: certs.key, ca: certs.caCert },
    });
    const registry = await startRegistry({
      config: {
        sync: {
          upstreams: [
            {
              registry: "secure.example",
              url: upstream.url,
              username: "mirror",
              passwordfile: passwordFile("mirror-pw"),
              ca: certs.caCert,
            },
            // The same upstream, but trusting only the system's CAs.
            {
              registry: "noca.example",
              url: upstream.url,
              username: "mirror",
              passwordfile: passwordFile("mirror-pw"),
            },
            // The same upstream without credentials.
            { registry: "anonymous.example", url: upstream.url, ca: certs.caCert },
          ],
        },
      },
    });
    try {
      const certDir = join(tempDir(), "certs");
      mkdirSync(certDir);
      copyFileSync(certs.caCert, join(certDir, "ca.crt"));
      const layout = join(tempDir(), "layout");
      const digests = writeOciLayout(layout, "v1", "basic");
      skopeo(
        "copy",
        "--all",
        "--dest-cert-dir",
        certDir,
        "--dest-creds",
        "mirror:mirror-pw",
        `oci:${layout}:v1`,
        `docker://${upstream.host}/team/app:v1`,
      );
      const amd64 = digests.manifests.amd64!;
      const { code, report } = await sync(registry, [
        { source: "secure.example/team/app:v1", target: "local/app:v1" },
        { source: `secure.example/team/app@${amd64}`, target: "local/pinned:amd64" },
        { source: "noca.example/team/app:v1", target: "local/noca:v1" },
        { source: "anonymous.example/team/app:v1", target: "local/anonymous:v1" },
      ]);
      assert.equal(code, 1, JSON.stringify(report));
      const [tagged, pinned, noCa, anonymous] = report.images;
      assert.deepEqual([tagged!.outcome, tagged!.digest], ["synced", digests.index]);
      assert.deepEqual([pinned!.outcome, pinned!.digest], ["synced", amd64]);
      assert.equal(noCa!.outcome, "failed");
      assert.match(noCa!.error!, /certificate/i);
      assert.equal(anonymous!.outcome, "failed");
      assert.match(anonymous!.error!, /401/);

      const client = new Client(registry.url);
      const pinnedManifest = await client.request("GET", "/v2/pinned/manifests/amd64", {
        headers: { Accept: "application/vnd.oci.image.manifest.v1+json" },
      });
      assert.equal(pinnedManifest.headers.get("Docker-Content-Digest"), amd64);
      const index = await client.request("GET", `/v2/app/manifests/${digests.index}`, {
        headers: { Accept: "application/vnd.oci.image.index.v1+json" },
      });
      assert.equal(index.status, 200);
      for (const digest of Object.values(digests.manifests))
        assert.equal((await client.request("HEAD", `/v2/app/manifests/${digest}`)).status, 200);
      assert.equal((await client.request("HEAD", "/v2/noca/manifests/v1")).status, 404);
    } finally {
      await registry.stop();
      await upstream.stop();
    }
  });
});

describe("sync upstreams: redirects and token realms (upstreams served by the test)", () => {
  it("follows a redirect to another server without the credentials, keeping them on the same origin", async () => {
    const image = imageManifest({ layers: 2 });
    const basic = `Basic ${Buffer.from("mirror:mirror-pw").toString("base64")}`;
    const cdn = await startHttpServer((request, response) => {
      const found = image.blobs.find((b) => request.url === `/cdn/${b.digest}`);
      response.writeHead(found ? 200 : 404);
      response.end(found?.data);
    });
    const upstream = await startHttpServer(
      registryHandler(image, {
        authorized: (request) => request.headers.authorization === basic,
        // The config blob from this server's own /same-origin path, the layers from the CDN.
        blob: (digest, response) => {
          const location =
            digest === image.blobs[0]!.digest ? `/same-origin/${digest}` : `${cdn.url}/cdn/${digest}`;
          response.writeHead(307, { Location: location });
          response.end();
          return true;
        },
      }),
    );
    const registry = await startRegistry({
      config: {
        sync: {
          upstreams: [
            {
              registry: "redirects.example",
              url: upstream.url,
              username: "mirror",
              passwordfile: passwordFile("mirror-pw"),
            },
          ],
        },
      },
    });
    try {
      const { code, report } = await sync(registry, [
        { source: "redirects.example/team/app:1.0", target: "local/app:1.0" },
      ]);
      assert.equal(code, 0, JSON.stringify(report));
      await assertServed(new Client(registry.url), "app", "1.0", image);
      // /same-origin/ answers only with the credentials: they went along to the same origin.
      const followed = upstream.requests.find((r) => r.url.startsWith("/same-origin/"));
      assert.equal(followed?.authorization, basic);
      assert.equal(cdn.requests.length, 2, JSON.stringify(cdn.requests));
      for (const r of cdn.requests) assert.equal(r.authorization, undefined, JSON.stringify(r));
    } finally {
      await registry.stop();
      await upstream.stop();
      await cdn.stop();
    }
  });

  it("sends credentials to a token realm only on the upstream's own server or listed in tokenrealms, never in clear text", async () => {
    const image = imageManifest();
    const tokens = await startHttpServer((request, response) => {
      response.writeHead(200, { "Content-Type": "application/json" });
      response.end(JSON.stringify({ token: "granted", expires_in: 300 }));
    });
    const realm = `${tokens.url}/token`;
    const handler = registryHandler(image, {
      authorized: (request) => request.headers.authorization === "Bearer granted",
      challenge: `Bearer realm="${realm}",service="upstream"`,
    });
    const upstream = await startHttpServer(handler);
    const certs = makeCertificates("upstream");
    const secure = await startHttpServer(handler, { cert: certs.cert, key: certs.key });
    const credentials = { username: "mirror", passwordfile: passwordFile("mirror-pw") };
    const registry = await startRegistry({
      config: {
        sync: {
          upstreams: [
            // Its challenge names a realm on another port of the same address: another server.
            { registry: "foreign.example", url: upstream.url, ...credentials },
            { registry: "listed.example", url: upstream.url, ...credentials, tokenrealms: [realm] },
            // An HTTPS upstream whose listed realm is plain HTTP: the password would travel in clear.
            {
              registry: "downgrade.example",
              url: secure.url,
              ...credentials,
              ca: certs.caCert,
              tokenrealms: [realm],
            },
            // Without credentials any realm may hand out an anonymous token.
            { registry: "anonymous.example", url: upstream.url },
          ],
        },
      },
    });
    try {
      const { report } = await sync(registry, [
        { source: "foreign.example/team/app:1.0", target: "local/foreign:1" },
        { source: "downgrade.example/team/app:1.0", target: "local/downgrade:1" },
      ]);
      assert.deepEqual(
        report.images.map((i) => i.outcome),
        ["failed", "failed"],
      );
      assert.match(report.images[0]!.error!, /token realm http:\/\/127\.0\.0\.1:\d+\/token .*tokenrealms/);
      assert.match(report.images[1]!.error!, /plain HTTP/);
      assert.equal(tokens.requests.length, 0, "the token realm was asked nothing");

      const allowed = await sync(registry, [
        { source: "listed.example/team/app:1.0", target: "local/listed:1" },
        { source: "anonymous.example/team/app:1.0", target: "local/anonymous:1" },
      ]);
      assert.equal(allowed.code, 0, JSON.stringify(allowed.report));
      const basic = `Basic ${Buffer.from("mirror:mirror-pw").toString("base64")}`;
      assert.deepEqual(
        tokens.requests.map((r) => r.authorization),
        [basic, undefined],
      );
      await assertServed(new Client(registry.url), "listed", "1", image);
    } finally {
      await registry.stop();
      await upstream.stop();
      await secure.stop();
      await tokens.stop();
    }
  });

  it("keeps a URL's user and password out of every error text, report, status and log", async () => {
    const secret = "s3cret-in-url";
    // Redirects whose targets carry a user, a password and a signed query, round and round.
    const elsewhere = await startHttpServer((request, response) => {
      response.writeHead(307, {
        Location: `http://user:${secret}@${request.headers.host}/again?token=${secret}`,
      });
      response.end();
    });
    const upstream = await startHttpServer((request, response) => {
      response.writeHead(307, { Location: `http://user:${secret}@${elsewhere.host}/v2/x?token=${secret}` });
      response.end();
    });
    const registry = await startRegistry({
      config: { sync: { upstreams: [{ registry: "leaky.example", url: upstream.url }] } },
    });
    try {
      const { code, report } = await sync(registry, [
        { source: "leaky.example/team/app:1.0", target: "local/leaky:1" },
      ]);
      assert.equal(code, 1);
      assert.match(report.images[0]!.error!, /too many redirects/);
      const status = await (await fetch(`${registry.url}/v2/_neam/status`)).text();
      for (const [what, text] of [
        ["report", JSON.stringify(report)],
        ["status", status],
        ["log", registry.log()],
      ] as const)
        assert.ok(!text.includes(secret), `${what} holds the URL's password: ${text}`);
    } finally {
      await registry.stop();
      await upstream.stop();
      await elsewhere.stop();
    }
  });

  it("refuses a user or password in an upstream URL at config check, naming the key", () => {
    for (const [key, section] of [
      [
        "sync.upstreams.0.url",
        { sync: { upstreams: [{ registry: "a.example", url: "https://u:pw-123@a.example" }] } },
      ],
      ["proxy.remoteurl", { proxy: { remoteurl: "https://u:pw-123@a.example" } }],
    ] as const) {
      const path = join(tempDir(), "config.yml");
      writeFileSync(
        path,
        stringify({
          version: "0.1",
          storage: { filesystem: { rootdirectory: join(tempDir(), "data") } },
          ...section,
        }),
      );
      const result = spawnSync(process.execPath, [MAIN, "config", "check", "--config", path], {
        encoding: "utf8",
      });
      assert.notEqual(result.status, 0, key);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.ok(lines[0]!.includes(key), result.stderr);
      assert.match(lines[0]!, /passwordfile/);
      assert.ok(!result.stderr.includes("pw-123") && !result.stdout.includes("pw-123"));
    }
  });
});
