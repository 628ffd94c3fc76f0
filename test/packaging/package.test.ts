/**
 * The package as another NEAM stack gets it: `npm pack` from a clean clone (prepack builds dist),
 * unpacked into a fresh project beside its declared dependencies and cdk8s peers only, then a chart
 * with two registries in a namespace of its own, recording every module the import loads.
 *
 * Offline here, `npm install --offline <tgz>` stops with ENOTCACHED: this machine's npm cache lacks
 * the runtime dependencies (node_modules was copied, not installed). So the project is laid out
 * as npm would: the tarball unpacked into node_modules/neam-registry, and each package the packed
 * package.json declares (dependencies and peerDependencies, nothing else) linked from this clone's
 * node_modules. A module under dist/ importing anything undeclared fails to resolve.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { it } from "node:test";
import semver from "semver";
import { parseAllDocuments } from "yaml";
import { tempDir } from "../helpers/registry.js";
import { cleanCopy, ROOT } from "../stacks/clean-copy.js";

interface PackageJson {
  name: string;
  version: string;
  engines?: { node?: string };
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  files?: string[];
}

/** The server modules the constructs may load: the contract and the leaf modules it re-exports. */
const CONTRACT = [
  "config/load.js",
  "config/schema.js",
  "contract/defaults.js",
  "contract/index.js",
  "metrics/names.js",
  "registry/digest.js",
  "registry/errors.js",
  "registry/names.js",
  "sync/image-reference.js",
  "sync/manifest.js",
  "sync/mirror-config.js",
  "sync/mirror-map.js",
];

// Runs in the consumer project: a loader hook that appends each loaded module's URL to a file.
const HOOKS = `import { appendFileSync } from "node:fs";
let out;
export function initialize(data) { out = data.out; }
export async function load(url, context, next) { appendFileSync(out, url + "\\n"); return next(url, context); }
`;
const REGISTER = `import { register } from "node:module";
register(new URL("./hooks.mjs", import.meta.url), { data: { out: process.env.LOADED_MODULES } });
`;
const CONSUMER = `import { App, Chart } from "cdk8s";
import { LocalRegistry } from "neam-registry/constructs";

const app = new App({ outdir: process.argv[2] });
const chart = new Chart(app, "platform", { namespace: "neam-platform", disableResourceNameHashes: true });
for (const [id, createNamespace] of [["images", true], ["charts", false]]) {
  new LocalRegistry(chart, id, {
    namespace: "neam-platform",
    createNamespace,
    name: \`registry-\${id}\`,
    prefix: id,
    networkPolicy: { enabled: false },
  });
}
app.synth();
`;

