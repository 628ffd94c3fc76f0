/**
 * Helm chart repository (the ChartMuseum API at /chartrepo), driven as the operations guide
 * does with curl (helm and the cm-push plugin are not obtainable here; they send the same
 * requests): upload, index.yaml, download by the index's URL, and the same chart as an OCI
 * artifact.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import { basicAuth, blob, Client, sha256 } from "../helpers/oci.js";
import { startRegistry, tempDir, type RegistryProcess } from "../helpers/registry.js";
import { skopeo } from "../helpers/tools.js";

/** A packaged chart as `helm package` makes it: <name>/Chart.yaml and templates in a .tgz. */
function packageChart(name: string, version: string, extra: Record<string, unknown> = {}): string {
  const dir = tempDir();
  mkdirSync(join(dir, name, "templates"), { recursive: true });
  writeFileSync(
    join(dir, name, "Chart.yaml"),
    stringify({
      apiVersion: "v2",
      name,
      version,
      appVersion: "1.25",
      description: `the ${name} chart`,
      ...extra,
    }),
  );
  writeFileSync(join(dir, name, "values.yaml"), "replicas: 1\n");
  writeFileSync(join(dir, name, "templates", "cm.yaml"), "apiVersion: v1\nkind: ConfigMap\n");
  const file = join(dir, `${name}-${version}.tgz`);
  const result = spawnSync("tar", ["-czf", file, "-C", dir, name], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  return file;
}

function curl(...args: string[]): { status: number; body: string } {
  const result = spawnSync("curl", ["-s", "-w", "\n%{http_code}", ...args], { encoding: "utf8" });
  const at = result.stdout.lastIndexOf("\n");
  return { status: Number(result.stdout.slice(at + 1)), body: result.stdout.slice(0, at) };
}

const hexOf = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

interface Index {
  apiVersion: string;
  entries: Record<
    string,
    { name: string; version: string; digest: string; urls: string[]; appVersion: string }[]
  >;
}

describe("chart repository (/chartrepo, ChartMuseum API)", () => {
  let registry: RegistryProcess;
  const repo = () => `${registry.url}/chartrepo`;
  const v100 = packageChart("myapp", "1.0.0");
  const v110 = packageChart("myapp", "1.1.0");

  before(async () => {
    registry = await startRegistry();
  });
  after(() => registry?.stop());
  /** Both versions stored, whatever ran before (each test runs alone with --test-name-pattern). */
  const uploaded = () => {
    for (const file of [v100, v110])
      assert.equal(curl("--data-binary", `@${file}`, `${repo()}/api/charts?force=true`).status, 201);
  };

  it("takes uploads as a raw body and as cm-push's multipart form; an existing version is 409", () => {
    const raw = curl("--data-binary", `@${v100}`, `${repo()}/api/charts`);
    assert.equal(raw.status, 201, raw.body);
    assert.equal(JSON.parse(raw.body).saved, true);
    const form = curl("-F", `chart=@${v110}`, `${repo()}/api/charts`);
    assert.equal(form.status, 201, form.body);
    const again = curl("--data-binary", `@${v100}`, `${repo()}/api/charts`);
    assert.equal(again.status, 409);
    assert.match(JSON.parse(again.body).error, /myapp-1\.0\.0\.tgz already exists/);
    assert.equal(curl("--data-binary", `@${v100}`, `${repo()}/api/charts?force=true`).status, 201);
  });

  it("serves index.yaml as `helm repo add … /chartrepo` reads it, and each URL in it downloads the chart", async () => {
    uploaded();
    const response = curl(`${repo()}/index.yaml`);
    assert.equal(response.status, 200);
    const index = parse(response.body) as Index;
    assert.equal(index.apiVersion, "v1");
    assert.deepEqual(
      index.entries.myapp!.map((e) => [e.version, e.appVersion]),
      [
        ["1.1.0", "1.25"],
        ["1.0.0", "1.25"],
      ],
    );
    for (const [entry, file] of [
      [index.entries.myapp![0]!, v110],
      [index.entries.myapp![1]!, v100],
    ] as const) {
      assert.equal(entry.digest, hexOf(file));
      // Helm resolves the URL against the repository URL (with a trailing slash).
      const url = new URL(entry.urls[0]!, `${repo()}/`);
      const download = await fetch(url);
      assert.equal(download.status, 200);
      assert.ok(Buffer.from(await download.arrayBuffer()).equals(readFileSync(file)));
    }
  });

  it("stores each chart as `helm push` would, so it is also an OCI artifact", async () => {
    uploaded();
    const client = new Client(registry.url);
    const manifest = (await (
      await client.request("GET", "/v2/charts/myapp/manifests/1.0.0", {
        headers: { Accept: "application/vnd.oci.image.manifest.v1+json" },
      })
    ).json()) as { config: { mediaType: string }; layers: { mediaType: string; digest: string }[] };
    assert.equal(manifest.config.mediaType, "application/vnd.cncf.helm.config.v1+json");
    assert.equal(manifest.layers[0]!.mediaType, "application/vnd.cncf.helm.chart.content.v1.tar+gzip");
    assert.equal(manifest.layers[0]!.digest, `sha256:${hexOf(v100)}`);
    const raw = skopeo(
      "inspect",
      "--tls-verify=false",
      "--raw",
      `docker://${registry.host}/charts/myapp:1.1.0`,
    );
    assert.equal(JSON.parse(raw.stdout).layers[0].digest, `sha256:${hexOf(v110)}`);

    // And the other way: a chart pushed over OCI (helm push oci://…/charts) is in the index.
    const tgz = readFileSync(packageChart("pushed", "0.1.0"));
    const config = blob(JSON.stringify({ apiVersion: "v2", name: "pushed", version: "0.1.0" }));
    const layer = blob(tgz);
    await client.pushBlob("charts/pushed", config);
    await client.pushBlob("charts/pushed", layer);
    const put = await client.request("PUT", "/v2/charts/pushed/manifests/0.1.0", {
      headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
      body: JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {
          mediaType: "application/vnd.cncf.helm.config.v1+json",
          digest: config.digest,
          size: config.size,
        },
        layers: [
          {
            mediaType: "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            digest: layer.digest,
            size: layer.size,
          },
        ],
      }),
    });
    assert.equal(put.status, 201);
    const index = parse(curl(`${repo()}/index.yaml`).body) as Index;
    assert.equal(index.entries.pushed![0]!.digest, sha256(tgz).slice(7));
  });

  it("lists, shows and deletes versions through the API", () => {
    const [a, b] = [packageChart("listed", "1.0.0"), packageChart("listed", "1.1.0")];
    for (const file of [a, b])
      assert.equal(curl("--data-binary", `@${file}`, `${repo()}/api/charts?force=true`).status, 201);
    const all = JSON.parse(curl(`${repo()}/api/charts`).body) as Record<string, { version: string }[]>;
    assert.deepEqual(
      all.listed!.map((e) => e.version),
      ["1.1.0", "1.0.0"],
    );
    assert.equal(JSON.parse(curl(`${repo()}/api/charts/listed/1.0.0`).body).version, "1.0.0");
    const deleted = curl("-X", "DELETE", `${repo()}/api/charts/listed/1.0.0`);
    assert.equal(deleted.status, 200);
    assert.deepEqual(JSON.parse(deleted.body), { deleted: true });
    assert.equal(curl(`${repo()}/api/charts/listed/1.0.0`).status, 404);
    const index = parse(curl(`${repo()}/index.yaml`).body) as Index;
    assert.deepEqual(
      index.entries.listed!.map((e) => e.version),
      ["1.1.0"],
    );
    assert.equal(curl(`${repo()}/charts/listed-1.0.0.tgz`).status, 404);
    assert.equal(curl(`${repo()}/api/charts/nothing`).status, 404);
  });

  it("keeps namespaces apart (/chartrepo/<namespace>/…), and finds names and versions with dashes", () => {
    const chart = packageChart("my-app", "2.0.0-rc.1");
    assert.equal(curl("--data-binary", `@${chart}`, `${repo()}/team-a/api/charts`).status, 201);
    const team = parse(curl(`${repo()}/team-a/index.yaml`).body) as Index;
    assert.deepEqual(Object.keys(team.entries), ["my-app"]);
    assert.equal(team.entries["my-app"]![0]!.urls[0], "charts/my-app-2.0.0-rc.1.tgz");
    const download = curl("-o", "/dev/null", `${repo()}/team-a/charts/my-app-2.0.0-rc.1.tgz`);
    assert.equal(download.status, 200);
    assert.ok(!("my-app" in (parse(curl(`${repo()}/index.yaml`).body) as Index).entries));
  });

  it("refuses what is not a chart with a one-line reason, storing nothing", () => {
    const notGzip = join(tempDir(), "x.tgz");
    writeFileSync(notGzip, "hello");
    const noChart = join(tempDir(), "empty.tgz");
    spawnSync("tar", ["-czf", noChart, "-C", tempDir(), "."]);
    const cases: [string, RegExp][] = [
      [notGzip, /not a gzipped tar archive/],
      [noChart, /no <chart>\/Chart\.yaml/],
      [packageChart("badversion", "one"), /version "one" is not SemVer 2/],
      [packageChart("BadName", "1.0.0"), /name must be lowercase/],
    ];
    for (const [file, message] of cases) {
      const response = curl("--data-binary", `@${file}`, `${repo()}/api/charts`);
      assert.equal(response.status, 400, file);
      assert.match(JSON.parse(response.body).error, message);
    }
    assert.ok(!("badversion" in (parse(curl(`${repo()}/index.yaml`).body) as Index).entries));
  });
});

