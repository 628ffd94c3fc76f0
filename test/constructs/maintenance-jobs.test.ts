/**
 * The sync and GC CronJobs: the guide's names and schedules, locked down like the registry, and
 * commands that really work — each CronJob's arguments are run against a running registry, with
 * the synthesized sync manifest and upstream config.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { makeCertificates } from "../helpers/certs.js";
import { Chart, Testing } from "cdk8s";
import { parse } from "yaml";
import { DEFAULT_IMAGE, LocalRegistry, type LocalRegistryProps } from "../../constructs/index.js";
import { ENVIRONMENTS } from "../../stacks/environments.js";
import { Client, imageManifest, sha256 } from "../helpers/oci.js";
import { startReference } from "../helpers/reference.js";
import { startRegistry, tempDir } from "../helpers/registry.js";
import { testApp } from "../helpers/cdk8s.js";

const run = promisify(execFile);
const MAIN = new URL("../../server/src/main.js", import.meta.url).pathname;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

function synth(props: LocalRegistryProps): Loose[] {
  const chart = new Chart(testApp(), "test", { disableResourceNameHashes: true });
  new LocalRegistry(chart, "registry", { networkPolicy: { nodeCidrs: ["10.0.0.0/24"] }, ...props });
  return Testing.synth(chart);
}
const cronJobs = (objects: Loose[]) => objects.filter((o) => o.kind === "CronJob");
const containerOf = (cronJob: Loose) => cronJob.spec.jobTemplate.spec.template.spec.containers[0];

describe("maintenance CronJobs", () => {
  it("production: the guide's registry-image-sync and registry-gc, one more sync per image schedule", () => {
    const jobs = cronJobs(synth(ENVIRONMENTS.production!));
    assert.deepEqual(
      jobs.map((j) => [j.metadata.name, j.spec.schedule]),
      [
        ["registry-image-sync", "0 0 * * *"],
        ["registry-image-sync-0-2-x-x-x", "0 2 * * *"],
        ["registry-image-sync-0-3-x-x-x", "0 3 * * *"],
        ["registry-gc", "0 3 * * 0"],
        ["registry-backup", "0 1 * * *"],
      ],
    );
    for (const job of jobs) {
      assert.equal(job.spec.concurrencyPolicy, "Forbid");
      assert.equal(job.spec.successfulJobsHistoryLimit, 3);
      assert.equal(job.spec.failedJobsHistoryLimit, 3);
      const pod = job.spec.jobTemplate.spec.template.spec;
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault");
      assert.equal(pod.automountServiceAccountToken, false);
      const container = containerOf(job);
      assert.equal(container.image, `local-registry.neam.internal:5000/neam-registry:${DEFAULT_IMAGE.tag}`);
      assert.equal(container.securityContext.readOnlyRootFilesystem, true);
      assert.deepEqual(container.securityContext.capabilities.drop, ["ALL"]);
      // Credentials from the Secret, never in the arguments.
      assert.deepEqual(
        container.env.map((e: Loose) => [e.name, e.valueFrom.secretKeyRef.name]),
        [
          ["NEAM_REGISTRY_USERNAME", "registry-maintenance"],
          ["NEAM_REGISTRY_PASSWORD", "registry-maintenance"],
        ],
      );
      assert.ok(container.args.includes("https://local-registry.registry.svc:5000"));
    }
    // The certificate names the Service the jobs connect to.
    const certificate = synth(ENVIRONMENTS.production!).find((o) => o.kind === "Certificate");
    assert.ok(certificate.spec.dnsNames.includes("local-registry.registry.svc"));
  });

  it("production backs up nightly onto a volume of its own, as the guide's Backup and Recovery asks", () => {
    const objects = synth(ENVIRONMENTS.production!);
    const job = cronJobs(objects).find((j) => j.metadata.name === "registry-backup");
    assert.ok(job, "production renders registry-backup");
    const args = containerOf(job).args as string[];
    assert.deepEqual(args.slice(0, 5), ["backup", "--output-dir", "/backups", "--keep", "7"]);
    const pod = job.spec.jobTemplate.spec.template.spec;
    const claimName = pod.volumes.find((v: Loose) => v.name === "backups").persistentVolumeClaim.claimName;
    const claim = objects.find((o) => o.kind === "PersistentVolumeClaim" && o.metadata.name === claimName);
    assert.ok(claim, `the claim ${claimName} is rendered`);
    // Not the data volume: a backup on the volume it backs up is lost with it.
    const data = objects.find((o) => o.kind === "Deployment").spec.template.spec.volumes;
    assert.ok(!JSON.stringify(data).includes(claimName));
    // keep + 1 full archives (the newest is written before the oldest goes) of the data volume.
    const gi = (q: string) => Number(/^(\d+)Gi$/.exec(q)![1]);
    const dataClaim = objects.find(
      (o) => o.kind === "PersistentVolumeClaim" && o.metadata.name !== claimName,
    );
    assert.ok(gi(claim.spec.resources.requests.storage) >= 8 * gi(dataClaim.spec.resources.requests.storage));
    assert.deepEqual(
      containerOf(job).volumeMounts.find((m: Loose) => m.name === "backups").mountPath,
      "/backups",
    );
    assert.equal(pod.securityContext.fsGroup, 65532, "the volume is writable by the image's user");
    // scaleout keeps its blobs in S3, which the server's backup does not archive: no CronJob that
    // could only fail, and the constructs refuse one.
    assert.ok(!cronJobs(synth(ENVIRONMENTS.scaleout!)).some((j) => j.metadata.name === "registry-backup"));
    assert.throws(
      () => synth({ ...ENVIRONMENTS.scaleout!, backup: { enabled: true } }),
      /backup needs filesystem storage; with storage\.s3 .*drop backup/,
    );
  });

  it("backup: a registry-backup CronJob writing to a volume of its own, keeping the newest N", () => {
    const objects = synth({ ...ENVIRONMENTS.production!, backup: { enabled: true, keep: 5, size: "300Gi" } });
    const job = cronJobs(objects).find((j) => j.metadata.name === "registry-backup");
    assert.equal(job.spec.schedule, "0 1 * * *");
    const args = containerOf(job).args as string[];
    assert.deepEqual(args.slice(0, 5), ["backup", "--output-dir", "/backups", "--keep", "5"]);
    const pod = job.spec.jobTemplate.spec.template.spec;
    assert.equal(pod.securityContext.fsGroup, 65532, "the volume is writable by the image's user");
    const claim = objects.find(
      (o) => o.kind === "PersistentVolumeClaim" && o.metadata.name === "registry-backups",
    );
    assert.equal(claim.spec.resources.requests.storage, "300Gi");
    assert.equal(
      pod.volumes.find((v: Loose) => v.name === "backups").persistentVolumeClaim.claimName,
      "registry-backups",
    );
    const existing = synth({ backup: { enabled: true, existingClaim: "nfs-backups" } });
    assert.ok(!existing.some((o) => o.metadata.name === "registry-backups"));
  });

  it("only the maintenance pods get in besides clients and Prometheus, and they reach only the registry", () => {
    const policies = synth(ENVIRONMENTS.production!).filter((o) => o.kind === "NetworkPolicy");
    const registry = policies.find((p) => p.metadata.name === "local-registry");
    const maintenance = policies.find((p) => p.metadata.name === "local-registry-maintenance");
    const jobLabels = cronJobs(synth(ENVIRONMENTS.production!))[0].spec.jobTemplate.spec.template.metadata
      .labels;
    assert.ok(
      registry.spec.ingress[0].from.some(
        (peer: Loose) => JSON.stringify(peer.podSelector?.matchLabels) === JSON.stringify(jobLabels),
      ),
    );
    assert.deepEqual(maintenance.spec.podSelector.matchLabels, jobLabels);
    assert.deepEqual(maintenance.spec.ingress, []);
    assert.deepEqual(maintenance.spec.egress[1].ports, [{ port: 5000, protocol: "TCP" }]);
    // Job pods must never be behind the registry Service.
    const service = synth(ENVIRONMENTS.production!).find((o) => o.kind === "Service");
    assert.ok(Object.entries(service.spec.selector).some(([k, v]) => jobLabels[k] !== v));
  });

  it("bad maintenance props fail at synth time naming the prop", () => {
    const cases: [LocalRegistryProps, RegExp][] = [
      [{ gc: { schedule: "weekly" } }, /gc\.schedule "weekly" is not a five-field cron expression/],
      [{ gc: { gracePeriod: "an hour" } }, /gc\.gracePeriod "an hour" is not a duration/],
      [
        { auth: { enabled: true, existingSecret: "users" } },
        /auth\.enabled with sync, gc or backup needs maintenanceCredentials/,
      ],
      [
        {
          sync: { images: [{ source: "docker.io/library/nginx:1", target: "r:5000/nginx:1" }], policies: {} },
          retention: { keepLastVersions: 2 },
        },
        /set retention or sync\.policies, not both/,
      ],
      [{ podDisruptionBudget: { minAvailable: 1 } }, /podDisruptionBudget would block every node drain/],
      [
        { podDisruptionBudget: {} },
        /podDisruptionBudget needs exactly one of minAvailable and maxUnavailable/,
      ],
      [
        {
          sync: { images: [{ source: "docker.io/library/nginx:1", target: "r:5000/nginx:1" }] },
        },
        /sync image docker\.io\/library\/nginx:1: no upstreams entry for docker\.io/,
      ],
      [
        {
          sync: { images: [{ source: "gcr.io/x/y:1", target: "r:5000/y:1" }] },
          upstreams: [{ registry: "gcr.io", url: "https://mirror.site" }],
        },
        /sync image gcr\.io\/x\/y:1: upstreams entry gcr\.io has no egress\.cidrs/,
      ],
      [
        { proxy: { remoteUrl: "https://registry-1.docker.io" } },
        /proxy\.remoteUrl https:\/\/registry-1\.docker\.io: no upstreams entry for registry-1\.docker\.io/,
      ],
      [
        { backup: { enabled: true, schedule: "nightly" } },
        /backup\.schedule "nightly" is not a five-field cron/,
      ],
      [{ backup: { enabled: true, keep: 0 } }, /backup\.keep must be a positive integer/],
      [{ backup: { enabled: true, size: "lots" } }, /backup\.size "lots" is not a Kubernetes quantity/],
    ];
    for (const [props, message] of cases) assert.throws(() => synth(props), message);
  });
});

describe("the CronJobs' commands against a running registry", () => {
  let upstream: Awaited<ReturnType<typeof startReference>>;
  const image = imageManifest({ layers: 2 });
  before(async () => {
    upstream = await startReference(join(tempDir(), "upstream"));
    const client = new Client(upstream.url);
    assert.equal((await client.pushManifest("library/nginx", "1.25-alpine", image)).status, 201);
  });
  after(() => upstream?.stop());

  it("sync and gc, with the synthesized sync manifest and upstream config, succeed", async () => {
    const objects = synth({
      ...ENVIRONMENTS.dev!,
      sync: {
        images: [
          { source: "docker.io/library/nginx:1.25-alpine", target: "local-registry:5000/nginx:1.25-alpine" },
        ],
      },
      retention: { keepLastVersions: 3, cleanupUnused: true },
      upstreams: [{ registry: "docker.io", url: upstream.url, egress: { cidrs: ["127.0.0.1/32"] } }],
      backup: { enabled: true, keep: 2 },
    });
    const backups = tempDir();
    const config = parse(objects.find((o) => o.metadata.name === "registry-config").data["config.yml"]);
    const manifestPath = join(tempDir(), "sync-manifest.yaml");
    writeFileSync(
      manifestPath,
      objects.find((o) => o.metadata.name === "registry-sync-manifest").data["sync-manifest.yaml"],
    );
    assert.deepEqual(
      parse(objects.find((o) => o.metadata.name === "registry-sync-manifest").data["sync-manifest.yaml"]).sync
        .policies,
      {
        keep_last_versions: 3,
        cleanup_unused: true,
      },
    );
    const registry = await startRegistry({ config: { sync: config.sync } });
    try {
      for (const job of cronJobs(objects)) {
        // The pod's paths and Service URL, pointed at this test's files and registry.
        const args = (containerOf(job).args as string[]).map((a, i, all) =>
          all[i - 1] === "--url"
            ? registry.url
            : a === "/etc/registry-sync/sync-manifest.yaml"
              ? manifestPath
              : a === "/backups"
                ? backups
                : a,
        );
        const expected: Record<string, RegExp> = {
          "registry-gc": /^gc: /,
          "registry-backup": /^backup: \d+ bytes written to /,
        };
        const runs = job.metadata.name === "registry-backup" ? 3 : 1;
        for (let i = 0; i < runs; i++) {
          const { stdout } = await run(process.execPath, [MAIN, ...args]);
          assert.match(
            stdout,
            expected[job.metadata.name] ?? /^sync: 1 images, 1 synced/m,
            job.metadata.name,
          );
        }
      }
      // keep: 2 — the third run removed the oldest.
      assert.equal(readdirSync(backups).filter((f) => f.endsWith(".tar.gz")).length, 2);
      const pulled = await new Client(registry.url).request("GET", "/v2/nginx/manifests/1.25-alpine", {
        headers: { Accept: image.mediaType },
      });
      assert.equal(sha256(Buffer.from(await pulled.arrayBuffer())), image.digest);
    } finally {
      await registry.stop();
    }
  });

  it("over TLS with auth, as production runs them: --ca from the mounted Secret, an admin's credentials", async () => {
    const objects = synth({
      ...ENVIRONMENTS.dev!,
      auth: { enabled: true, existingSecret: "registry-htpasswd" },
      maintenanceCredentials: { secretName: "registry-maintenance" },
      tls: { secretName: "registry-tls" },
      sync: {
        images: [
          { source: "docker.io/library/nginx:1.25-alpine", target: "local-registry:5000/nginx:1.25-alpine" },
        ],
      },
      upstreams: [{ registry: "docker.io", url: upstream.url, egress: { cidrs: ["127.0.0.1/32"] } }],
      backup: ENVIRONMENTS.production!.backup!,
    });
    assert.ok(cronJobs(objects).some((j) => j.metadata.name === "registry-backup"));
    const backups = tempDir();
    const certs = makeCertificates("cronjobs");
    const htpasswd = join(tempDir(), "htpasswd");
    execFileSync("htpasswd", ["-cbB", "-C", "5", htpasswd, "maintenance", "m-pw"]);
    const config = parse(objects.find((o) => o.metadata.name === "registry-config").data["config.yml"]);
    const manifestPath = join(tempDir(), "sync-manifest.yaml");
    writeFileSync(
      manifestPath,
      objects.find((o) => o.metadata.name === "registry-sync-manifest").data["sync-manifest.yaml"],
    );
    const registry = await startRegistry({
      config: {
        sync: { upstreams: config.sync.upstreams },
        http: { tls: { certificate: certs.cert, key: certs.key } },
        auth: { htpasswd: { realm: "neam-registry", path: htpasswd } },
      },
    });
    try {
      for (const job of cronJobs(objects)) {
        const container = containerOf(job);
        const args = container.args as string[];
        assert.ok(args.includes("--ca"), `${job.metadata.name} passes --ca`);
        const caPath = args[args.indexOf("--ca") + 1]!;
        // The CA file the pod reads is the one the TLS Secret's volume mounts.
        assert.ok(
          (container.volumeMounts as { mountPath: string }[]).some((m) =>
            caPath.startsWith(`${m.mountPath}/`),
          ),
          `${caPath} is mounted`,
        );
        const env = Object.fromEntries(
          (container.env as { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[])
            .filter((e) => e.valueFrom?.secretKeyRef?.name === "registry-maintenance")
            .map((e) => [e.name, e.valueFrom!.secretKeyRef!.key === "username" ? "maintenance" : "m-pw"]),
        );
        assert.deepEqual(Object.keys(env).sort(), ["NEAM_REGISTRY_PASSWORD", "NEAM_REGISTRY_USERNAME"]);
        const local = args.map((a, i, all) =>
          all[i - 1] === "--url"
            ? registry.url
            : a === caPath
              ? certs.caCert
              : a === "/etc/registry-sync/sync-manifest.yaml"
                ? manifestPath
                : a === "/backups"
                  ? backups
                  : a,
        );
        const { stdout } = await run(process.execPath, [MAIN, ...local], { env: { ...process.env, ...env } });
        const expected: Record<string, RegExp> = {
          "registry-gc": /^gc: /,
          "registry-backup": /^backup: \d+ bytes written to /,
        };
        assert.match(stdout, expected[job.metadata.name] ?? /^sync: 1 images, 1 synced/m, job.metadata.name);
      }
      // Without the CA the same command is refused by the certificate check, not by anything else.
      const gc = containerOf(cronJobs(objects).find((j) => j.metadata.name === "registry-gc")!)
        .args as string[];
      const withoutCa = gc.filter((a, i, all) => a !== "--ca" && all[i - 1] !== "--ca");
      await assert.rejects(
        run(
          process.execPath,
          [MAIN, ...withoutCa.map((a, i, all) => (all[i - 1] === "--url" ? registry.url : a))],
          {
            env: { ...process.env, NEAM_REGISTRY_USERNAME: "maintenance", NEAM_REGISTRY_PASSWORD: "m-pw" },
          },
        ),
        /certificate|self.signed|unable to verify/i,
      );
    } finally {
      await registry.stop();
    }
  });
});
