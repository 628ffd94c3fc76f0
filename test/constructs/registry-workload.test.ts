/**
 * RegistryWorkload on its own: the Deployment's probes, rollout and count follow the storage
 * (volume or S3) and Redis, and what the composing stack gives (env, volumes, annotations) reaches
 * the pod as given.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Chart, Testing } from "cdk8s";
import { RegistryWorkload, type RegistryWorkloadProps } from "../../constructs/index.js";
import { testApp } from "../helpers/cdk8s.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

function deployment(props: Partial<RegistryWorkloadProps>): Loose {
  const chart = new Chart(testApp(), "workload", { disableResourceNameHashes: true });
  new RegistryWorkload(chart, "workload", {
    namespace: "registry",
    name: "r",
    labels: { app: "r", tier: "infrastructure" },
    selectorLabels: { app: "r" },
    image: "neam-registry:0.1.0",
    imagePullPolicy: "IfNotPresent",
    args: ["serve", "/etc/docker/registry/config.yml"],
    pod: {},
    podAnnotations: { "checksum/config": "abc" },
    env: [],
    resources: { requests: { cpu: "200m" }, limits: { cpu: "1" } },
    volumes: [{ name: "tmp", emptyDir: {} }],
    mounts: [{ name: "tmp", mountPath: "/tmp" }],
    runAs: 65532,
    sharedStorage: false,
    redis: false,
    scaling: { replicas: 1, sharedState: false },
    ...props,
  });
  return Testing.synth(chart).find((o: Loose) => o.kind === "Deployment");
}
const container = (d: Loose) => d.spec.template.spec.containers[0];

describe("RegistryWorkload", () => {
  it("on a volume: every probe on /debug/health, Recreate, no preStop pause", () => {
    const d = deployment({});
    for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"])
      assert.equal(container(d)[probe].httpGet.path, "/debug/health", probe);
    assert.deepEqual(d.spec.strategy, { type: "Recreate" });
    assert.equal(container(d).lifecycle, undefined);
    assert.equal(d.spec.replicas, 1);
    assert.deepEqual(d.spec.template.metadata.annotations, { "checksum/config": "abc" });
    assert.deepEqual(container(d).volumeMounts, [{ name: "tmp", mountPath: "/tmp" }]);
    assert.equal(container(d).env, undefined, "no empty env list");
  });

  it("on S3 with Redis: startup waits for Redis, liveness asks the process, rolling pods pause", () => {
    const d = deployment({
      sharedStorage: true,
      redis: true,
      env: [
        { name: "REGISTRY_REDIS_PASSWORD", valueFrom: { secretKeyRef: { name: "redis", key: "password" } } },
      ],
      scaling: { replicas: 2, sharedState: true },
    });
    assert.equal(container(d).startupProbe.httpGet.path, "/debug/health?redis=required");
    assert.equal(container(d).readinessProbe.httpGet.path, "/debug/health");
    assert.deepEqual(container(d).livenessProbe.tcpSocket, { port: "metrics" });
    assert.equal(d.spec.strategy.type, "RollingUpdate");
    assert.ok(container(d).lifecycle.preStop.exec);
    assert.equal(container(d).env[0].name, "REGISTRY_REDIS_PASSWORD");
    assert.equal(d.spec.replicas, 2);
  });

  it("autoscaled: the Deployment names no count", () => {
    const d = deployment({
      sharedStorage: true,
      redis: true,
      scaling: { replicas: 1, sharedState: true, autoscaling: { maxReplicas: 4 } },
    });
    assert.equal(d.spec.replicas, undefined);
    assert.ok(d.spec.template.spec.affinity.podAntiAffinity);
  });
});
