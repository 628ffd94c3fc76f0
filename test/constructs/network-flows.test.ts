/**
 * What the NetworkPolicies of each environment let through, evaluated the way the NetworkPolicy
 * API defines it (test/helpers/cdk8s.ts): the flows a working site needs, and the ones it must
 * deny. The evaluator itself is checked first, on the cases that decide a policy's meaning.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Chart, Testing } from "cdk8s";
import { LocalRegistry, type LocalRegistryProps } from "../../constructs/index.js";
import { ENVIRONMENTS } from "../../stacks/environments.js";
import { flowAllowed, testApp, type Endpoint, type NetworkPolicyObject } from "../helpers/cdk8s.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

function synth(props: LocalRegistryProps): Loose[] {
  const chart = new Chart(testApp(), "flows", { disableResourceNameHashes: true });
  new LocalRegistry(chart, "registry", props);
  return Testing.synth(chart);
}

/** An address inside a CIDR (its base plus `offset`). */
function hostIn(cidr: string, offset = 5): string {
  const parts = cidr.split("/")[0]!.split(".").map(Number);
  parts[3] = parts[3]! + offset;
  return parts.join(".");
}

const pod = (
  namespace: string,
  labels: Record<string, string>,
  ip: string,
  ports?: Record<string, number>,
): Endpoint => ({ kind: "pod", namespace, labels, ip, ...(ports ? { ports } : {}) });
const address = (ip: string): Endpoint => ({ kind: "ip", ip });

describe("the NetworkPolicy evaluator", () => {
  const target = pod("a", { app: "t" }, "10.244.0.1", { web: 8080 });
  const other = pod("b", { app: "o" }, "10.244.0.2");
  const policy = (spec: Loose): NetworkPolicyObject => ({
    kind: "NetworkPolicy",
    metadata: { name: "p", namespace: "a" },
    spec: { podSelector: { matchLabels: { app: "t" } }, ...spec },
  });
  it("a pod no policy selects is not isolated", () => {
    assert.ok(flowAllowed([], other, target, 8080));
    assert.ok(flowAllowed([policy({ policyTypes: ["Egress"], egress: [] })], other, target, 8080));
  });
  it("an empty `from` admits everyone; an empty rule list admits no one", () => {
    assert.ok(flowAllowed([policy({ policyTypes: ["Ingress"], ingress: [{ from: [] }] })], other, target, 1));
    assert.ok(!flowAllowed([policy({ policyTypes: ["Ingress"], ingress: [] })], other, target, 1));
  });
  it("namespaceSelector and podSelector in one peer are an AND; in two peers an OR", () => {
    const and = policy({
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [
            {
              namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "b" } },
              podSelector: { matchLabels: { app: "x" } },
            },
          ],
        },
      ],
    });
    assert.ok(!flowAllowed([and], other, target, 1));
    const or = policy({
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [
            { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "b" } } },
            { podSelector: { matchLabels: { app: "x" } } },
          ],
        },
      ],
    });
    assert.ok(flowAllowed([or], other, target, 1));
    // A podSelector alone means the policy's own namespace.
    const local = policy({
      policyTypes: ["Ingress"],
      ingress: [{ from: [{ podSelector: { matchLabels: { app: "o" } } }] }],
    });
    assert.ok(!flowAllowed([local], other, target, 1));
    assert.ok(flowAllowed([local], pod("a", { app: "o" }, "10.244.0.3"), target, 1));
  });
  it("ipBlock with except; named and ranged ports; protocol", () => {
    const p = policy({
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.1.0/24"] } }],
          ports: [{ port: "web" }, { port: 9000, endPort: 9010, protocol: "UDP" }],
        },
      ],
    });
    assert.ok(flowAllowed([p], address("10.0.0.7"), target, 8080));
    assert.ok(!flowAllowed([p], address("10.0.1.7"), target, 8080));
    assert.ok(!flowAllowed([p], address("10.1.0.7"), target, 8080));
    assert.ok(!flowAllowed([p], address("10.0.0.7"), target, 8081));
    assert.ok(flowAllowed([p], address("10.0.0.7"), target, 9005, "UDP"));
    assert.ok(!flowAllowed([p], address("10.0.0.7"), target, 9005, "TCP"));
  });
  it("a flow needs the source's egress and the destination's ingress", () => {
    const egress: NetworkPolicyObject = {
      kind: "NetworkPolicy",
      metadata: { name: "e", namespace: "b" },
      spec: {
        podSelector: {},
        policyTypes: ["Egress"],
        egress: [{ to: [{ ipBlock: { cidr: "1.2.3.4/32" } }] }],
      },
    };
    assert.ok(!flowAllowed([egress], other, target, 8080));
    assert.ok(flowAllowed([egress], other, address("1.2.3.4"), 443));
  });
});