it(
  "neam-registry/constructs from a packed package: two registries, no server runtime loaded",
  { timeout: 600_000 },
  () => {
    // npm pack in a clean clone: no dist/ until prepack builds it.
    const clone = cleanCopy("neam-pack-");
    const packDir = tempDir("neam-tgz-");
    const packed = spawnSync("npm", ["pack", "--silent", "--pack-destination", packDir], {
      cwd: clone,
      encoding: "utf8",
    });
    assert.equal(packed.status, 0, packed.stderr);
    const [tgz] = readdirSync(packDir).filter((f) => f.endsWith(".tgz"));
    assert.ok(tgz, "npm pack wrote no tarball");
    const listing = execFileSync("tar", ["tzf", join(packDir, tgz)], { encoding: "utf8" }).split("\n");
    for (const file of [
      "dist/constructs/index.js",
      "dist/constructs/index.d.ts",
      "dist/server/src/contract/index.js",
    ]) {
      assert.ok(listing.includes(`package/${file}`), `${file} not in the tarball`);
    }
    assert.ok(!listing.some((f) => f.startsWith("package/dist/stacks/")), "the Pulumi program is shipped");

    // The fresh project: the tarball where npm puts it, declared dependencies beside it.
    const project = tempDir("neam-consumer-");
    const modules = join(project, "node_modules");
    mkdirSync(join(modules, "neam-registry"), { recursive: true });
    execFileSync("tar", [
      "xzf",
      join(packDir, tgz),
      "-C",
      join(modules, "neam-registry"),
      "--strip-components=1",
    ]);
    const pkg = JSON.parse(readFileSync(join(modules, "neam-registry/package.json"), "utf8")) as PackageJson;
    for (const name of [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]) {
      mkdirSync(join(modules, name, ".."), { recursive: true });
      symlinkSync(join(ROOT, "node_modules", name), join(modules, name));
    }
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "neam-platform", private: true, type: "module" }),
    );
    writeFileSync(join(project, "hooks.mjs"), HOOKS);
    writeFileSync(join(project, "register.mjs"), REGISTER);
    writeFileSync(join(project, "main.mjs"), CONSUMER);

    const log = join(project, "loaded.txt");
    const run = spawnSync(
      process.execPath,
      ["--import", "./register.mjs", "main.mjs", join(project, "out")],
      {
        cwd: project,
        encoding: "utf8",
        env: { ...process.env, LOADED_MODULES: log },
      },
    );
    assert.equal(run.status, 0, run.stderr);

    // Two registries, each with its own Deployment, in the chart's namespace; one Namespace.
    const objects = parseAllDocuments(readFileSync(join(project, "out/platform.k8s.yaml"), "utf8")).map(
      (d) => d.toJSON() as { kind: string; metadata: { name: string; namespace?: string } },
    );
    const deployments = objects.filter((o) => o.kind === "Deployment");
    assert.deepEqual(deployments.map((d) => d.metadata.name).sort(), ["registry-charts", "registry-images"]);
    assert.deepEqual(
      objects.filter((o) => o.kind === "Namespace").map((o) => o.metadata.name),
      ["neam-platform"],
    );
    for (const object of objects) {
      if (object.kind !== "Namespace")
        assert.equal(object.metadata.namespace, "neam-platform", object.metadata.name);
    }

    // What the import loaded of the package: the constructs and the contract, nothing else of the server.
    const prefix = `file://${join(modules, "neam-registry")}/dist/`;
    const loaded = readFileSync(log, "utf8")
      .split("\n")
      .filter((url) => url.startsWith(prefix))
      .map((url) => url.slice(prefix.length));
    assert.ok(loaded.includes("constructs/index.js"));
    const server = [
      ...new Set(loaded.filter((f) => f.startsWith("server/src/")).map((f) => f.slice("server/src/".length))),
    ];
    assert.deepEqual(server.sort(), CONTRACT);
  },
);

it("the packed package.json: peers, no Pulumi at run time, engines true of every runtime dependency", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as PackageJson;
  assert.deepEqual(Object.keys(pkg.peerDependencies ?? {}).sort(), ["cdk8s", "cdk8s-plus-27", "constructs"]);
  for (const name of Object.keys(pkg.dependencies ?? {})) {
    assert.ok(
      !/^(@pulumi\/|cdk8s|constructs$|kubernetes-models$|@kubernetes-models\/)/.test(name),
      `${name} is a runtime dependency`,
    );
  }
  // Every package a consumer installs with us (the runtime tree and the peers) runs on our oldest Node.
  const oldest = semver.minVersion(pkg.engines?.node ?? "*")!;
  const tree = execFileSync("npm", ["ls", "--omit=dev", "--all", "--parseable"], {
    cwd: ROOT,
    encoding: "utf8",
  })
    .split("\n")
    .slice(1)
    .filter((p) => p !== "");
  const peers = Object.keys(pkg.peerDependencies ?? {}).map((name) => join(ROOT, "node_modules", name));
  assert.ok(tree.length > 10);
  for (const dir of [...tree, ...peers]) {
    const dependency = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as PackageJson;
    const range = dependency.engines?.node;
    if (range === undefined || semver.validRange(range) === null) continue;
    assert.ok(
      semver.satisfies(oldest, range),
      `${dependency.name}@${dependency.version} needs Node ${range}; engines says ${pkg.engines?.node}`,
    );
  }
});