describe("chart repository with authentication", () => {
  it("asks for credentials (helm repo add --username/--password) and checks push and pull rights", async () => {
    const htpasswd = join(tempDir(), "htpasswd");
    writeFileSync(
      htpasswd,
      ["alice", "bob"]
        .map((u) =>
          spawnSync("htpasswd", ["-nbB", "-C", "5", u, `${u}-pw`], { encoding: "utf8" }).stdout.trim(),
        )
        .join("\n") + "\n",
    );
    const registry = await startRegistry({
      config: {
        auth: {
          htpasswd: { realm: "charts", path: htpasswd },
          access: {
            rules: [{ subjects: ["user:alice"], repositories: ["charts/**"], actions: ["*"] }],
            default: ["pull"],
          },
        },
      },
    });
    try {
      const repo = `${registry.url}/chartrepo`;
      const chart = packageChart("secure", "1.0.0");
      const anonymous = curl("-D", "-", "--data-binary", `@${chart}`, `${repo}/api/charts`);
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.body, /WWW-Authenticate: Basic realm="charts"/i);
      assert.equal(curl("-u", "bob:bob-pw", "--data-binary", `@${chart}`, `${repo}/api/charts`).status, 403);
      assert.equal(
        curl("-u", "alice:alice-pw", "--data-binary", `@${chart}`, `${repo}/api/charts`).status,
        201,
      );
      assert.equal(curl(`${repo}/index.yaml`).status, 401);
      const index = parse(curl("-u", "bob:bob-pw", `${repo}/index.yaml`).body) as Index;
      assert.deepEqual(Object.keys(index.entries), ["secure"]);
      const client = new Client(registry.url);
      const download = await client.request("GET", "/chartrepo/charts/secure-1.0.0.tgz", {
        headers: basicAuth("bob", "bob-pw"),
      });
      assert.equal(download.status, 200);
    } finally {
      await registry.stop();
    }
  });
});