for (const [environment, props] of Object.entries(ENVIRONMENTS)) {
  describe(`${environment}: flows`, () => {
    const objects = synth(props);
    const policies = objects.filter((o) => o.kind === "NetworkPolicy") as NetworkPolicyObject[];
    const namespace = props.namespace!;
    const deployment = objects.find((o) => o.kind === "Deployment");
    const registry = pod(
      namespace,
      deployment.spec.template.metadata.labels,
      "10.244.1.10",
      Object.fromEntries(
        deployment.spec.template.spec.containers[0].ports.map((p: Loose) => [p.name, p.containerPort]),
      ),
    );
    const cronJobs = objects.filter((o) => o.kind === "CronJob");
    const maintenance = cronJobs.map((j, i) =>
      pod(namespace, j.spec.jobTemplate.spec.template.metadata.labels, `10.244.1.${20 + i}`),
    );
    const prePull = objects
      .filter((o) => o.kind === "DaemonSet")
      .map((d) => pod(namespace, d.spec.template.metadata.labels, "10.244.1.30"));
    const node = address(hostIn(props.networkPolicy!.nodeCidrs![0]!));
    const prometheus = pod("monitoring", { "app.kubernetes.io/name": "prometheus" }, "10.244.2.5");
    const client = pod("default", { app: "web" }, "10.244.3.3");
    const kubeDns = pod("kube-system", { "k8s-app": "kube-dns" }, "10.244.0.2");
    const mirrors = (props.upstreams ?? []).flatMap((u) =>
      (u.egress?.cidrs ?? []).map((cidr) => ({ ip: hostIn(cidr, 0), port: 443, registry: u.registry })),
    );
    const allow = (from: Endpoint, to: Endpoint, port: number, protocol: "TCP" | "UDP" = "TCP") =>
      flowAllowed(policies, from, to, port, protocol);
    // The S3 endpoint and Redis, where the props say they are (addresses or pods), on the port the
    // connection arrives on: the egress entry's, else the endpoint's own.
    const s3 = props.storage?.s3;
    const endpointPort = (url: URL) =>
      url.port !== "" ? Number(url.port) : url.protocol === "http:" ? 80 : 443;
    const sharedServices = [
      ...(s3?.egress !== undefined
        ? [
            {
              what: "S3",
              egress: s3.egress,
              port: s3.egress.port ?? endpointPort(new URL(s3.regionEndpoint!)),
            },
          ]
        : []),
      ...(props.redis?.egress !== undefined
        ? [
            {
              what: "Redis",
              egress: props.redis.egress,
              port: props.redis.egress.port ?? Number(props.redis.addr.split(":")[1]),
            },
          ]
        : []),
    ].flatMap(({ what, egress, port }) => [
      ...(egress.cidrs ?? []).map((cidr) => ({ what, endpoint: address(hostIn(cidr, 1)), port })),
      ...(egress.pods !== undefined
        ? [{ what, endpoint: pod(egress.pods.namespace, { ...egress.pods.labels }, "10.244.7.7"), port }]
        : []),
    ]);
    /** Another replica of the registry (the Deployment's pods are all alike). */
    const replica = pod(namespace, deployment.spec.template.metadata.labels, "10.244.1.11", {
      registry: 5000,
      metrics: 5001,
    });

    it("has the policies to evaluate", () => {
      assert.ok(policies.length >= 2);
      assert.ok(cronJobs.length >= 1);
      if (environment === "scaleout") {
        assert.deepEqual(
          sharedServices.map((s) => [s.what, s.port]),
          [
            ["S3", 8080],
            ["Redis", 6379],
          ],
        );
      }
      if (environment === "production") {
        assert.equal(mirrors.length, 2, "production syncs from two site mirrors");
        // The pre-pull and the node-config DaemonSets: neither needs the network.
        assert.deepEqual(
          objects
            .filter((o) => o.kind === "DaemonSet")
            .map((o) => o.metadata.name)
            .sort(),
          ["registry-node-config", "registry-prepull"],
        );
      }
    });

    it("allows what a working site needs", () => {
      assert.ok(allow(node, registry, 5000), "containerd on a node pulls");
      assert.ok(allow(client, registry, 5000), "a pod of a client namespace pulls and pushes");
      assert.ok(allow(prometheus, registry, 5001), "Prometheus scrapes");
      for (const job of maintenance) {
        assert.ok(allow(job, registry, 5000), "a maintenance CronJob reaches the registry");
        assert.ok(allow(job, kubeDns, 53, "UDP") && allow(job, kubeDns, 53, "TCP"), "CronJob DNS");
      }
      assert.ok(allow(registry, kubeDns, 53, "UDP") && allow(registry, kubeDns, 53, "TCP"), "registry DNS");
      for (const mirror of mirrors)
        assert.ok(allow(registry, address(mirror.ip), mirror.port), `registry → ${mirror.registry} mirror`);
      for (const service of sharedServices)
        assert.ok(allow(registry, service.endpoint, service.port), `registry → ${service.what}`);
    });

    it("denies everything else", () => {
      const strangers = [
        pod("other", { app: "web" }, "10.244.4.4"),
        pod(namespace, { app: "debug" }, "10.244.1.99"),
        pod("monitoring", { app: "grafana" }, "10.244.2.6"),
        address("192.168.7.7"),
        ...prePull,
      ];
      for (const stranger of strangers) {
        assert.ok(!allow(stranger, registry, 5000), `${JSON.stringify(stranger)} → 5000`);
        assert.ok(!allow(stranger, registry, 5001) || stranger === strangers[2], `${stranger.ip} → 5001`);
      }
      assert.ok(!allow(client, registry, 5001), "clients do not scrape");
      assert.ok(!allow(prometheus, registry, 5000), "Prometheus does not pull");
      // Egress of the registry: DNS and the mirrors only.
      for (const [ip, port] of [
        ["8.8.8.8", 443],
        ["1.1.1.1", 53],
        ["10.20.0.12", 443],
        ...mirrors.map((m) => [m.ip, 80] as const),
        ...mirrors.map((m) => [m.ip, 22] as const),
      ] as const)
        assert.ok(!allow(registry, address(ip), port), `registry → ${ip}:${port}`);
      assert.ok(!allow(registry, client, 80), "registry → another pod");
      // The replicas never talk to each other (S3 and Redis are what they share): no rule for it.
      assert.ok(!allow(replica, registry, 5000) && !allow(replica, registry, 5001), "replica → replica");
      for (const service of sharedServices) {
        assert.ok(
          !allow(registry, service.endpoint, service.port + 1),
          `registry → ${service.what} other port`,
        );
        if (service.endpoint.kind === "pod") {
          const neighbour = pod(service.endpoint.namespace, { app: "other" }, "10.244.7.8");
          assert.ok(!allow(registry, neighbour, service.port), `registry → ${service.what}'s neighbour`);
          // The Service port (RGW's 80) is not what NetworkPolicy sees.
          if (service.port !== 80) assert.ok(!allow(registry, service.endpoint, 80));
        }
        for (const job of maintenance)
          assert.ok(!allow(job, service.endpoint, service.port), `CronJob → ${service.what}`);
        for (const p of prePull)
          assert.ok(!allow(p, service.endpoint, service.port), `pre-pull → ${service.what}`);
      }
      assert.ok(!allow(registry, kubeDns, 443), "registry → kube-dns on a port other than DNS");
      assert.ok(!allow(registry, pod("kube-system", { component: "etcd" }, "10.244.0.9"), 53, "UDP"));
      for (const job of maintenance) {
        assert.ok(!allow(job, address("8.8.8.8"), 443), "CronJob → internet");
        assert.ok(!allow(job, client, 5000), "CronJob → other pods");
        assert.ok(!allow(client, job, 80), "nothing reaches a CronJob pod");
      }
      for (const p of prePull) {
        assert.ok(!allow(p, address("8.8.8.8"), 443));
        assert.ok(!allow(p, kubeDns, 53, "UDP"), "the pre-pull pods need no network");
      }
    });
  });
}

