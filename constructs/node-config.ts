import { createHash } from "node:crypto";
import { Construct } from "constructs";
import {
  IntOrString,
  KubeConfigMap,
  KubeDaemonSet,
  KubeNetworkPolicy,
  Quantity,
} from "cdk8s-plus-27/lib/imports/k8s.js";
import {
  DEFAULT_IMAGE,
  mirrorConfig,
  NODE_CONFIG_DIRS,
  upstreamHosts,
  validateSyncManifest,
  type RuntimeFormat,
  type SyncManifestInput,
} from "../server/src/contract/index.js";

export interface RegistryNodeConfigProps {
  readonly namespace: string;
  /** Names the DaemonSet and its ConfigMap: `<prefix>-node-config`. @default "registry" */
  readonly prefix?: string;
  /** The container runtime of the nodes. */
  readonly runtime: RuntimeFormat;
  /** The registry as nodes reach it, `https://local-registry.neam.internal:5000`. */
  readonly registryUrl: string;
  /** The sync manifest whose upstream hosts the nodes send to the registry (the guide's). */
  readonly syncManifest: SyncManifestInput;
  /** A Secret holding the CA that signs the registry's certificate. @default none (a public CA or plain HTTP) */
  readonly ca?: { readonly secretName: string; /** @default "ca.crt" */ readonly key?: string };
  /** The runtime's configuration directory on the node. @default containerd /etc/containerd/certs.d, cri-o /etc/containers, k3s /etc/rancher/k3s */
  readonly hostDir?: string;
  /** @default the registry's own image (it has busybox's sh and cp) */
  readonly image?: string;
}

/**
 * Writes the mirror configuration of `neam-registry mirror-config` onto every node, so pods that
 * name `docker.io/…` pull from the registry: a DaemonSet on every node (every taint tolerated)
 * whose only host access is the runtime's configuration directory. The files come from a
 * ConfigMap rendered at synth time from the sync manifest; a change rolls the DaemonSet.
 * containerd reads hosts.toml on each pull (its `config_path` must name the directory, as k3s,
 * RKE2 and current distributions set it); CRI-O needs a reload and k3s a restart to read theirs.
 */
export class RegistryNodeConfig extends Construct {
  readonly configMap: KubeConfigMap;
  readonly daemonSet: KubeDaemonSet;
  /** Its pods need no network at all: denied both ways. */
  readonly networkPolicy: KubeNetworkPolicy;

