/**
 * Several replicas on shared storage: S3 for the blobs, Redis for the shared state. What the
 * Deployment, the PodDisruptionBudget and the HorizontalPodAutoscaler mean (evaluated as the
 * disruption controller and the scheduler read them, not only how they are spelled), the config
 * and the Secrets the pods get, and the props refused at synth.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Chart, Testing } from "cdk8s";
import { parse as parseYaml, stringify } from "yaml";
import { LocalRegistry, type LocalRegistryProps, type S3StorageProps } from "../../constructs/index.js";
import { loadConfig } from "../../server/src/config/load.js";
import { ENVIRONMENTS } from "../../stacks/environments.js";
import { selectorMatches, testApp, type LabelSelector } from "../helpers/cdk8s.js";
import { tempDir } from "../helpers/registry.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

function synth(props: LocalRegistryProps): Loose[] {
  const chart = new Chart(testApp(), "scale", { disableResourceNameHashes: true });
  new LocalRegistry(chart, "registry", props);
  return Testing.synth(chart);
}
const find = (objects: Loose[], kind: string) => objects.filter((o) => o.kind === kind);
const one = (objects: Loose[], kind: string) => {
  const found = find(objects, kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0];
};

const S3: S3StorageProps = {
  bucket: "h-cons13-registry",
  region: "us-east-1",
  regionEndpoint: "https://s3.site.internal:7480",
  forcePathStyle: true,
  credentialsSecret: { name: "registry-s3" },
  egress: { cidrs: ["10.30.0.0/28"] },
};
const REDIS = {
  addr: "redis.site.internal:6380",
  passwordSecret: { name: "registry-redis" },
  egress: { cidrs: ["10.30.1.5/32"] },
};
/** Three replicas on S3 and Redis, outside the cluster, the NetworkPolicy on. */
const BASE: LocalRegistryProps = {
  gc: { enabled: false },
  networkPolicy: { nodeCidrs: ["10.0.0.0/24"] },
  replicaCount: 3,
  storage: { s3: S3 },
  redis: REDIS,
};

/**
 * The disruption controller's arithmetic (pkg/controller/disruption): how many of the selected
 * pods an eviction may take now, with `expected` pods owned and `healthy` of them ready.
 */
function disruptionsAllowed(pdb: Loose, expected: number, healthy: number): number {
  const { minAvailable, maxUnavailable } = pdb.spec;
  const desiredHealthy = minAvailable !== undefined ? minAvailable : Math.max(0, expected - maxUnavailable);
  return Math.max(0, healthy - desiredHealthy);
}

/**
 * Where the scheduler may put one more registry pod: a node is feasible unless a required
 * anti-affinity term matches a pod already on it (topologyKey kubernetes.io/hostname).
 */
function feasibleNodes(podSpec: Loose, podLabels: Record<string, string>, placed: Record<string, number>) {
  const required = (podSpec.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ??
    []) as { labelSelector: LabelSelector; topologyKey: string }[];
  for (const term of required) assert.equal(term.topologyKey, "kubernetes.io/hostname");
  return Object.entries(placed)
    .filter(([, pods]) => pods === 0 || !required.some((t) => selectorMatches(t.labelSelector, podLabels)))
    .map(([node]) => node);
}

