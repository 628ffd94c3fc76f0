import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Chart, Testing } from "cdk8s";
import { parse as parseYaml, stringify } from "yaml";
import { LocalRegistry, type LocalRegistryProps } from "../../constructs/index.js";
import { loadConfig } from "../../server/src/config/load.js";
import { parseSyncManifest } from "../../server/src/index.js";
import { ENVIRONMENTS } from "../../stacks/environments.js";
import { tempDir } from "../helpers/registry.js";
import { testApp } from "../helpers/cdk8s.js";

/** Synthesized objects are plain JSON; the assertions below read into them freely. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

type Manifest = {
  kind: string;
  metadata: { name: string; annotations?: Record<string, string> };
  [key: string]: unknown;
};

/** The nodes' range every test registry admits, unless the test gives a NetworkPolicy of its own. */
const NODES = { nodeCidrs: ["10.0.0.0/24"] };

function synth(props: LocalRegistryProps): Manifest[] {
  const chart = new Chart(testApp(), "test", { disableResourceNameHashes: true });
  new LocalRegistry(chart, "registry", { networkPolicy: NODES, ...props });
  return Testing.synth(chart) as Manifest[];
}

const byKind = (objects: Manifest[], kind: string) => objects.filter((o) => o.kind === kind);
const deploymentOf = (objects: Manifest[]) => byKind(objects, "Deployment")[0] as Loose;

const SNAPSHOTS = new URL("../../../test/constructs/snapshots/", import.meta.url).pathname;

