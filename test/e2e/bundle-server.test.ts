/**
 * A bundle streamed to the registry's admin endpoint (`/v2/_neam/bundle/imports`), part by part:
 * `bundle import --via-server` and plain curl against a real server with htpasswd admins. An
 * import killed mid-part and run again sends only the parts that had not landed; a tampered part
 * lands nothing, names the failing digest and writes no tag; only admins may send.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { blob, Client, imageManifest, indexManifest, OCI_MANIFEST, type Manifest } from "../helpers/oci.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { run } from "../helpers/tools.js";

const MAIN = new URL("../../server/src/main.js", import.meta.url).pathname;
const ADMIN = "admin:admin-pw";

let upstream: RegistryProcess;
let site: RegistryProcess;
let dir: string;
let configFile: string;
let big: Manifest;
let index: Manifest;
let nginxBlobs: string[];

interface SendReport {
  parts: number;
  partsLanded: number;
  partsSent: number;
  bytesSent: number;
  counts: { uploaded: number; mounted: number; skipped: number; manifests: number };
  images: { target: string; digest: string }[];
}

interface Status {
  id: string;
  parts: number;
  landed: number;
  landedDigests: string[];
  committed: boolean;
}

function cli(args: string[], env: Record<string, string> = {}) {
  const [user, password] = ADMIN.split(":");
  const result = run(
    "env",
    [
      `NEAM_REGISTRY_USERNAME=${user}`,
      `NEAM_REGISTRY_PASSWORD=${password}`,
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      process.execPath,
      MAIN,
      "bundle",
      ...args,
    ],
    { allowFailure: true, timeout: 120_000 },
  );
  return result;
}

function json<T>(result: { status: number; stdout: string; stderr: string }): T {
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout) as T;
}

/** curl against the site: status code and body. */
function curl(args: string[], user = ADMIN): { code: number; body: string } {
  const out = run(
    "curl",
    ["-sS", "-o", "-", "-w", "\n%{http_code}", ...(user ? ["-u", user] : []), ...args],
    {
      allowFailure: true,
    },
  ).stdout;
  const at = out.lastIndexOf("\n");
  return { code: Number(out.slice(at + 1)), body: out.slice(0, at) };
}

/** The digest of the manifest bytes skopeo receives from the site (as admin). */
function digestServed(registry: RegistryProcess, reference: string): string {
  const raw = run("skopeo", [
    "inspect",
    "--tls-verify=false",
    "--creds",
    ADMIN,
    "--raw",
    `docker://${registry.host}/${reference}`,
  ]).stdout;
  return `sha256:${createHash("sha256").update(raw).digest("hex")}`;
}

async function tagsOf(registry: RegistryProcess, repository: string): Promise<string[]> {
  const response = await new Client(registry.url).request("GET", `/v2/${repository}/tags/list`, {
    headers: { Authorization: `Basic ${Buffer.from(ADMIN).toString("base64")}` },
  });
  if (response.status === 404) return [];
  return ((await response.json()) as { tags: string[] | null }).tags ?? [];
}

/** The parts of a split bundle as the endpoint takes them. */
function partList(bundle: string): { path: string; digest: string; size: number }[] {
  return readFileSync(`${bundle}.sha256`, "utf8")
    .trim()
    .split("\n")
    .map((line) => {
      const [hex, name] = line.split(/\s+\*?/);
      const path = join(dir, name!);
      return { path, digest: `sha256:${hex}`, size: statSync(path).size };
    });
}

async function startSite(root?: string): Promise<RegistryProcess> {
  const htpasswd = join(tempDir("neam-bundle-site-"), "htpasswd");
  writeFileSync(htpasswd, "");
  for (const [user, password] of [
    ["admin", "admin-pw"],
    ["alice", "alice-pw"],
  ])
    run("htpasswd", ["-bB", "-C", "4", htpasswd, user!, password!]);
  return startRegistry({
    ...(root !== undefined ? { root } : {}),
    config: {
      auth: {
        htpasswd: { realm: "neam-registry", path: htpasswd },
        access: {
          // alice may push anywhere: still no admin, so no bundle import through the endpoint.
          rules: [{ subjects: ["user:alice"], repositories: ["**"], actions: ["pull", "push"] }],
          admins: ["admin"],
        },
      },
    },
  });
}