describe("scale-out: replicas, rollout, spread, budget", () => {
  it("three replicas roll one new pod in before an old one goes, and spread by hostname", () => {
    const objects = synth(BASE);
    const deployment = one(objects, "Deployment");
    assert.equal(deployment.spec.replicas, 3);
    assert.deepEqual(deployment.spec.strategy, {
      type: "RollingUpdate",
      rollingUpdate: { maxUnavailable: 0, maxSurge: 1 },
    });
    const pod = deployment.spec.template;
    const preferred = pod.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution;
    assert.equal(preferred.length, 1);
    assert.equal(preferred[0].podAffinityTerm.topologyKey, "kubernetes.io/hostname");
    // The term selects the registry's own pods, and only them.
    assert.ok(selectorMatches(preferred[0].podAffinityTerm.labelSelector, pod.metadata.labels));
    assert.ok(
      !selectorMatches(preferred[0].podAffinityTerm.labelSelector, { app: "local-registry-maintenance" }),
    );
    // Preferred: a fourth pod (the surge) still finds a node when every node has one.
    assert.deepEqual(feasibleNodes(pod.spec, pod.metadata.labels, { a: 1, b: 1, c: 1 }), ["a", "b", "c"]);
  });

  it("required anti-affinity: one pod per node, so the rollout replaces in place (maxSurge 0)", () => {
    const objects = synth({ ...BASE, podAntiAffinity: "required" });
    const deployment = one(objects, "Deployment");
    const pod = deployment.spec.template;
    assert.equal(
      pod.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution,
      undefined,
    );
    // Three replicas on three nodes: a surge pod would find no node and stall the rollout.
    assert.deepEqual(feasibleNodes(pod.spec, pod.metadata.labels, { a: 1, b: 1, c: 1 }), []);
    assert.deepEqual(feasibleNodes(pod.spec, pod.metadata.labels, { a: 1, b: 0, c: 1 }), ["b"]);
    assert.deepEqual(deployment.spec.strategy.rollingUpdate, { maxUnavailable: 1, maxSurge: 0 });
    // With the budget's one disruption, a drain still proceeds one node at a time.
    assert.equal(disruptionsAllowed(one(objects, "PodDisruptionBudget"), 3, 3), 1);
  });

  it("the stack's own podAntiAffinity replaces ours; its nodeAffinity is kept beside ours", () => {
    const nodeAffinity = {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [{ key: "tier", operator: "In", values: ["infra"] }] }],
      },
    };
    const kept = one(synth({ ...BASE, pod: { affinity: { nodeAffinity } } }), "Deployment").spec.template
      .spec;
    assert.deepEqual(kept.affinity.nodeAffinity, nodeAffinity);
    assert.ok(kept.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution);
    const own = {
      requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: "topology.kubernetes.io/zone" }],
    };
    const replaced = one(synth({ ...BASE, pod: { affinity: { podAntiAffinity: own } } }), "Deployment").spec
      .template.spec;
    assert.deepEqual(replaced.affinity.podAntiAffinity, own);
  });

  it("the default budget lets a drain evict one replica at a time, at any replica count", () => {
    for (const replicas of [2, 3, 5]) {
      const objects = synth({ ...BASE, replicaCount: replicas });
      const pdb = one(objects, "PodDisruptionBudget");
      const podLabels = one(objects, "Deployment").spec.template.metadata.labels;
      assert.ok(selectorMatches(pdb.spec.selector, podLabels), "the budget counts the registry pods");
      for (const job of find(objects, "CronJob"))
        assert.ok(!selectorMatches(pdb.spec.selector, job.spec.jobTemplate.spec.template.metadata.labels));
      assert.equal(disruptionsAllowed(pdb, replicas, replicas), 1, `${replicas} healthy: one may go`);
      assert.equal(disruptionsAllowed(pdb, replicas, replicas - 1), 0, "one already down: the drain waits");
    }
    // One replica: no budget (it could only block drains), and Recreate without Redis.
    const single = synth({ ...BASE, replicaCount: 1, redis: undefined });
    assert.equal(find(single, "PodDisruptionBudget").length, 0);
    assert.deepEqual(one(single, "Deployment").spec.strategy, { type: "Recreate" });
    assert.equal(one(single, "Deployment").spec.template.spec.affinity, undefined);
  });

  it("a budget given by the stack is checked against the replica count", () => {
    const pdb = one(synth({ ...BASE, podDisruptionBudget: { minAvailable: 2 } }), "PodDisruptionBudget");
    assert.equal(disruptionsAllowed(pdb, 3, 3), 1);
    assert.throws(
      () => synth({ ...BASE, podDisruptionBudget: { minAvailable: 3 } }),
      /^Error: LocalRegistry: podDisruptionBudget would block every node drain with 3 replica\(s\)/,
    );
  });

  it("one replica on S3 with Redis rolls without an outage; the single RWO replica still recreates", () => {
    const rolling = one(synth({ ...BASE, replicaCount: 1 }), "Deployment").spec.strategy;
    assert.deepEqual(rolling.rollingUpdate, { maxUnavailable: 0, maxSurge: 1 });
    const rwo = one(
      synth({ gc: { enabled: false }, networkPolicy: { nodeCidrs: ["10.0.0.0/24"] } }),
      "Deployment",
    );
    assert.deepEqual(rwo.spec.strategy, { type: "Recreate" });
    assert.equal(rwo.spec.template.spec.affinity, undefined);
  });
});