  constructor(scope: Construct, id: string, props: RegistryNodeConfigProps) {
    super(scope, id);
    const name = `${props.prefix ?? "registry"}-node-config`;
    let registry: URL;
    try {
      registry = new URL(props.registryUrl);
    } catch {
      throw new Error(`RegistryNodeConfig: registryUrl ${JSON.stringify(props.registryUrl)} is not a URL`);
    }
    if (!["http:", "https:"].includes(registry.protocol) || registry.pathname.replace(/\/+$/, "") !== "")
      throw new Error(`RegistryNodeConfig: registryUrl ${props.registryUrl} must be http(s)://host[:port]`);
    const hostDir = props.hostDir ?? NODE_CONFIG_DIRS[props.runtime];
    if (!hostDir.startsWith("/") || hostDir === "/" || hostDir.includes(".."))
      throw new Error(
        `RegistryNodeConfig: hostDir ${JSON.stringify(hostDir)} must be an absolute directory below /`,
      );
    const hosts = upstreamHosts(validateSyncManifest(props.syncManifest));
    if (hosts.length === 0) throw new Error("RegistryNodeConfig: syncManifest names no upstream image");
    const files = mirrorConfig(hosts, {
      format: props.runtime,
      registry,
      dir: hostDir,
      ...(props.ca !== undefined ? { ca: "(from the Secret)" } : {}),
    });

    // ConfigMap keys cannot hold "/": each file gets a key of its own and its path as the item's.
    const key = (path: string) => path.replace(/[^A-Za-z0-9._-]/g, "_");
    const configFiles = files.filter((f) => !f.isCa);
    this.configMap = new KubeConfigMap(this, "files", {
      metadata: { name, namespace: props.namespace },
      data: Object.fromEntries(configFiles.map((f) => [key(f.path), f.content])),
    });
    const copies = [
      ...configFiles.map((f) => `/files/${f.path}`),
      ...files.filter((f) => f.isCa).map(() => `/ca/${props.ca?.key ?? "ca.crt"}`),
    ];
    const targets = [...configFiles, ...files.filter((f) => f.isCa)].map((f) => `/host/${f.path}`);
    // Copy each file into place through a temporary name and a rename, so the runtime never reads
    // half a file; then stay, so the DaemonSet shows the node configured.
    const script = [
      "set -eu",
      ...copies.map(
        (from, i) =>
          `mkdir -p "$(dirname '${targets[i]}')" && cp '${from}' '${targets[i]}.tmp' && mv '${targets[i]}.tmp' '${targets[i]}'`,
      ),
      'echo "neam-registry: node configured for the registry"',
      "exec sleep 2147483647",
    ].join("\n");
    const checksum = createHash("sha256").update(JSON.stringify(files)).digest("hex").slice(0, 16);
    const labels = {
      "app.kubernetes.io/name": "neam-registry",
      "app.kubernetes.io/component": "node-config",
    };

    this.networkPolicy = new KubeNetworkPolicy(this, "no-network", {
      metadata: { name, namespace: props.namespace, labels },
      spec: { podSelector: { matchLabels: labels }, policyTypes: ["Ingress", "Egress"] },
    });
    this.daemonSet = new KubeDaemonSet(this, "daemonset", {
      metadata: { name, namespace: props.namespace, labels },
      spec: {
        selector: { matchLabels: labels },
        updateStrategy: {
          type: "RollingUpdate",
          rollingUpdate: { maxUnavailable: IntOrString.fromString("25%") },
        },
        template: {
          metadata: { labels, annotations: { "neam-registry/node-config-checksum": checksum } },
          spec: {
            // On every node, whatever it is tainted with: every node pulls.
            tolerations: [{ operator: "Exists" }],
            priorityClassName: "system-node-critical",
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            securityContext: { seccompProfile: { type: "RuntimeDefault" } },
            containers: [
              {
                name: "node-config",
                image: props.image ?? `${DEFAULT_IMAGE.repository}:${DEFAULT_IMAGE.tag}`,
                imagePullPolicy: "IfNotPresent",
                command: ["sh", "-c", script],
                // Root, for root-owned configuration directories, and nothing else: no
                // capabilities (not even DAC override), no escalation, a read-only root.
                securityContext: {
                  runAsUser: 0,
                  runAsNonRoot: false,
                  readOnlyRootFilesystem: true,
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ["ALL"] },
                },
                resources: {
                  requests: { cpu: Quantity.fromString("5m"), memory: Quantity.fromString("8Mi") },
                  limits: { cpu: Quantity.fromString("50m"), memory: Quantity.fromString("32Mi") },
                },
                volumeMounts: [
                  { name: "host", mountPath: "/host" },
                  { name: "files", mountPath: "/files", readOnly: true },
                  ...(props.ca !== undefined ? [{ name: "ca", mountPath: "/ca", readOnly: true }] : []),
                ],
              },
            ],
            volumes: [
              { name: "host", hostPath: { path: hostDir, type: "DirectoryOrCreate" } },
              {
                name: "files",
                configMap: { name, items: configFiles.map((f) => ({ key: key(f.path), path: f.path })) },
              },
              ...(props.ca !== undefined
                ? [
                    {
                      name: "ca",
                      secret: {
                        secretName: props.ca.secretName,
                        items: [{ key: props.ca.key ?? "ca.crt", path: props.ca.key ?? "ca.crt" }],
                      },
                    },
                  ]
                : []),
            ],
          },
        },
      },
    });
  }
}