before(async () => {
  dir = tempDir("neam-bundle-server-");
  upstream = await startRegistry();
  const client = new Client(upstream.url);
  const push = async (repo: string, reference: string, manifest: Manifest) => {
    const response = await client.pushManifest(repo, reference, manifest);
    assert.equal(response.status, 201, await response.text());
  };
  // Three layers of 3 MiB: with 1 MiB parts, each spans several parts.
  const layers = [blob(randomBytes(3 << 20)), blob(randomBytes(3 << 20)), blob(randomBytes(3 << 20))];
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
    digest: `sha256:${createHash("sha256").update(body).digest("hex")}`,
    mediaType: OCI_MANIFEST,
    blobs: [config, ...layers],
  };
  await push("tools/big", "v1", big);
  const amd64 = imageManifest({ layers: 2 });
  const arm64 = imageManifest({ layers: 2 });
  index = indexManifest([amd64, arm64]);
  nginxBlobs = [...amd64.blobs, ...arm64.blobs].map((b) => b.digest);
  await push("library/nginx", amd64.digest, amd64);
  await push("library/nginx", arm64.digest, arm64);
  await push("library/nginx", "1.25", index);

  configFile = join(dir, "config.yml");
  writeFileSync(
    configFile,
    stringify({
      version: 0.1,
      storage: { filesystem: { rootdirectory: join(dir, "unused") } },
      sync: { upstreams: [{ registry: "docker.io", url: upstream.url }] },
    }),
  );
  writeFileSync(
    join(dir, "manifest.yaml"),
    stringify({
      sync: {
        images: [
          { source: "docker.io/tools/big:v1", target: "local-registry:5000/tools/big:v1" },
          { source: "docker.io/library/nginx:1.25", target: "local-registry:5000/nginx:1.25" },
        ],
      },
    }),
  );
  // One bundle in 1 MiB parts, one in a single file.
  for (const [out, extra] of [
    ["split.tar", ["--split", "1MiB"]],
    ["whole.tar", []],
  ] as const)
    json(
      cli([
        "create",
        "--manifest",
        join(dir, "manifest.yaml"),
        "--out",
        join(dir, out),
        "--config",
        configFile,
        "--json",
        ...extra,
      ]),
    );
  site = await startSite();
});

after(async () => {
  await upstream?.stop();
  await site?.stop();
});

