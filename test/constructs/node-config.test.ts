/**
 * RegistryNodeConfig: the DaemonSet that writes mirror-config's files onto every node. Its objects
 * are checked as an operator would read them, and its script is run for real against a directory
 * standing in for the node's, with the ConfigMap's items and the Secret's CA laid out as the
 * kubelet mounts them.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { Chart } from "cdk8s";
import { RegistryNodeConfig, type RegistryNodeConfigProps } from "../../constructs/index.js";
import { testApp } from "../helpers/cdk8s.js";
import { tempDir } from "../helpers/registry.js";

const syncManifest = {
  sync: {
    images: [
      { source: "docker.io/library/nginx:1.25-alpine", target: "local-registry:5000/nginx:1.25-alpine" },
      { source: "quay.io/prometheus/prometheus:v2.42.0", target: "local-registry:5000/prometheus:v2.42.0" },
    ],
  },
};

interface K8sObject {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec?: {
    template: {
      spec: {
        tolerations: unknown[];
        containers: {
          command: string[];
          securityContext: Record<string, unknown>;
          volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
        }[];
        volumes: {
          name: string;
          hostPath?: { path: string };
          configMap?: { items: { key: string; path: string }[] };
          secret?: { secretName: string };
        }[];
      };
    };
  };
}

function synth(props: Partial<RegistryNodeConfigProps> = {}): K8sObject[] {
  const chart = new Chart(testApp(), "nodes");
  new RegistryNodeConfig(chart, "node-config", {
    namespace: "registry",
    runtime: "containerd",
    registryUrl: "https://local-registry.neam.internal:5000",
    syncManifest,
    ca: { secretName: "registry-tls" },
    ...props,
  });
  return chart.toJson() as K8sObject[];
}

describe("RegistryNodeConfig", () => {
  it("touches only the runtime's directory on the node, on every node, without capabilities", () => {
    const objects = synth();
    const daemonSet = objects.find((o) => o.kind === "DaemonSet")!;
    const pod = daemonSet.spec!.template.spec;
    assert.deepEqual(pod.tolerations, [{ operator: "Exists" }]);
    const hostPaths = pod.volumes.filter((v) => v.hostPath);
    assert.deepEqual(
      hostPaths.map((v) => v.hostPath!.path),
      ["/etc/containerd/certs.d"],
    );
    const container = pod.containers[0]!;
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(container.securityContext.capabilities, { drop: ["ALL"] });
    assert.equal(container.securityContext.privileged, undefined);
    for (const mount of container.volumeMounts.filter((m) => m.name !== "host"))
      assert.equal(mount.readOnly, true);
    assert.equal(pod.volumes.find((v) => v.secret)!.secret!.secretName, "registry-tls");
  });

  it("its script puts each file where the runtime reads it, the CA from the Secret", async () => {
    for (const runtime of ["containerd", "cri-o", "k3s"] as const) {
      const objects = synth({ runtime });
      const configMap = objects.find((o) => o.kind === "ConfigMap")!;
      const pod = objects.find((o) => o.kind === "DaemonSet")!.spec!.template.spec;
      const root = tempDir("neam-node-config-");
      // Lay the volumes out as the kubelet would: ConfigMap items at their paths, the CA file.
      for (const item of pod.volumes.find((v) => v.configMap)!.configMap!.items) {
        mkdirSync(dirname(join(root, "files", item.path)), { recursive: true });
        writeFileSync(join(root, "files", item.path), configMap.data![item.key]!);
      }
      mkdirSync(join(root, "ca"));
      writeFileSync(
        join(root, "ca/ca.crt"),
        "-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n",
      );
      mkdirSync(join(root, "host"));
      const script = pod.containers[0]!.command[2]!.replace(/'\/(files|ca|host)\//g, `'${root}/$1/`);
      await new Promise<void>((resolve, reject) => {
        const child = spawn("sh", ["-c", script], { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        child.stdout.on("data", (chunk: Buffer) => {
          out += chunk;
          if (out.includes("node configured")) {
            child.kill();
            resolve();
          }
        });
        child.on("exit", (code) =>
          code === 0 ? resolve() : reject(new Error(`script exited ${code}: ${out}`)),
        );
      });
      const host = (path: string) => readFileSync(join(root, "host", path), "utf8");
      if (runtime === "containerd") {
        assert.match(
          host("docker.io/hosts.toml"),
          /server = "https:\/\/local-registry\.neam\.internal:5000"/,
        );
        assert.match(
          host("quay.io/hosts.toml"),
          /ca = "\/etc\/containerd\/certs\.d\/quay\.io\/neam-registry-ca\.crt"/,
        );
        assert.match(host("quay.io/neam-registry-ca.crt"), /TEST/);
      } else if (runtime === "cri-o") {
        assert.match(host("registries.conf.d/50-neam-registry.conf"), /prefix = "quay\.io"/);
        assert.match(host("certs.d/local-registry.neam.internal:5000/ca.crt"), /TEST/);
      } else {
        assert.match(host("registries.yaml"), /"\^\(\.\*\)\$": "docker\.io\/\$1"/);
        assert.match(host("neam-registry-ca.crt"), /TEST/);
      }
    }
  });

  it("refuses props a cluster would turn into a broken node, naming the prop", () => {
    assert.throws(
      () => synth({ registryUrl: "local-registry:5000" }),
      /registryUrl local-registry:5000 must be http\(s\):\/\/host\[:port\]/,
    );
    assert.throws(() => synth({ hostDir: "/" }), /hostDir "\/" must be an absolute directory below \//);
    assert.throws(() => synth({ syncManifest: { sync: { images: [] } } }), /sync\.images: Too small/);
  });
});

describe("production: nodes pull upstream names from the registry", () => {
  it("the registry reads the sync manifest the nodes are configured from, where it is mounted", async () => {
    const { manifestsFor } = await import("../../stacks/manifests.js");
    const { parse } = await import("yaml");
    const objects = manifestsFor("production") as unknown as (K8sObject & {
      spec: { template: { spec: { containers: { volumeMounts: { name: string; mountPath: string }[] }[] } } };
    })[];
    const config = parse(
      objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === "registry-config")!.data![
        "config.yml"
      ]!,
    ) as {
      sync: { manifest: string };
    };
    const deployment = objects.find((o) => o.kind === "Deployment")!;
    const pod = deployment.spec!.template.spec;
    const volume = pod.volumes.find(
      (v) =>
        (v as { configMap?: { name: string } }).configMap &&
        (v as unknown as { configMap: { name: string } }).configMap.name === "registry-sync-manifest",
    )!;
    const mount = pod.containers[0]!.volumeMounts.find((m) => m.name === volume.name)!;
    assert.equal(config.sync.manifest, `${mount.mountPath}/sync-manifest.yaml`);
    const syncManifest = objects.find((o) => o.metadata.name === "registry-sync-manifest")!;
    assert.ok(syncManifest.data!["sync-manifest.yaml"]);
    const nodeConfig = objects.find(
      (o) => o.kind === "ConfigMap" && o.metadata.name === "registry-node-config",
    )!;
    assert.match(
      nodeConfig.data!["docker.io_hosts.toml"]!,
      /server = "https:\/\/local-registry\.neam\.internal:5000"/,
    );
    const daemonSet = objects.find(
      (o) => o.kind === "DaemonSet" && o.metadata.name === "registry-node-config",
    )!;
    assert.equal(
      daemonSet.spec!.template.spec.volumes.find((v) => v.secret)!.secret!.secretName,
      "registry-tls-secret",
    );
  });
});