describe("admission variants", () => {
  const base: LocalRegistryProps = { gc: { enabled: false }, networkPolicy: { nodeCidrs: ["10.0.0.0/24"] } };
  const registryPod = (objects: Loose[]) => {
    const d = objects.find((o) => o.kind === "Deployment");
    return pod("registry", d.spec.template.metadata.labels, "10.244.1.10", { registry: 5000, metrics: 5001 });
  };
  /** The policies, after checking none has a rule with an empty peer list (which means everyone). */
  const policiesOf = (objects: Loose[]) => {
    const policies = objects.filter((o) => o.kind === "NetworkPolicy");
    for (const policy of policies)
      for (const rule of [...(policy.spec.ingress ?? []), ...(policy.spec.egress ?? [])]) {
        assert.notDeepEqual(rule.from, [], `${policy.metadata.name}: from: []`);
        assert.notDeepEqual(rule.to, [], `${policy.metadata.name}: to: []`);
      }
    return policies;
  };

  it("no client namespaces: still only the nodes, never everyone", () => {
    const objects = synth({ ...base, networkPolicy: { nodeCidrs: ["10.0.0.0/24"], clientNamespaces: [] } });
    const registry = registryPod(objects);
    assert.ok(flowAllowed(policiesOf(objects), address("10.0.0.9"), registry, 5000));
    assert.ok(!flowAllowed(policiesOf(objects), pod("default", {}, "10.244.3.3"), registry, 5000));
    assert.ok(!flowAllowed(policiesOf(objects), address("192.168.0.1"), registry, 5000));
  });

  it("allowFromAnywhere admits every source on 5000, and only on 5000", () => {
    const objects = synth({ ...base, networkPolicy: { allowFromAnywhere: true } });
    const registry = registryPod(objects);
    assert.ok(flowAllowed(policiesOf(objects), address("192.168.0.1"), registry, 5000));
    assert.ok(!flowAllowed(policiesOf(objects), address("192.168.0.1"), registry, 5001));
  });

  it("a LoadBalancer admits its external clients, and restricts the load balancer to them", () => {
    const objects = synth({
      ...base,
      service: { type: "LoadBalancer" },
      networkPolicy: { nodeCidrs: ["10.0.0.0/24"], externalCidrs: ["203.0.113.0/24"] },
    });
    const registry = registryPod(objects);
    assert.ok(flowAllowed(policiesOf(objects), address("203.0.113.9"), registry, 5000));
    assert.ok(!flowAllowed(policiesOf(objects), address("198.51.100.9"), registry, 5000));
    const service = objects.find((o) => o.kind === "Service");
    assert.deepEqual(service.spec.loadBalancerSourceRanges, ["203.0.113.0/24"]);
  });

  it("S3 and Redis outside the cluster: their CIDRs on their ports, nothing else", () => {
    const objects = synth({
      ...base,
      replicaCount: 2,
      storage: {
        s3: {
          bucket: "blobs",
          region: "us-east-1",
          regionEndpoint: "https://s3.site.internal:7480",
          credentialsSecret: { name: "s3" },
          egress: { cidrs: ["10.30.0.0/28"] },
        },
      },
      redis: { addr: "10.30.1.5:6380", egress: { cidrs: ["10.30.1.5/32"] } },
    });
    const registry = registryPod(objects);
    const policies = policiesOf(objects);
    assert.ok(flowAllowed(policies, registry, address("10.30.0.9"), 7480), "registry → S3");
    assert.ok(flowAllowed(policies, registry, address("10.30.1.5"), 6380), "registry → Redis");
    assert.ok(!flowAllowed(policies, registry, address("10.30.0.9"), 443), "S3's CIDR, another port");
    assert.ok(!flowAllowed(policies, registry, address("10.30.0.17"), 7480), "outside S3's CIDR");
    assert.ok(!flowAllowed(policies, registry, address("10.30.1.6"), 6380), "next to Redis");
    assert.ok(!flowAllowed(policies, registry, address("10.30.1.5"), 7480), "Redis's address, S3's port");
    const labels = objects.find((o) => o.kind === "Deployment").spec.template.metadata.labels;
    const other = pod("registry", labels, "10.244.1.11", { registry: 5000 });
    assert.ok(!flowAllowed(policies, other, registry, 5000), "replica → replica");
  });

  it("NodeLocal DNSCache: DNS to its address instead of the kube-dns pods", () => {
    const objects = synth({
      ...base,
      networkPolicy: {
        nodeCidrs: ["10.0.0.0/24"],
        dns: { clusterDns: false, cidrs: ["169.254.20.10/32", "10.96.0.10/32"] },
      },
    });
    const registry = registryPod(objects);
    const policies = policiesOf(objects);
    assert.ok(flowAllowed(policies, registry, address("169.254.20.10"), 53, "UDP"));
    assert.ok(flowAllowed(policies, registry, address("10.96.0.10"), 53, "TCP"));
    assert.ok(
      !flowAllowed(
        policies,
        registry,
        pod("kube-system", { "k8s-app": "kube-dns" }, "10.244.0.2"),
        53,
        "UDP",
      ),
    );
    assert.ok(!flowAllowed(policies, registry, address("169.254.20.10"), 80));
  });
});