describe("LocalRegistry", () => {
  for (const [environment, props] of Object.entries(ENVIRONMENTS)) {
    it(`${environment}: matches its snapshot (UPDATE_SNAPSHOTS=1 to accept a change)`, () => {
      const yaml = synth(props)
        .map((o) => stringify(o))
        .join("---\n");
      const file = join(SNAPSHOTS, `${environment}.yaml`);
      // Only an explicit flag writes a snapshot: a missing one is a failure, not a new baseline.
      if (process.env.UPDATE_SNAPSHOTS === "1") writeFileSync(file, yaml);
      assert.ok(existsSync(file), `${file} is missing; run with UPDATE_SNAPSHOTS=1 and review it`);
      assert.equal(yaml, readFileSync(file, "utf8"));
    });

    it(`${environment}: what the snapshot must hold, whatever it says`, () => {
      const objects = synth(props) as Loose[];
      const namespace = props.namespace!;
      // Every object lives in the environment's namespace; the Namespace itself exactly once.
      for (const o of objects.filter((o) => o.kind !== "Namespace"))
        assert.equal(o.metadata.namespace, namespace, `${o.kind} ${o.metadata.name}`);
      assert.equal(byKind(objects, "Namespace").length, 1);
      const pod = deploymentOf(objects).spec.template.spec;
      const container = pod.containers[0];
      assert.equal(container.imagePullPolicy, "IfNotPresent");
      assert.match(container.image, /\/?neam-registry:\d+\.\d+\.\d+/);
      assert.equal(pod.securityContext.fsGroupChangePolicy, "OnRootMismatch");
      // Every image the stack runs is the registry's own, at the same reference.
      const images = JSON.stringify(objects).match(/"image":"[^"]+"/g) ?? [];
      assert.ok(images.length >= 2);
      assert.equal(new Set(images).size, 1, images.join(" "));
      // The Service's registry port reaches the container's registry port.
      const service = byKind(objects, "Service")[0] as Loose;
      assert.equal(service.spec.ports[0].targetPort, "registry");
      assert.ok(container.ports.some((p: Loose) => p.name === "registry" && p.containerPort === 5000));
      // Never a rule that admits everyone by an empty peer list.
      for (const policy of byKind(objects, "NetworkPolicy") as Loose[]) {
        for (const rule of [...(policy.spec.ingress ?? []), ...(policy.spec.egress ?? [])]) {
          assert.notDeepEqual(rule.from, [], policy.metadata.name);
          assert.notDeepEqual(rule.to, [], policy.metadata.name);
        }
      }
      // Nothing scrapes twice: prometheus.io annotations only without a ServiceMonitor.
      const annotated = objects.some((o) => JSON.stringify(o).includes("prometheus.io/scrape"));
      assert.equal(annotated && byKind(objects, "ServiceMonitor").length > 0, false);
    });

    it(`${environment}: the rendered config.yml is accepted by the registry's own loader and matches the mounts`, () => {
      const objects = synth(props);
      const configMap = byKind(objects, "ConfigMap")[0] as unknown as { data: Record<string, string> };
      const path = join(tempDir(), "config.yml");
      // The whole file, storage.s3 and redis included, as the pod's loader reads it.
      writeFileSync(path, configMap.data["config.yml"]!);
      const config = loadConfig(path, {});
      const { s3 } = config.storage;
      const { redis } = config;
      const container = deploymentOf(objects).spec.template.spec.containers[0];
      const mountPaths = (container.volumeMounts as { mountPath: string }[]).map((m) => m.mountPath);
      assert.equal(s3 !== undefined, props.storage?.s3 !== undefined);
      assert.equal(redis !== undefined, props.redis !== undefined);
      if (s3 === undefined) assert.ok(mountPaths.includes(config.storage.filesystem.rootdirectory));
      else assert.ok(!mountPaths.includes(config.storage.filesystem.rootdirectory), "no data volume on S3");
      assert.deepEqual(container.args, ["serve", "/etc/docker/registry/config.yml"]);
      if (config.http.tls)
        assert.ok(mountPaths.includes("/certs") && config.http.tls.certificate.startsWith("/certs/"));
      if (config.auth?.htpasswd)
        assert.ok(mountPaths.includes("/auth") && config.auth.htpasswd.path === "/auth/htpasswd");
      const sync = objects.find(
        (o) => o.kind === "ConfigMap" && o.metadata.name === "registry-sync-manifest",
      ) as Loose;
      if (sync)
        assert.ok(
          parseSyncManifest(sync.data["sync-manifest.yaml"]).sync.images.length > 0,
          "the sync manifest parses",
        );
    });
  }

  it("production: the guide's objects — labelled namespace, 100Gi PVC on fast-regional, ClusterIP service on 5000", () => {
    const objects = synth(ENVIRONMENTS.production!);
    const [namespace, pvc, service] = ["Namespace", "PersistentVolumeClaim", "Service"].map(
      (k) => byKind(objects, k)[0] as Loose,
    );
    assert.equal(namespace.metadata.name, "registry");
    assert.equal(namespace.metadata.labels["kubernetes.io/metadata.name"], "registry");
    assert.equal(namespace.metadata.labels.tier, "infrastructure");
    // The names the guide's commands use (kubectl patch pvc registry-pvc, … configmap registry-config).
    assert.equal(pvc.metadata.name, "registry-pvc");
    const rendered = parseYaml(
      (objects.find((o) => o.metadata.name === "registry-config") as Loose).data["config.yml"],
    );
    assert.deepEqual(rendered.audit, { stdout: true }, "production keeps an audit trail on the pod's output");
    assert.ok(objects.some((o) => o.kind === "ConfigMap" && o.metadata.name === "registry-config"));
    assert.ok(objects.some((o) => o.kind === "Certificate" && o.metadata.name === "registry-tls"));
    assert.ok(
      objects.some((o) => o.kind === "PrometheusRule" && o.metadata.name === "local-registry-alerts"),
    );
    assert.equal(pvc.spec.storageClassName, "fast-regional");
    assert.equal(pvc.spec.resources.requests.storage, "100Gi");
    assert.equal(service.spec.type, "ClusterIP");
    assert.deepEqual(
      service.spec.ports.map((p: { name: string; port: number }) => [p.name, p.port]),
      [
        ["registry", 5000],
        ["metrics", 5001],
      ],
    );
    // The ServiceMonitor scrapes; the Service carries no prometheus.io annotation (a second
    // scrape, of the registry port, over plain HTTP against TLS).
    assert.equal(service.metadata.annotations?.["prometheus.io/scrape"], undefined);
    const serviceMonitor = byKind(objects, "ServiceMonitor")[0] as Loose;
    assert.deepEqual(serviceMonitor.spec.endpoints[0], {
      port: "metrics",
      path: "/metrics",
      interval: "15s",
      scrapeTimeout: "15s",
    });
  });

  it("the pod is locked down: non-root, read-only root, no escalation, no capabilities, RuntimeDefault seccomp", () => {
    const spec = deploymentOf(synth(ENVIRONMENTS.production!)).spec;
    assert.equal(spec.strategy.type, "Recreate");
    assert.equal(spec.template.spec.securityContext.runAsNonRoot, true);
    assert.equal(spec.template.spec.securityContext.seccompProfile.type, "RuntimeDefault");
    const container = spec.template.spec.containers[0];
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(container.securityContext.capabilities.drop, ["ALL"]);
    for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
      assert.equal(container[probe].httpGet.path, "/debug/health", probe);
      assert.equal(container[probe].httpGet.port, "metrics", probe);
    }
    assert.deepEqual(container.resources.requests, { cpu: "200m", memory: "512Mi" });
    assert.equal(spec.template.metadata.annotations["prometheus.io/port"], undefined);
    assert.equal(spec.template.spec.securityContext.fsGroupChangePolicy, "OnRootMismatch");
    // Without a ServiceMonitor, annotation discovery scrapes the metrics port (plain HTTP there).
    const plain = deploymentOf(synth({ gc: { enabled: false } })).spec.template.metadata.annotations;
    assert.equal(plain["prometheus.io/port"], "5001");
  });

  it("a change of users or config changes the checksum annotation, so the pods roll", () => {
    const checksum = (props: LocalRegistryProps) =>
      deploymentOf(synth({ ...props, gc: { enabled: false } })).spec.template.metadata.annotations[
        "checksum/config"
      ];
    const a = checksum({ auth: { enabled: true, htpasswd: "admin:$2y$05$abc" } });
    const b = checksum({ auth: { enabled: true, htpasswd: "admin:$2y$05$xyz" } });
    const c = checksum({ auth: { enabled: true, htpasswd: "admin:$2y$05$abc" }, logLevel: "debug" });
    assert.notEqual(a, b);
    assert.notEqual(a, c);
  });

  it("proxy: the guide's pull-through config, with the upstream password from a mounted Secret", () => {
    const objects = synth({
      proxy: {
        remoteUrl: "https://registry-1.docker.io",
        username: "neam",
        passwordSecret: { name: "dockerhub" },
        ttl: "72h",
      },
      upstreams: [{ registry: "registry-1.docker.io", egress: { cidrs: ["10.20.0.0/24"] } }],
    });
    const configMap = byKind(objects, "ConfigMap")[0] as Loose;
    const path = join(tempDir(), "config.yml");
    writeFileSync(path, configMap.data["config.yml"]);
    const config = loadConfig(path, {});
    assert.equal(config.proxy?.remoteurl, "https://registry-1.docker.io");
    assert.equal(config.proxy?.ttl, "72h");
    const pod = deploymentOf(objects).spec.template.spec;
    const mount = pod.containers[0].volumeMounts.find((m: Loose) => m.name === "proxy");
    assert.equal(config.proxy?.passwordfile, `${mount.mountPath}/password`);
    assert.deepEqual(pod.volumes.find((v: Loose) => v.name === "proxy").secret, {
      secretName: "dockerhub",
      items: [{ key: "password", path: "password" }],
    });
  });

  it("auth.access renders the server's access policy, checked by its loader at synth time", () => {
    const objects = synth({
      auth: {
        enabled: true,
        existingSecret: "registry-htpasswd",
        access: {
          admins: ["ops"],
          rules: [{ subjects: ["group:ci"], repositories: ["apps/**"], actions: ["pull", "push"] }],
          groups: { ci: ["jenkins"] },
          default: ["pull"],
        },
      },
      maintenanceCredentials: { secretName: "registry-maintenance" },
    });
    const configMap = objects.find((o) => o.metadata.name === "registry-config") as Loose;
    const path = join(tempDir(), "config.yml");
    writeFileSync(path, configMap.data["config.yml"]);
    const config = loadConfig(path, {});
    assert.deepEqual(config.auth?.access?.admins, ["ops"]);
    assert.deepEqual(config.auth?.access?.groups, { ci: ["jenkins"] });
    assert.equal(config.audit, undefined, "no audit trail unless asked");
    assert.throws(
      () =>
        synth({
          auth: {
            enabled: true,
            existingSecret: "x",
            access: { rules: [{ subjects: ["bob"], repositories: ["**"], actions: ["pull"] }] },
          },
          maintenanceCredentials: { secretName: "m" },
        }),
      /rendered registry config is invalid: .*auth\.access\.rules\.0\.subjects\.0/,
    );
    assert.throws(
      () => synth({ auth: { access: { default: ["pull"] } } }),
      /auth\.access needs auth\.enabled/,
    );
  });

  it("bad props fail at synth time naming the prop", () => {
    const cases: [LocalRegistryProps, RegExp][] = [
      [{ replicaCount: 2 }, /replicaCount 2 needs shared storage/],
      [{ prefix: "Registry_" }, /prefix "Registry_" is not a DNS label/],
      [
        { proxy: { remoteUrl: "registry-1.docker.io" } },
        /rendered registry config is invalid: .*proxy\.remoteurl/,
      ],
      [{ proxy: { remoteUrl: "https://r.example", ttl: "a week" } }, /proxy\.ttl/],
      [
        {
          proxy: { remoteUrl: "https://r.example" },
          sync: { images: [{ source: "docker.io/library/nginx:1", target: "r:5000/nginx:1" }] },
        },
        /a pull-through cache \(proxy\) refuses pushes, so it cannot be a sync target/,
      ],
      [{ replicaCount: 0 }, /replicaCount must be a positive integer/],
      [{ persistence: { size: "100GB" } }, /persistence\.size "100GB" is not a Kubernetes quantity/],
      [{ resources: { limits: { memory: "2 gigs" } } }, /resources\.limits\.memory/],
      [
        { auth: { enabled: true } },
        /auth\.enabled needs exactly one of auth\.htpasswd and auth\.existingSecret/,
      ],
      [
        { tls: { secretName: "s", certificate: { issuer: { name: "ca" }, dnsNames: [] } } },
        /tls\.dnsNames needs at least one name/,
      ],
      [
        {
          sync: {
            images: [
              {
                source: "docker.io/library/nginx:1",
                target: "local-registry:5000/nginx:1",
                schedule: "nightly",
              },
            ],
          },
        },
        /sync: sync manifest: sync\.images\.0\.schedule/,
      ],
      [
        { networkPolicy: { nodeCidrs: ["10.0.0.0"] } },
        /networkPolicy\.nodeCidrs "10\.0\.0\.0" is not a CIDR/,
      ],
      [
        { monitoring: { enabled: true, serviceMonitor: { interval: "often" } } },
        /monitoring\.serviceMonitor\.interval "often" is not a duration/,
      ],
    ];
    for (const [props, message] of cases) assert.throws(() => synth(props), message);
  });
});