describe("scale-out: the HorizontalPodAutoscaler", () => {
  const autoscaled: LocalRegistryProps = {
    ...BASE,
    replicaCount: undefined,
    autoscaling: { minReplicas: 2, maxReplicas: 8 },
  };

  it("scales the Deployment on CPU between min and max; the Deployment names no count", () => {
    const objects = synth(autoscaled);
    const hpa = one(objects, "HorizontalPodAutoscaler");
    const deployment = one(objects, "Deployment");
    assert.equal(hpa.apiVersion, "autoscaling/v2");
    assert.deepEqual(hpa.spec.scaleTargetRef, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      name: deployment.metadata.name,
    });
    assert.equal(hpa.metadata.namespace, deployment.metadata.namespace);
    assert.equal(hpa.spec.minReplicas, 2);
    assert.equal(hpa.spec.maxReplicas, 8);
    assert.deepEqual(hpa.spec.metrics, [
      {
        type: "Resource",
        resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } },
      },
    ]);
    // Utilization is a share of the request: without one the autoscaler has nothing to compute.
    assert.ok(deployment.spec.template.spec.containers[0].resources.requests.cpu);
    // A redeploy must not reset what the autoscaler chose.
    assert.equal(deployment.spec.replicas, undefined);
    // The budget holds at the autoscaler's minimum and at its maximum.
    const pdb = one(objects, "PodDisruptionBudget");
    assert.equal(disruptionsAllowed(pdb, 2, 2), 1);
    assert.equal(disruptionsAllowed(pdb, 8, 8), 1);
    assert.ok(deployment.spec.template.spec.affinity.podAntiAffinity);
  });

  it("the scaleout environment: 3 to 6 replicas on Ceph and Redis, no volume", () => {
    const objects = synth(ENVIRONMENTS.scaleout!);
    const hpa = one(objects, "HorizontalPodAutoscaler");
    assert.equal(hpa.spec.minReplicas, 3);
    assert.equal(hpa.spec.maxReplicas, 6);
    assert.equal(find(objects, "PersistentVolumeClaim").length, 0);
    const pod = one(objects, "Deployment").spec.template.spec;
    assert.ok(!pod.volumes.some((v: Loose) => v.persistentVolumeClaim !== undefined));
    assert.ok(!pod.containers[0].volumeMounts.some((m: Loose) => m.mountPath === "/var/lib/registry"));
  });

  it("refuses what would not autoscale", () => {
    const cases: [LocalRegistryProps, RegExp][] = [
      [
        { ...autoscaled, autoscaling: { minReplicas: 1, maxReplicas: 4 } },
        /autoscaling\.minReplicas must be an integer of at least 2/,
      ],
      [
        { ...autoscaled, autoscaling: { minReplicas: 3, maxReplicas: 2 } },
        /autoscaling\.maxReplicas must be an integer of at least minReplicas \(3\)/,
      ],
      [
        { ...autoscaled, autoscaling: { maxReplicas: 4, targetCpuUtilization: 150 } },
        /autoscaling\.targetCpuUtilization must be a percentage/,
      ],
      [{ ...autoscaled, replicaCount: 3 }, /replicaCount and autoscaling: the autoscaler sets the count/],
      [{ ...autoscaled, storage: undefined }, /autoscaling needs shared storage \(storage\.s3\)/],
      [{ ...autoscaled, redis: undefined }, /autoscaling needs redis/],
    ];
    for (const [props, message] of cases) assert.throws(() => synth(props), message);
    // Disabled: a fixed count again (one replica without shared storage is fine).
    const off = synth({
      gc: { enabled: false },
      networkPolicy: { nodeCidrs: ["10.0.0.0/24"] },
      autoscaling: { enabled: false, maxReplicas: 4 },
    });
    assert.equal(find(off, "HorizontalPodAutoscaler").length, 0);
  });
});

