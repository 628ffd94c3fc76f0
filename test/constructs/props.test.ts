/**
 * Props the API server would reject fail at synth with one line naming the prop; the hooks a
 * composing stack needs (namespace, pod spec, member constructs, pre-pull) do what they say.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ApiObject, Chart, Testing } from "cdk8s";
import { DEFAULT_IMAGE, LocalRegistry, type LocalRegistryProps } from "../../constructs/index.js";
import { ENVIRONMENTS } from "../../stacks/environments.js";
import { testApp } from "../helpers/cdk8s.js";
import { tempDir } from "../helpers/registry.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

const NODES = { nodeCidrs: ["10.0.0.0/24"] };
function synth(props: LocalRegistryProps, chartProps: { namespace?: string } = {}): Loose[] {
  const chart = new Chart(testApp(), "props", { disableResourceNameHashes: true, ...chartProps });
  new LocalRegistry(chart, "registry", { networkPolicy: NODES, ...props });
  return Testing.synth(chart);
}
const find = (objects: Loose[], kind: string, name?: string) =>
  objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));

describe("props the API server would reject fail at synth, naming the prop", () => {
  const cases: [string, LocalRegistryProps, RegExp][] = [
    ["name: DNS-1035 label", { name: "Bad_Name" }, /^LocalRegistry: name "Bad_Name" is not a DNS-1035 label/],
    [
      "name: starts with a letter",
      { name: "1registry" },
      /^LocalRegistry: name "1registry" is not a DNS-1035/,
    ],
    ["name: length of derived labels", { name: `r${"e".repeat(55)}` }, /^LocalRegistry: name \(as the label/],
    [
      "namespace: DNS-1123 label",
      { namespace: "UPPER" },
      /^LocalRegistry: namespace "UPPER" is not a DNS-1123 label/,
    ],
    [
      "namespace: at most 63",
      { namespace: "n".repeat(64) },
      /^LocalRegistry: namespace "n+" is not a DNS-1123 label/,
    ],
    [
      "service.port: above 65535",
      { service: { port: 70000 } },
      /^LocalRegistry: service\.port 70000 is not a port/,
    ],
    ["service.port: 0", { service: { port: 0 } }, /^LocalRegistry: service\.port 0 is not a port/],
    ["image.tag: empty", { image: { tag: "" } }, /^LocalRegistry: image\.tag "" is not an image tag/],
    [
      "image.tag: bad character",
      { image: { tag: "v1/2" } },
      /^LocalRegistry: image\.tag "v1\/2" is not an image tag/,
    ],
    [
      "image.repository",
      { image: { repository: "Neam Registry" } },
      /^LocalRegistry: image\.repository "Neam Registry"/,
    ],
    [
      "image.digest",
      { image: { digest: "sha256:abc" } },
      /^LocalRegistry: image\.digest "sha256:abc" is not a digest/,
    ],
    [
      "tls.secretName: empty",
      { tls: { secretName: "" } },
      /^LocalRegistry: tls\.secretName "" is not a DNS-1123 subdomain/,
    ],
    ["tls.secretName: uppercase", { tls: { secretName: "TLS" } }, /^LocalRegistry: tls\.secretName "TLS"/],
    [
      "tls.ca.secretName",
      { tls: { secretName: "t", ca: { secretName: "" } } },
      /^LocalRegistry: tls\.ca\.secretName ""/,
    ],
    [
      "resources: memory request above limit",
      { resources: { requests: { memory: "3Gi" }, limits: { memory: "2Gi" } } },
      /^LocalRegistry: resources\.requests\.memory 3Gi is more than resources\.limits\.memory 2Gi$/,
    ],
    [
      "resources: compared as quantities, not strings",
      { resources: { requests: { memory: "1025Mi" }, limits: { memory: "1Gi" } } },
      /^LocalRegistry: resources\.requests\.memory 1025Mi is more than resources\.limits\.memory 1Gi$/,
    ],
    [
      "resources: cpu request above limit",
      { resources: { requests: { cpu: "1.5" }, limits: { cpu: "1000m" } } },
      /^LocalRegistry: resources\.requests\.cpu 1\.5 is more than resources\.limits\.cpu 1000m$/,
    ],
    [
      "persistence.storageClass",
      { persistence: { storageClass: "Fast_SSD" } },
      /^LocalRegistry: persistence\.storageClass "Fast_SSD"/,
    ],
    [
      "auth.existingSecret",
      { auth: { enabled: true, existingSecret: "Users" } },
      /^LocalRegistry: auth\.existingSecret "Users"/,
    ],
    ["clusterDomain", { clusterDomain: "cluster_local" }, /^LocalRegistry: clusterDomain "cluster_local"/],
    [
      "pod.priorityClassName",
      { pod: { priorityClassName: "High" } },
      /^LocalRegistry: pod\.priorityClassName "High"/,
    ],
    [
      "pod.serviceAccountName",
      { pod: { serviceAccountName: "sa!" } },
      /^LocalRegistry: pod\.serviceAccountName "sa!"/,
    ],
    ["pod.imagePullSecrets", { pod: { imagePullSecrets: [""] } }, /^LocalRegistry: pod\.imagePullSecrets ""/],
    ["pod.env", { pod: { env: [{ name: "1X", value: "y" }] } }, /^LocalRegistry: pod\.env "1X"/],
    [
      "pod.nodeSelector value",
      { pod: { nodeSelector: { zone: "a b" } } },
      /^LocalRegistry: pod\.nodeSelector\.zone "a b"/,
    ],
    [
      "pod.annotations: the checksum is the construct's",
      { pod: { annotations: { "checksum/config": "x" } } },
      /checksum\/config/,
    ],
    [
      "networkPolicy: nodes admitted",
      { networkPolicy: {} },
      /^LocalRegistry: networkPolicy\.nodeCidrs is required/,
    ],
    [
      "networkPolicy.nodeCidrs: a CIDR",
      { networkPolicy: { nodeCidrs: ["10.0.0.0/33"] } },
      /networkPolicy\.nodeCidrs "10\.0\.0\.0\/33" is not a CIDR/,
    ],
    [
      "networkPolicy.clientNamespaces",
      { networkPolicy: { ...NODES, clientNamespaces: ["Default"] } },
      /networkPolicy\.clientNamespaces "Default"/,
    ],
    [
      "service.type NodePort: external clients named",
      { service: { type: "NodePort" } },
      /^LocalRegistry: networkPolicy\.externalCidrs is required with service\.type NodePort/,
    ],
    [
      "networkPolicy.dns: some target",
      { networkPolicy: { ...NODES, dns: { clusterDns: false } } },
      /^LocalRegistry: networkPolicy\.dns has no target/,
    ],
    [
      "monitoring: scrapeTimeout within the interval",
      { monitoring: { enabled: true, serviceMonitor: { interval: "15s", scrapeTimeout: "30s" } } },
      /^LocalRegistry: monitoring\.serviceMonitor\.scrapeTimeout 30s is longer than the interval 15s/,
    ],
    [
      "service annotations: no second scrape beside the ServiceMonitor",
      { monitoring: { enabled: true }, service: { annotations: { "prometheus.io/scrape": "true" } } },
      /^LocalRegistry: service\/pod annotation prometheus\.io\/scrape scrapes the registry a second time/,
    ],
  ];
  for (const [rule, props, message] of cases) {
    it(rule, () => {
      assert.throws(
        () => synth(props),
        (error: Error) => {
          assert.match(error.message, message);
          assert.ok(!error.message.includes("\n"), "one line");
          return true;
        },
      );
    });
  }
  it("the same props, corrected, synthesize (each rule refuses only what it should)", () => {
    for (const props of [
      { name: "good-name" },
      { namespace: "lower" },
      { service: { port: 65535 } },
      { image: { tag: "0.2.0_rc-1" } },
      { image: { digest: `sha256:${"a".repeat(64)}` } },
      { tls: { secretName: "registry-tls.v2" } },
      { resources: { requests: { memory: "1Gi" }, limits: { memory: "1024Mi" } } },
      { resources: { requests: { cpu: "1" }, limits: { cpu: "1000m" } } },
      { monitoring: { enabled: true, serviceMonitor: { interval: "30s", scrapeTimeout: "30s" } } },
      { service: { annotations: { "prometheus.io/scrape": "true" } } },
    ] as LocalRegistryProps[])
      assert.ok(synth(props).length > 3, JSON.stringify(props));
  });
});

describe("composing into another stack", () => {
  it("the Chart's namespace is the registry's, and no Namespace is emitted unless asked", () => {
    const objects = synth({}, { namespace: "neam-platform" });
    for (const o of objects)
      assert.equal(o.metadata.namespace, "neam-platform", `${o.kind} ${o.metadata.name}`);
    assert.equal(find(objects, "Namespace"), undefined);
    assert.ok(find(objects, "ConfigMap").data["config.yml"]);
    // The CronJobs reach the Service in that namespace.
    const job = find(objects, "CronJob");
    assert.ok(
      job.spec.jobTemplate.spec.template.spec.containers[0].args.includes(
        "http://local-registry.neam-platform.svc:5000",
      ),
    );
    // The prop still wins over the chart.
    assert.equal(
      find(synth({ namespace: "other" }, { namespace: "neam-platform" }), "Deployment").metadata.namespace,
      "other",
    );
  });

  it("two registries in one chart: one Namespace, distinct dashboards, a clear error for a second createNamespace", () => {
    const chart = new Chart(testApp(), "two", {
      disableResourceNameHashes: true,
      namespace: "neam-platform",
    });
    const common: LocalRegistryProps = { networkPolicy: NODES, monitoring: { enabled: true } };
    new LocalRegistry(chart, "a", { ...common, createNamespace: true });
    new LocalRegistry(chart, "b", { ...common, name: "mirror-registry", prefix: "mirror" });
    const objects = Testing.synth(chart) as Loose[];
    assert.equal(objects.filter((o) => o.kind === "Namespace").length, 1);
    const keys = objects.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`);
    assert.equal(new Set(keys).size, keys.length, "no duplicate resource");
    const uids = objects
      .filter((o) => o.kind === "ConfigMap" && o.metadata.labels?.grafana_dashboard === "1")
      .map((o) => JSON.parse(Object.values(o.data as Record<string, string>)[0]!).uid as string);
    assert.equal(uids.length, 2);
    assert.notEqual(uids[0], uids[1]);
    for (const uid of uids) assert.ok(uid.length <= 40);
    const again = new Chart(testApp(), "again", { namespace: "neam-platform" });
    new LocalRegistry(again, "a", { ...common, createNamespace: true });
    assert.throws(
      () => new LocalRegistry(again, "b", { ...common, name: "b", prefix: "b", createNamespace: true }),
      /createNamespace: namespace neam-platform is already created in this chart by again\/a\/namespace/,
    );
  });

  it("pod-spec hooks reach the registry pods (and scheduling the CronJob pods)", () => {
    const toleration = { key: "dedicated", operator: "Equal", value: "registry", effect: "NoSchedule" };
    const affinity = {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchExpressions: [{ key: "disk", operator: "In", values: ["ssd"] }] }],
        },
      },
    };
    const objects = synth({
      pod: {
        tolerations: [toleration],
        nodeSelector: { "node-role.kubernetes.io/infra": "" },
        affinity,
        priorityClassName: "system-cluster-critical",
        env: [{ name: "TZ", value: "UTC" }],
        annotations: { "backup.velero.io/backup-volumes": "data" },
        imagePullSecrets: ["site-pull"],
        serviceAccountName: "registry",
      },
    });
    const spec = find(objects, "Deployment").spec.template;
    assert.deepEqual(spec.spec.tolerations, [toleration]);
    assert.deepEqual(spec.spec.nodeSelector, { "node-role.kubernetes.io/infra": "" });
    assert.deepEqual(spec.spec.affinity, affinity);
    assert.equal(spec.spec.priorityClassName, "system-cluster-critical");
    assert.deepEqual(spec.spec.containers[0].env, [{ name: "TZ", value: "UTC" }]);
    assert.equal(spec.metadata.annotations["backup.velero.io/backup-volumes"], "data");
    assert.ok(spec.metadata.annotations["checksum/config"]);
    assert.deepEqual(spec.spec.imagePullSecrets, [{ name: "site-pull" }]);
    assert.equal(spec.spec.serviceAccountName, "registry");
    assert.equal(spec.spec.automountServiceAccountToken, false, "the token stays unmounted");
    const job = find(objects, "CronJob").spec.jobTemplate.spec.template.spec;
    assert.deepEqual(job.tolerations, [toleration]);
    assert.deepEqual(job.imagePullSecrets, [{ name: "site-pull" }]);
    assert.equal(job.priorityClassName, "system-cluster-critical");
  });

  it("member constructs are public, and a stack extends them with the cdk8s API", () => {
    const chart = new Chart(testApp(), "members", { disableResourceNameHashes: true });
    const registry = new LocalRegistry(chart, "registry", {
      ...ENVIRONMENTS.production!,
      podDisruptionBudget: { maxUnavailable: 1 },
    });
    assert.equal(registry.deployment.kind, "Deployment");
    assert.equal(registry.service.kind, "Service");
    assert.equal(registry.networkPolicy!.policy.name, "local-registry");
    assert.equal(registry.certificate!.certificate.kind, "Certificate");
    assert.equal(registry.dashboard!.configMap.name, "local-registry-dashboard");
    assert.equal(registry.podDisruptionBudget!.kind, "PodDisruptionBudget");
    assert.equal(registry.prePull!.name, "registry-prepull");
    assert.equal(registry.namespaceObject!.name, "registry");
    assert.ok(registry.syncManifest!.configMap.name === "registry-sync-manifest");
    registry.networkPolicy!.policy.metadata.addLabel("team", "platform");
    registry.certificate!.certificate.metadata.addAnnotation("note", "extended");
    const objects = Testing.synth(chart) as Loose[];
    assert.equal(find(objects, "NetworkPolicy", "local-registry").metadata.labels.team, "platform");
    assert.equal(find(objects, "Certificate").metadata.annotations.note, "extended");
    assert.ok(ApiObject.of(registry.deployment) === registry.deployment);
  });
});

describe("image and upgrades", () => {
  it("the default image is DEFAULT_IMAGE, pulled IfNotPresent; a digest pins it everywhere", () => {
    const plain = find(synth({}), "Deployment").spec.template.spec.containers[0];
    assert.equal(plain.image, `${DEFAULT_IMAGE.repository}:${DEFAULT_IMAGE.tag}`);
    assert.equal(plain.imagePullPolicy, "IfNotPresent");
    const digest = `sha256:${"b".repeat(64)}`;
    const objects = synth({
      image: { repository: "r.site:5000/neam-registry", tag: "0.2.0", digest },
      prePull: { enabled: true },
    });
    const images = JSON.stringify(objects).match(/"image":"[^"]+"/g)!;
    assert.ok(images.length >= 3);
    for (const image of images) assert.equal(image, `"image":"r.site:5000/neam-registry:0.2.0@${digest}"`);
  });

  it("pre-pull: a DaemonSet <prefix>-prepull on the registry's nodes, same image, nothing else", () => {
    const toleration = { key: "dedicated", operator: "Exists", effect: "NoSchedule" };
    const extra = { key: "node.kubernetes.io/unschedulable", operator: "Exists", effect: "NoSchedule" };
    const objects = synth({
      prefix: "site",
      pod: { tolerations: [toleration], nodeSelector: { infra: "true" }, imagePullSecrets: ["p"] },
      prePull: { enabled: true, tolerations: [extra] },
    });
    const daemonSet = find(objects, "DaemonSet");
    assert.equal(daemonSet.metadata.name, "site-prepull");
    const spec = daemonSet.spec.template.spec;
    const image = find(objects, "Deployment").spec.template.spec.containers[0].image;
    assert.equal(spec.initContainers.length, 1);
    assert.equal(spec.containers.length, 1);
    for (const c of [...spec.initContainers, ...spec.containers]) {
      assert.equal(c.image, image);
      assert.equal(c.imagePullPolicy, "IfNotPresent");
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
      assert.equal(c.volumeMounts, undefined);
    }
    assert.equal(spec.volumes, undefined);
    assert.equal(spec.automountServiceAccountToken, false);
    assert.deepEqual(spec.tolerations, [toleration, extra]);
    assert.deepEqual(spec.nodeSelector, { infra: "true" });
    assert.deepEqual(spec.imagePullSecrets, [{ name: "p" }]);
    assert.ok(!find(objects, "Service").spec.selector.app.includes("prepull"));
    assert.equal(find(synth({}), "DaemonSet"), undefined, "off by default");
  });

  it("pre-pull: the containers' commands run: the init one exits 0, the holder stops on SIGTERM", async () => {
    const spec = find(synth({ prePull: { enabled: true } }), "DaemonSet").spec.template.spec;
    const [initCommand, ...initArgs] = spec.initContainers[0].command as string[];
    assert.equal(initCommand, "node");
    const init = spawn(process.execPath, initArgs, { stdio: "inherit" });
    assert.deepEqual(await once(init, "exit"), [0, null]);
    const [, ...holdArgs] = spec.containers[0].command as string[];
    // A preload that reports once the script has run (its handlers installed), over IPC: a
    // signal sent earlier would test node's startup, not the script.
    const preload = join(tempDir(), "ready.cjs");
    writeFileSync(preload, "setImmediate(() => process.send('ready'));");
    const hold = spawn(process.execPath, ["--require", preload, ...holdArgs], {
      stdio: ["inherit", "inherit", "inherit", "ipc"],
    });
    const exited = once(hold, "exit");
    try {
      assert.equal((await once(hold, "message"))[0], "ready");
      hold.disconnect();
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(hold.exitCode, null, "it holds");
      hold.kill("SIGTERM");
      assert.deepEqual(await exited, [0, null]);
    } finally {
      hold.kill("SIGKILL");
    }
  });
});

describe("TLS", () => {
  const tls = { secretName: "registry-tls", certificate: { issuer: { name: "ca" } } };
  it("the certificate names the short name, name.namespace, the Service and the cluster domain; ECDSA without keyEncipherment", () => {
    const certificate = find(synth({ namespace: "infra", tls, clusterDomain: "site.local" }), "Certificate");
    assert.deepEqual(certificate.spec.dnsNames, [
      "local-registry.neam.internal",
      "local-registry",
      "local-registry.infra",
      "local-registry.infra.svc",
      "local-registry.infra.svc.site.local",
    ]);
    assert.equal(certificate.spec.privateKey.algorithm, "ECDSA");
    assert.deepEqual(certificate.spec.usages, ["server auth", "digital signature"]);
    const rsa = find(
      synth({ tls: { ...tls, certificate: { ...tls.certificate, keyAlgorithm: "RSA" } } }),
      "Certificate",
    );
    assert.ok(rsa.spec.usages.includes("key encipherment"));
  });

  const jobTls = (props: LocalRegistryProps) => {
    const pod = find(synth(props), "CronJob").spec.jobTemplate.spec.template.spec;
    return {
      args: pod.containers[0].args as string[],
      volume: pod.volumes.find((v: Loose) => v.name === "tls"),
    };
  };
  it("CronJobs: the TLS Secret's ca.crt is optional, so a Secret without it never holds the pod", () => {
    const { args, volume } = jobTls({ tls });
    assert.deepEqual(volume.secret, {
      secretName: "registry-tls",
      items: [{ key: "ca.crt", path: "ca.crt" }],
      optional: true,
    });
    assert.equal(args[args.indexOf("--ca") + 1], "/certs/ca.crt");
  });
  it("CronJobs: the CA from a separate Secret, or the system's", () => {
    const separate = jobTls({ tls: { ...tls, ca: { secretName: "site-ca", key: "bundle.pem" } } });
    assert.deepEqual(separate.volume.secret, {
      secretName: "site-ca",
      items: [{ key: "bundle.pem", path: "ca.crt" }],
    });
    const system = jobTls({ tls: { ...tls, ca: "system" } });
    assert.equal(system.volume, undefined);
    assert.ok(!system.args.includes("--ca"));
    assert.ok(system.args.some((a) => a.startsWith("https://")));
  });
});