describe("bundle import through the admin endpoint", () => {
  it("is for admins only, checked before the body is read", async () => {
    const parts = partList(join(dir, "split.tar"));
    const list = JSON.stringify({ parts: parts.map(({ digest, size }) => ({ digest, size })) });
    const alice = curl(
      ["-X", "POST", "--data-binary", list, `${site.url}/v2/_neam/bundle/imports`],
      "alice:alice-pw",
    );
    assert.equal(alice.code, 403, alice.body);
    const anonymous = curl(["-X", "POST", "--data-binary", list, `${site.url}/v2/_neam/bundle/imports`], "");
    assert.equal(anonymous.code, 401, anonymous.body);
    const opened = curl(["-X", "POST", "--data-binary", list, `${site.url}/v2/_neam/bundle/imports`]);
    assert.equal(opened.code, 200, opened.body);
    const { id } = JSON.parse(opened.body) as Status;
    // Each refused before its body is read (the bodies are small: a refusal closes the connection,
    // and a client still sending a large body may see the reset before the answer).
    const put = (part: number, body: string, user?: string) =>
      curl(
        ["-X", "PUT", "--data-binary", body, `${site.url}/v2/_neam/bundle/imports/${id}/parts/${part}`],
        user,
      );
    const refused = put(0, "x", "alice:alice-pw");
    assert.equal(refused.code, 403, refused.body);
    assert.match(refused.body, /DENIED/);
    // Out of order, and a length that is not the part's.
    const early = put(1, "x");
    assert.equal(early.code, 416, early.body);
    assert.match(early.body, /part 0 comes first/);
    const wrong = put(0, "x");
    assert.equal(wrong.code, 400, wrong.body);
    assert.match(wrong.body, /SIZE_INVALID.*part 0 is \d+ bytes; the request says 1/);
    const status = JSON.parse(curl([`${site.url}/v2/_neam/bundle/imports/${id}`]).body) as Status;
    assert.equal(status.landed, 0);
    // An import given up is forgotten (admins only).
    const url = `${site.url}/v2/_neam/bundle/imports/${id}`;
    assert.equal(curl(["-X", "DELETE", url], "alice:alice-pw").code, 403);
    assert.equal(curl(["-X", "DELETE", url]).code, 204);
    const gone = curl([url]);
    assert.equal(gone.code, 404, gone.body);
    assert.match(gone.body, /no such bundle import/);
  });

  it("killed mid-part and run again: only the parts that had not landed are sent", async () => {
    const bundle = join(dir, "split.tar");
    const parts = partList(bundle);
    assert.ok(parts.length >= 8, `${parts.length} parts`);
    const list = JSON.stringify({ parts: parts.map(({ digest, size }) => ({ digest, size })) });
    const { id } = JSON.parse(
      curl(["-X", "POST", "--data-binary", list, `${site.url}/v2/_neam/bundle/imports`]).body,
    ) as Status;
    // Parts 0-2 with curl, as an operator without the CLI would send them.
    for (const [i, part] of parts.slice(0, 3).entries()) {
      const sent = curl(["-T", part.path, `${site.url}/v2/_neam/bundle/imports/${id}/parts/${i}`]);
      assert.equal(sent.code, 200, sent.body);
      assert.equal((JSON.parse(sent.body) as Status).landed, i + 1);
    }
    // Part 3 trickles in and its sender is killed half way.
    const slow = spawn("curl", [
      "-sS",
      "--limit-rate",
      "64k",
      "-u",
      ADMIN,
      "-T",
      parts[3]!.path,
      `${site.url}/v2/_neam/bundle/imports/${id}/parts/3`,
    ]);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    slow.kill("SIGKILL");
    await new Promise((resolve) => slow.once("exit", resolve));
    // The server notices the dead connection and lets go of the import.
    let status: Status | undefined;
    await waitUntil(async () => {
      status = JSON.parse(curl([`${site.url}/v2/_neam/bundle/imports/${id}`]).body) as Status;
      return status.landed === 3;
    }, 10_000);
    assert.deepEqual(
      status!.landedDigests,
      parts.slice(0, 3).map((p) => p.digest),
    );
    assert.deepEqual(await tagsOf(site, "tools/big"), []);

    // The CLI asks what landed and sends the rest (waiting out the killed request's lock).
    let report: SendReport | undefined;
    await waitUntil(async () => {
      const result = cli(["import", bundle, "--via-server", "--url", site.url, "--json"]);
      if (result.status !== 0 && /another request is sending/.test(result.stderr)) return false;
      report = json<SendReport>(result);
      return true;
    }, 20_000);
    assert.equal(report!.partsLanded, 3);
    assert.equal(report!.partsSent, parts.length - 3);
    assert.equal(
      report!.bytesSent,
      parts.slice(3).reduce((sum, p) => sum + p.size, 0),
      "nothing that landed was sent again",
    );
    assert.equal(digestServed(site, "tools/big:v1"), big.digest);
    assert.deepEqual(await tagsOf(site, "nginx"), ["1.25"]);
    // Every blob came through whole: skopeo copies the image out of the site and checks digests.
    run("skopeo", [
      "--insecure-policy",
      "copy",
      "--all",
      "--src-tls-verify=false",
      "--src-creds",
      ADMIN,
      `docker://${site.host}/tools/big:v1`,
      `oci:${join(dir, "out")}:v1`,
    ]);
    assert.equal(digestServed(site, "nginx:1.25"), index.digest);

    // Run again: everything had landed and was committed; nothing is sent.
    const again = json<SendReport>(cli(["import", bundle, "--via-server", "--url", site.url, "--json"]));
    assert.deepEqual([again.partsSent, again.bytesSent], [0, 0]);
  });

  it("a tampered part lands nothing, names the failing digest, writes no tag; a restart loses nothing", async () => {
    let other = await startSite();
    try {
      const bundle = join(dir, "split.tar");
      const parts = partList(bundle);
      const part = parts[4]!;
      const good = readFileSync(part.path);
      const bad = Buffer.from(good);
      bad[bad.length >> 1] = bad[bad.length >> 1]! ^ 0xff;
      writeFileSync(part.path, bad);
      let failed;
      try {
        failed = cli(["import", bundle, "--via-server", "--url", other.url]);
      } finally {
        writeFileSync(part.path, good);
      }
      assert.equal(failed.status, 1, failed.stderr);
      assert.equal(failed.stderr.trim().split("\n").length, 1, failed.stderr);
      // The layer running through the part, or the part itself: a digest, and the part's number.
      assert.match(failed.stderr, /sha256:[a-f0-9]{64}.*part 4|part 4.*sha256:[a-f0-9]{64}/);
      assert.deepEqual(await tagsOf(other, "tools/big"), []);
      assert.deepEqual(await tagsOf(other, "nginx"), []);
      const list = JSON.stringify({ parts: parts.map(({ digest, size }) => ({ digest, size })) });
      const status = JSON.parse(
        curl(["-X", "POST", "--data-binary", list, `${other.url}/v2/_neam/bundle/imports`]).body,
      ) as Status;
      assert.equal(status.landed, 4, "the tampered part did not land");

      // The import's state is in storage: a restarted registry goes on from there.
      await other.stop();
      other = await startSite(other.root);

      // The good part sent again: the import goes on from part 4.
      const report = json<SendReport>(cli(["import", bundle, "--via-server", "--url", other.url, "--json"]));
      assert.equal(report.partsLanded, 4);
      assert.equal(
        report.bytesSent,
        parts.slice(4).reduce((sum, p) => sum + p.size, 0),
      );
      assert.deepEqual(await tagsOf(other, "tools/big"), ["v1"]);
    } finally {
      await other.stop();
    }
  });

  it("a damaged small blob early in a large part: the answer names it, not a reset connection", async () => {
    const other = await startSite();
    try {
      // The big image's config, inside the first 1 MiB range, with 1 MiB more of the range to come.
      const whole = readFileSync(join(dir, "whole.tar"));
      const config = big.blobs[0]!;
      const at = whole.indexOf(config.data);
      assert.ok(at > 0 && at < 1 << 20);
      whole[at + 2] = whole[at + 2]! ^ 1;
      const damaged = join(dir, "damaged.tar");
      writeFileSync(damaged, whole);
      const failed = cli(["import", damaged, "--via-server", "--part-size", "2MiB", "--url", other.url]);
      assert.equal(failed.status, 1);
      assert.match(failed.stderr, new RegExp(`DIGEST_INVALID: ${config.digest}: .* \\(part 0\\)`));
      assert.equal(failed.stderr.trim().split("\n").length, 1, failed.stderr);
      assert.deepEqual(await tagsOf(other, "tools/big"), []);
    } finally {
      await other.stop();
    }
  });

  it("a bundle larger than the registry's free space is refused before a blob is written", async (t) => {
    // The site's storage on a 6 MiB tmpfs; the bundle's layers need 9 MiB.
    const mountPoint = tempDir("neam-bundle-small-");
    if (
      run("mount", ["-t", "tmpfs", "-o", "size=6m", "tmpfs", mountPoint], { allowFailure: true }).status !== 0
    )
      return t.skip("cannot mount a tmpfs here (not root?)");
    const small = await startSite(join(mountPoint, "data"));
    try {
      for (const via of [["--via-server"], []]) {
        const refused = cli(["import", join(dir, "split.tar"), ...via, "--url", small.url]);
        assert.equal(refused.status, 1, `${via.join(" ")}: ${refused.stderr}`);
        assert.match(refused.stderr, /the bundle needs \d+ bytes the registry lacks, and it has \d+ free/);
        assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
      }
      assert.deepEqual(await tagsOf(small, "tools/big"), []);
      const have = (await (
        await fetch(`${small.url}/v2/_neam/have`, {
          headers: { Authorization: `Basic ${Buffer.from(ADMIN).toString("base64")}` },
        })
      ).json()) as { digests: string[] };
      assert.deepEqual(have.digests, [], "no blob was written");
    } finally {
      await small.stop();
      run("umount", [mountPoint], { allowFailure: true });
    }
  });

  it("a single-file bundle goes in ranges cut between entries; a plain OCI layout is refused", async () => {
    const other = await startSite();
    try {
      const report = json<SendReport>(
        cli([
          "import",
          join(dir, "whole.tar"),
          "--via-server",
          "--part-size",
          "1MiB",
          "--url",
          other.url,
          "--json",
        ]),
      );
      assert.ok(report.parts >= 4, `${report.parts} parts`);
      assert.equal(report.counts.uploaded, new Set([...big.blobs.map((b) => b.digest), ...nginxBlobs]).size);
      assert.deepEqual(report.images.map((i) => i.target).sort(), ["nginx:1.25", "tools/big:v1"]);
      assert.deepEqual(await tagsOf(other, "tools/big"), ["v1"]);

      // The same bundle re-packed with a pax header before every entry (as GNU tar or another
      // tool may write it) imports too: everything is there already, so nothing is stored again.
      const paxed = join(dir, "pax.tar");
      const { extract, pack } = await import("tar-stream");
      const { createReadStream, createWriteStream } = await import("node:fs");
      const { pipeline } = await import("node:stream/promises");
      const repack = pack();
      const written = pipeline(repack, createWriteStream(paxed));
      for await (const entry of createReadStream(join(dir, "whole.tar")).pipe(extract()))
        await pipeline(entry, repack.entry({ ...entry.header, pax: { comment: "re-packed" } }));
      repack.finalize();
      await written;
      assert.match(run("tar", ["-tvf", paxed]).stdout, /neam-bundle\.json/);
      const again = json<SendReport>(
        cli(["import", paxed, "--via-server", "--part-size", "1MiB", "--url", other.url, "--json"]),
      );
      assert.equal(again.counts.uploaded, 0);
      assert.equal(again.counts.skipped, report.counts.uploaded);
      assert.equal(again.images.length, 2);

      const layout = join(dir, "layout");
      writeOciLayout(layout, "v1", "plain");
      const tarFile = join(dir, "layout.tar");
      run("tar", ["-cf", tarFile, "-C", layout, "."]);
      const refused = cli(["import", tarFile, "--via-server", "--url", other.url]);
      assert.equal(refused.status, 1);
      assert.match(refused.stderr, /plain OCI layout imports without --via-server/);
    } finally {
      await other.stop();
    }
  });
});