describe("scale-out: the pods' view of S3 and Redis", () => {
  it("credentials come from the Secrets as REGISTRY_* variables, never from the ConfigMap", () => {
    const objects = synth({
      ...BASE,
      storage: { s3: { ...S3, credentialsSecret: { name: "obc", accessKeyKey: "ak", secretKeyKey: "sk" } } },
    });
    const container = one(objects, "Deployment").spec.template.spec.containers[0];
    const env = Object.fromEntries(container.env.map((e: Loose) => [e.name, e.valueFrom?.secretKeyRef]));
    assert.deepEqual(env.REGISTRY_STORAGE_S3_ACCESSKEY, { name: "obc", key: "ak" });
    assert.deepEqual(env.REGISTRY_STORAGE_S3_SECRETKEY, { name: "obc", key: "sk" });
    assert.deepEqual(env.REGISTRY_REDIS_PASSWORD, { name: "registry-redis", key: "password" });
    const configText = one(objects, "ConfigMap").data["config.yml"] as string;
    for (const key of ["accesskey", "secretkey", "password"]) assert.ok(!configText.includes(key), key);
    // The Rook ObjectBucketClaim's keys by default.
    const rook = one(synth(BASE), "Deployment").spec.template.spec.containers[0].env;
    assert.deepEqual(
      rook.slice(0, 2).map((e: Loose) => e.valueFrom.secretKeyRef.key),
      ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    );
  });

  it("config.yml: the reference's storage.s3 and redis keys, and no filesystem storage or volume", () => {
    const objects = synth({
      ...BASE,
      storage: {
        s3: {
          ...S3,
          rootDirectory: "/site",
          chunkSize: 16 * 2 ** 20,
          multipartCopyThresholdSize: 2 ** 26,
          skipVerify: false,
        },
      },
      redis: {
        ...REDIS,
        db: 2,
        dialTimeout: "2s",
        readTimeout: "1s",
        writeTimeout: "1s",
        pool: { size: 20, maxIdle: 4, maxIdleTime: "300s" },
        tls: { caSecret: { name: "redis-ca" } },
      },
    });
    const rendered = parseYaml(one(objects, "ConfigMap").data["config.yml"]);
    assert.deepEqual(rendered.storage.s3, {
      bucket: "h-cons13-registry",
      region: "us-east-1",
      regionendpoint: "https://s3.site.internal:7480",
      forcepathstyle: true,
      skipverify: false,
      rootdirectory: "/site",
      chunksize: 16 * 2 ** 20,
      multipartcopythresholdsize: 2 ** 26,
    });
    assert.equal(rendered.storage.filesystem, undefined, "exactly one storage driver");
    assert.deepEqual(rendered.storage.cache, { blobdescriptor: "redis" });
    const pod = one(objects, "Deployment").spec.template.spec;
    const caMount = pod.containers[0].volumeMounts.find((m: Loose) => m.name === "redis-tls-casecret");
    assert.deepEqual(rendered.redis, {
      addrs: ["redis.site.internal:6380"],
      db: 2,
      dialtimeout: "2s",
      readtimeout: "1s",
      writetimeout: "1s",
      poolsize: 20,
      maxidleconns: 4,
      connmaxidletime: "300s",
      tls: { enabled: true, rootcas: [`${caMount.mountPath}/ca.crt`] },
    });
    assert.deepEqual(pod.volumes.find((v: Loose) => v.name === caMount.name).secret, {
      secretName: "redis-ca",
      items: [{ key: "ca.crt", path: "ca.crt" }],
    });
    assert.equal(find(objects, "PersistentVolumeClaim").length, 0);
    assert.ok(!pod.volumes.some((v: Loose) => v.name === "data"));
    // The rest of the file is the server's to judge: its own loader accepts it.
    const { s3: _s3, ...storage } = rendered.storage;
    const { redis: _redis, ...rest } = rendered;
    const path = join(tempDir(), "config.yml");
    writeFileSync(path, stringify({ ...rest, storage }));
    assert.equal(loadConfig(path, {}).storage.delete.enabled, true);
  });

  it("the S3 endpoint's CA is added to the trusted ones; an S3 outage does not restart the replicas", () => {
    const objects = synth({
      ...BASE,
      storage: { s3: { ...S3, caSecret: { name: "site-ca", key: "root.pem" } } },
    });
    const pod = one(objects, "Deployment").spec.template.spec;
    const container = pod.containers[0];
    const extra = container.env.find((e: Loose) => e.name === "NODE_EXTRA_CA_CERTS").value;
    const mount = container.volumeMounts.find((m: Loose) => extra.startsWith(`${m.mountPath}/`));
    assert.deepEqual(pod.volumes.find((v: Loose) => v.name === mount.name).secret, {
      secretName: "site-ca",
      items: [{ key: "root.pem", path: "ca.crt" }],
    });
    // Startup waits for storage and Redis; readiness then follows storage (pulls go on without
    // Redis); liveness asks the process only.
    assert.equal(container.startupProbe.httpGet.path, "/debug/health?redis=required");
    assert.equal(container.readinessProbe.httpGet.path, "/debug/health");
    assert.deepEqual(container.livenessProbe.tcpSocket, { port: "metrics" });
    assert.equal(container.livenessProbe.httpGet, undefined);
    // A rolling pod keeps serving while the endpoints drop it, within the grace period.
    assert.deepEqual(container.lifecycle.preStop.exec.command.slice(0, 2), ["node", "-e"]);
  });
});

