/**
 * The registry image as `npm run image` builds it, run for real: built twice (same digest), run by
 * podman read-only as uid 65532 with data on a host volume, pushed to and pulled from with skopeo,
 * diagnosed from inside, and imported by containerd under the name the constructs deploy. The
 * builder needs Debian's archive (apt) like every other install step here.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { Chart } from "cdk8s";
import { LocalRegistry } from "../../constructs/index.js";
import { walk } from "../../image/app-files.js";
import { CMD, ENTRYPOINT, HEALTHCHECK, push } from "../../image/build.js";
import { qualifiedReference } from "../../image/oci.js";
import { testApp } from "../helpers/cdk8s.js";
import { startContainerd, type Containerd } from "../helpers/containerd.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { freePort, startRegistry, tempDir, waitUntil } from "../helpers/registry.js";
import { run, servedDigest, skopeo } from "../helpers/tools.js";

const ROOT = new URL("../../../", import.meta.url).pathname;
const BUILD = join(ROOT, "dist/image/build.js");

interface Summary {
  reference: string;
  manifestDigest: string;
  size: number;
  layers: { digest: string; size: number }[];
  archive: string;
  seconds: number;
}

function build(out: string, ...args: string[]): Summary {
  const result = spawnSync(process.execPath, [BUILD, "--out", out, "--json", ...args], {
    encoding: "utf8",
    timeout: 10 * 60_000,
  });
  assert.equal(result.status, 0, `npm run image failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as Summary;
}

let work: string;
let first: Summary;
let second: Summary;
let podmanDir: string;
const podmanArgs = () => [
  "--root",
  join(podmanDir, "root"),
  "--runroot",
  join(podmanDir, "run"),
  "--storage-driver",
  "vfs",
];
const podman = (...args: string[]) => run("podman", [...podmanArgs(), ...args], { timeout: 300_000 });
const podmanMayFail = (...args: string[]) =>
  run("podman", [...podmanArgs(), ...args], { timeout: 60_000, allowFailure: true });

describe("the registry image (npm run image)", { timeout: 20 * 60_000 }, () => {
  before(async () => {
    work = tempDir("neam-image-");
    first = build(join(work, "a"));
    // A rebuild from scratch with the first build's Debian versions: a different directory, a
    // fresh root filesystem, the addon compiled again, the application copied again.
    second = build(join(work, "b"), "--packages", join(work, "a/packages.txt"));
    podmanDir = join(work, "podman");
  });

  it("gives the same digest when built twice from the same commit and Debian packages", () => {
    console.log(
      `image ${first.reference} ${first.manifestDigest}: ${(first.size / 1048576).toFixed(1)} MiB, built in ${first.seconds} s and ${second.seconds} s`,
    );
    assert.equal(second.manifestDigest, first.manifestDigest);
    assert.deepEqual(second.layers, first.layers);
    assert.equal(
      createHash("sha256").update(readFileSync(second.archive)).digest("hex"),
      createHash("sha256").update(readFileSync(first.archive)).digest("hex"),
      "the oci-archive is the same bytes",
    );
  });

  it("holds what server/Dockerfile builds: application files, user, ports, entrypoint, config", () => {
    const layout = join(work, "a/oci");
    const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as {
      manifests: { digest: string }[];
    };
    const blob = (digest: string) => join(layout, "blobs/sha256", digest.slice(7));
    const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), "utf8")) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    const config = JSON.parse(readFileSync(blob(manifest.config.digest), "utf8")) as {
      config: Record<string, unknown>;
    };
    const dockerfile = readFileSync(join(ROOT, "server/Dockerfile"), "utf8");
    const runtime = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
    const instruction = (name: string) => new RegExp(`^${name} (.+)$`, "m").exec(runtime)?.[1];
    assert.equal(config.config.User, instruction("USER"));
    assert.deepEqual(
      Object.keys(config.config.ExposedPorts as object),
      instruction("EXPOSE")!
        .split(" ")
        .map((p) => `${p}/tcp`),
    );
    assert.deepEqual(config.config.Entrypoint, JSON.parse(instruction("ENTRYPOINT")!));
    assert.deepEqual(config.config.Cmd, JSON.parse(instruction("CMD")!));
    assert.deepEqual(config.config.Entrypoint, ENTRYPOINT);
    assert.deepEqual(config.config.Cmd, CMD);
    const healthcheck = JSON.parse(/^HEALTHCHECK [^\n]*\\\n\s+CMD (\[.+\])$/m.exec(runtime)![1]!) as string[];
    assert.deepEqual((config.config.Healthcheck as { Test: string[] }).Test, ["CMD", ...healthcheck]);
    assert.deepEqual(HEALTHCHECK, ["CMD", ...healthcheck]);
    assert.deepEqual(Object.keys(config.config.Volumes as object), [instruction("VOLUME")]);

    // The application layer, unpacked, against what the Dockerfile's build stage runs.
    const unpacked = join(work, "app-layer");
    mkdirSync(unpacked);
    run("tar", ["-xzf", blob(manifest.layers.at(-1)!.digest), "-C", unpacked]);
    const stage = /^RUN npm run build && node (dist\/image\/app-files\.js) (\S+)$/m.exec(dockerfile);
    assert.ok(stage, "the Dockerfile's build stage takes the application files from image/app-files.ts");
    const fromDockerfile = join(work, "dockerfile-app");
    run(process.execPath, [join(ROOT, stage[1]!), fromDockerfile]);
    assert.match(dockerfile, new RegExp(`^COPY --from=build ${stage[2]} /app$`, "m"));
    const files = (dir: string) => new Map(walk(dir).map((f) => [relative(dir, f), readFileSync(f)]));
    const image = files(join(unpacked, "app"));
    const docker = files(fromDockerfile);
    assert.deepEqual([...image.keys()].sort(), [...docker.keys()].sort());
    for (const [path, bytes] of image)
      if (!path.endsWith(".node")) assert.ok(bytes.equals(docker.get(path)!), `${path} differs`);
    assert.ok(image.has("server/native/build/Release/neam_native.node"), "the addon is in the image");
    assert.ok(
      ![...image.keys()].some((p) => p.includes("node_modules/@pulumi/") || p.includes("node_modules/cdk8s")),
    );

    const copied = /^COPY (server\/config\.default\.yml) (\S+)$/m.exec(runtime)!;
    assert.deepEqual(
      readFileSync(join(unpacked, copied[2]!)),
      readFileSync(join(ROOT, copied[1]!)),
      "the default config at registry:2's path",
    );
  });

  it("--push puts the same image into a registry", async () => {
    const registry = await startRegistry();
    try {
      push(
        { reference: first.reference, layout: join(work, "a/oci") },
        `${registry.host}/neam-registry:test`,
        false,
      );
      assert.equal(servedDigest(`docker://${registry.host}/neam-registry:test`), first.manifestDigest);
    } finally {
      await registry.stop();
    }
  });

  describe("run by podman, read-only, as 65532", () => {
    let data: string;
    let port: number;
    let debug: number;
    let image: string;
    const name = `neam-image-test-${process.pid}`;
    const url = () => `127.0.0.1:${port}`;

    const start = async () => {
      podman(
        "run",
        "-d",
        "--name",
        name,
        "--runtime",
        "runc",
        "--network",
        "host",
        "--read-only",
        "--user",
        "65532:65532",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=1024:1024",
        "-v",
        `${data}:/var/lib/registry`,
        "-v",
        `${join(podmanDir, "config.yml")}:/etc/docker/registry/config.yml:ro`,
        image,
      );
      await waitUntil(
        async () => (await fetch(`http://${url()}/v2/`).catch(() => undefined))?.status === 200,
        60_000,
      );
    };

    before(async () => {
      mkdirSync(podmanDir, { recursive: true });
      data = join(podmanDir, "data");
      mkdirSync(data);
      chownSync(data, 65532, 65532);
      port = await freePort();
      debug = await freePort();
      writeFileSync(
        join(podmanDir, "config.yml"),
        [
          "version: 0.1",
          "storage:",
          "  filesystem: { rootdirectory: /var/lib/registry }",
          "  delete: { enabled: true }",
          `http: { addr: "127.0.0.1:${port}", debug: { addr: "127.0.0.1:${debug}" } }`,
          "",
        ].join("\n"),
      );
      image = podman("pull", "-q", `oci-archive:${first.archive}`).stdout.trim().split("\n").at(-1)!;
      await start();
    });

    after(() => {
      if (podmanDir) podmanMayFail("rm", "-f", "-t", "2", name);
    });

    it("answers /v2/ and /debug/health", async () => {
      assert.equal((await fetch(`http://${url()}/v2/`)).status, 200);
      assert.equal((await fetch(`http://127.0.0.1:${debug}/debug/health`)).status, 200);
      const inspect = JSON.parse(podman("inspect", name).stdout) as {
        Config: { User: string };
        HostConfig: { ReadonlyRootfs: boolean };
      }[];
      assert.equal(inspect[0]!.Config.User, "65532:65532");
      assert.equal(inspect[0]!.HostConfig.ReadonlyRootfs, true);
    });

    it("takes a multi-arch push and gives it back with the same digests, kept across a restart", async () => {
      const layout = join(tempDir(), "layout");
      const written = writeOciLayout(layout, "v1", "image-test");
      skopeo(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        `oci:${layout}:v1`,
        `docker://${url()}/apps/hello:v1`,
      );
      assert.equal(servedDigest(`docker://${url()}/apps/hello:v1`), written.index);
      const back = join(tempDir(), "back");
      skopeo("copy", "--all", "--src-tls-verify=false", `docker://${url()}/apps/hello:v1`, `oci:${back}:v1`);
      for (const digest of Object.values(written.manifests))
        assert.ok(existsSync(join(back, "blobs/sha256", digest.slice(7))), `${digest} pulled back`);

      podman("stop", "-t", "10", name);
      podman("rm", name);
      await start();
      assert.equal(
        servedDigest(`docker://${url()}/apps/hello:v1`),
        written.index,
        "data survives a new container",
      );
    });

    it("has the guide's diagnostics inside: wget, nc, netstat, nslookup, df, tar", () => {
      assert.equal(
        podman("exec", name, "wget", "-q", "-O", "-", `http://localhost:${port}/v2/`).stdout,
        "{}",
      );
      podman("exec", name, "nc", "-zv", "127.0.0.1", String(port));
      assert.notEqual(
        podmanMayFail("exec", name, "nc", "-z", "127.0.0.1", "1").status,
        0,
        "nc -z tells a closed port",
      );
      assert.match(
        podman("exec", name, "netstat", "-ant").stdout,
        new RegExp(`127\\.0\\.0\\.1:${port}\\s.*LISTEN`),
      );
      // nslookup asks the resolver the pod has; here only its presence is checked (no DNS traffic).
      assert.match(podmanMayFail("exec", name, "nslookup", "--help").stderr, /Usage: nslookup/);
      assert.match(podman("exec", name, "df", "-h", "/var/lib/registry").stdout, /Filesystem/);
      assert.match(podman("exec", name, "tar", "--help").stderr, /BusyBox|Usage/);
      assert.equal(podman("exec", name, "id", "-u").stdout.trim(), "65532");
      assert.notEqual(
        podmanMayFail("exec", name, "touch", "/etc/x").status,
        0,
        "the root filesystem is read-only",
      );
    });
  });

  describe("imported by containerd", () => {
    let containerd: Containerd;
    let socket: string;

    before(async () => {
      containerd = await startContainerd("neam-image-ctr-");
      socket = containerd.socket;
    });

    after(() => containerd?.stop());

    it("lists the image under the reference the constructs deploy by default", () => {
      const chart = new Chart(testApp(), "image");
      new LocalRegistry(chart, "registry", { networkPolicy: { enabled: false } } as never);
      const deployment = chart.toJson().find((o: { kind: string }) => o.kind === "Deployment") as {
        spec: { template: { spec: { containers: { image: string; imagePullPolicy: string }[] } } };
      };
      const container = deployment.spec.template.spec.containers[0]!;
      assert.equal(container.imagePullPolicy, "IfNotPresent", "the imported image is used, never pulled");
      const ctr = (...args: string[]) => run("ctr", ["--address", socket, "--namespace", "k8s.io", ...args]);
      ctr("images", "import", first.archive);
      const listed = ctr("images", "ls", "-q").stdout.split("\n").filter(Boolean);
      assert.ok(
        listed.includes(qualifiedReference(container.image)),
        `${qualifiedReference(container.image)} in ${listed.join(", ")}`,
      );
      const check = ctr("images", "check").stdout;
      assert.match(
        check,
        new RegExp(`${qualifiedReference(container.image).replace(/[.]/g, "\\.")}.*complete`),
      );
    });
  });
});