describe("scale-out: refused at synth, one line naming the prop", () => {
  const cases: [string, LocalRegistryProps, RegExp][] = [
    [
      "replicas without shared storage",
      { ...BASE, storage: undefined },
      /^LocalRegistry: replicaCount 3 needs shared storage \(storage\.s3\)/,
    ],
    ["replicas without redis", { ...BASE, redis: undefined }, /^LocalRegistry: replicaCount 3 needs redis/],
    [
      "persistence with s3",
      { ...BASE, persistence: { size: "10Gi" } },
      /^LocalRegistry: persistence is the filesystem storage's volume/,
    ],
    [
      "bucket",
      { ...BASE, storage: { s3: { ...S3, bucket: "Registry_Blobs" } } },
      /^LocalRegistry: storage\.s3\.bucket "Registry_Blobs"/,
    ],
    ["region", { ...BASE, storage: { s3: { ...S3, region: "" } } }, /^LocalRegistry: storage\.s3\.region ""/],
    [
      "endpoint",
      { ...BASE, storage: { s3: { ...S3, regionEndpoint: "s3.site.internal:7480" } } },
      /^LocalRegistry: storage\.s3\.regionEndpoint "s3\.site\.internal:7480" is not an http\(s\)/,
    ],
    [
      "endpoint path",
      { ...BASE, storage: { s3: { ...S3, regionEndpoint: "http://gw/bucket" } } },
      /^LocalRegistry: storage\.s3\.regionEndpoint/,
    ],
    [
      "secure vs http",
      { ...BASE, storage: { s3: { ...S3, regionEndpoint: "http://gw:7480", secure: true } } },
      /^LocalRegistry: storage\.s3\.secure is true but/,
    ],
    [
      "chunk size",
      { ...BASE, storage: { s3: { ...S3, chunkSize: 1024 } } },
      /^LocalRegistry: storage\.s3\.chunkSize 1024 must be an integer from 5242880/,
    ],
    [
      "copy threshold",
      { ...BASE, storage: { s3: { ...S3, multipartCopyThresholdSize: 6 * 1024 ** 3 } } },
      /^LocalRegistry: storage\.s3\.multipartCopyThresholdSize/,
    ],
    [
      "credentials Secret",
      { ...BASE, storage: { s3: { ...S3, credentialsSecret: { name: "S3 keys" } } } },
      /^LocalRegistry: storage\.s3\.credentialsSecret\.name "S3 keys"/,
    ],
    [
      "redis addr",
      { ...BASE, redis: { ...REDIS, addr: "redis.site.internal" } },
      /^LocalRegistry: redis\.addr "redis\.site\.internal" is not host:port/,
    ],
    [
      "redis port",
      { ...BASE, redis: { ...REDIS, addr: "redis:70000" } },
      /^LocalRegistry: redis\.addr 70000 is not a port/,
    ],
    ["redis db", { ...BASE, redis: { ...REDIS, db: -1 } }, /^LocalRegistry: redis\.db -1/],
    [
      "redis timeout",
      { ...BASE, redis: { ...REDIS, readTimeout: "1 second" } },
      /^LocalRegistry: redis\.readTimeout "1 second" is not a duration/,
    ],
    [
      "env the construct sets",
      { ...BASE, pod: { env: [{ name: "REGISTRY_REDIS_PASSWORD", value: "x" }] } },
      /^LocalRegistry: pod\.env REGISTRY_REDIS_PASSWORD is the construct's own/,
    ],
    [
      "s3 without egress",
      { ...BASE, storage: { s3: { ...S3, egress: undefined } } },
      /^LocalRegistry: storage\.s3\.egress is required while the NetworkPolicy is on: the cidrs or pods of s3\.site\.internal:7480/,
    ],
    [
      "redis without egress",
      { ...BASE, redis: { ...REDIS, egress: undefined } },
      /^LocalRegistry: redis\.egress is required while the NetworkPolicy is on: the cidrs or pods of redis\.site\.internal:6380/,
    ],
    [
      "egress to nowhere",
      { ...BASE, redis: { ...REDIS, egress: { cidrs: [] } } },
      /^LocalRegistry: redis\.egress needs cidrs or pods/,
    ],
    [
      "egress to every pod",
      { ...BASE, redis: { ...REDIS, egress: { pods: { namespace: "data", labels: {} } } } },
      /^LocalRegistry: redis\.egress\.pods\.labels needs at least one label/,
    ],
    [
      "egress CIDR",
      { ...BASE, storage: { s3: { ...S3, egress: { cidrs: ["10.30.0.0"] } } } },
      /^LocalRegistry: storage\.s3\.egress\.cidrs "10\.30\.0\.0" is not a CIDR/,
    ],
  ];
  for (const [what, props, message] of cases)
    it(what, () => {
      assert.throws(
        () => synth(props),
        (error: Error) => {
          assert.match(error.message, message);
          assert.ok(!error.message.includes("\n"), "one line");
          return true;
        },
      );
    });

  it("without the NetworkPolicy no egress entry is needed", () => {
    const objects = synth({
      ...BASE,
      networkPolicy: { enabled: false },
      storage: { s3: { ...S3, egress: undefined } },
      redis: { ...REDIS, egress: undefined },
    });
    assert.equal(find(objects, "NetworkPolicy").length, 0);
  });
});
