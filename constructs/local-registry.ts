import { createHash } from "node:crypto";
import { Construct } from "constructs";
import { containerSecurityContext, podSecurityContext } from "./security.js";
import {
  IntOrString,
  KubeConfigMap,
  KubeDeployment,
  KubeNamespace,
  KubePersistentVolumeClaim,
  KubePodDisruptionBudget,
  KubeSecret,
  KubeService,
  Quantity,
  type Volume,
  type VolumeMount,
} from "cdk8s-plus-27/lib/imports/k8s.js";
import type { ConfigInput, SyncManifestInput } from "../server/src/contract/index.js";
import { checkQuantity } from "./quantities.js";
import { RegistryMonitoring } from "./monitoring.js";
import { RegistryCertificate } from "./certificate.js";
import { RegistryDashboard } from "./dashboard.js";
import { RegistrySyncManifest } from "./sync-manifest.js";
import { RegistryNetworkPolicy } from "./network-policy.js";
import { renderRegistryConfig } from "./registry-config.js";
import {
  RegistryMaintenanceJobs,
  type BackupProps,
  type GcProps,
  type MaintenanceCredentials,
} from "./maintenance-jobs.js";

/** Container image of the registry. */
export interface ImageProps {
  /** @default "neam-registry" */
  readonly repository?: string;
  /** @default "0.1.0" */
  readonly tag?: string;
  /** @default "IfNotPresent" */
  readonly pullPolicy?: "Always" | "IfNotPresent" | "Never";
}

/** Where blobs live: a PersistentVolumeClaim (filesystem storage, one replica). */
export interface PersistenceProps {
  /** When false, an emptyDir: data is lost with the pod (development only). @default true */
  readonly enabled?: boolean;
  /** @default the cluster's default StorageClass */
  readonly storageClass?: string;
  /** A Kubernetes quantity. @default "50Gi" (the guide's minimum) */
  readonly size?: string;
}

export interface ServiceProps {
  /** @default "ClusterIP" */
  readonly type?: "ClusterIP" | "NodePort" | "LoadBalancer";
  /** @default 5000 */
  readonly port?: number;
  /** @default {} */
  readonly annotations?: Record<string, string>;
}

export interface ResourcesProps {
  /** @default { cpu: "200m", memory: "512Mi" } (the guide's production values) */
  readonly requests?: { readonly cpu?: string; readonly memory?: string };
  /** @default { cpu: "1000m", memory: "2Gi" } */
  readonly limits?: { readonly cpu?: string; readonly memory?: string };
}

export interface AuthProps {
  /** @default false */
  readonly enabled?: boolean;
  /** Contents of the htpasswd file (bcrypt entries, `htpasswd -Bbn`); this or `existingSecret` when enabled. */
  readonly htpasswd?: string;
  /**
   * A Secret made outside the stack (the guide's `kubectl create secret generic registry-htpasswd
   * --from-file=htpasswd=htpasswd`) with an `htpasswd` key; keeps passwords out of the code.
   */
  readonly existingSecret?: string;
  /** @default "neam-registry" */
  readonly realm?: string;
  /**
   * Who may pull, push and delete where, and who the admins are (GC, sync, backup): the
   * registry's `auth.access`, typed by the server's own config. @default every user may do everything
   */
  readonly access?: NonNullable<NonNullable<ConfigInput["auth"]>["access"]>;
}

export interface TlsProps {
  /** A kubernetes.io/tls Secret (cert-manager's) holding tls.crt and tls.key. */
  readonly secretName: string;
  /** Have cert-manager issue it: a Certificate for these names from this issuer. @default the Secret exists already */
  readonly certificate?: {
    readonly issuer: { readonly name: string; readonly kind?: "Issuer" | "ClusterIssuer" };
    /** @default ["local-registry.neam.internal"] */
    readonly dnsNames?: readonly string[];
  };
}

/**
 * Props of `LocalRegistry`; the first group mirrors the operations guide's
 * `values-production.yaml`.
 */
export interface LocalRegistryProps {
  /** @default "registry" */
  readonly namespace?: string;
  /** Create the namespace (with the guide's labels). @default true */
  readonly createNamespace?: boolean;
  /** Name of the Deployment, Service and NetworkPolicy (the guide's). @default "local-registry" */
  readonly name?: string;
  /**
   * Prefix of the supporting objects' names, so the guide's commands find them:
   * `registry-config`, `registry-pvc`, `registry-htpasswd`, `registry-tls`, `registry-sync-manifest`,
   * `registry-image-sync`, `registry-gc`. Give another to run two registries in one namespace.
   * @default "registry"
   */
  readonly prefix?: string;
  /** Filesystem storage serves one replica; more need shared storage. @default 1 */
  readonly replicaCount?: number;
  /** @default see ImageProps */
  readonly image?: ImageProps;
  /** @default see PersistenceProps */
  readonly persistence?: PersistenceProps;
  /** @default see ServiceProps */
  readonly service?: ServiceProps;
  /** @default see ResourcesProps */
  readonly resources?: ResourcesProps;
  /** @default no authentication */
  readonly auth?: AuthProps;
  /** Serve TLS with this certificate Secret. @default plain HTTP */
  readonly tls?: TlsProps;
  /** Allow deletes of tags, manifests and blobs. @default true */
  readonly deleteEnabled?: boolean;
  /** @default "info" */
  readonly logLevel?: "error" | "warn" | "info" | "debug";
  /**
   * The audit trail of pushes, pulls, deletes, failed logins, denials and maintenance, as JSON
   * lines on the container's output (where the cluster's log collection keeps it). @default false
   */
  readonly audit?: boolean;
  /** Deny-by-default NetworkPolicy. @default enabled, clients from "default", Prometheus from "monitoring" */
  readonly networkPolicy?: NetworkPolicyProps;
  /** ServiceMonitor and alerts (needs the prometheus-operator CRDs). @default disabled */
  readonly monitoring?: MonitoringProps;
  /**
   * The images to mirror (the guide's sync manifest), rendered as the `registry-sync-manifest`
   * ConfigMap and synced by the `registry-image-sync` CronJobs. @default none
   */
  readonly sync?: SyncManifestInput["sync"];
  /** What sync keeps of earlier versions (the sync manifest's `policies`, typed here). @default keep everything */
  readonly retention?: RetentionProps;
  /** The upstream registries sync reaches, and how. @default each source host over HTTPS, anonymously */
  readonly upstreams?: readonly UpstreamProps[];
  /** Scheduled garbage collection (the `registry-gc` CronJob). @default see GcProps */
  readonly gc?: GcProps;
  /** Scheduled backups (the `registry-backup` CronJob and a volume for them). @default off */
  readonly backup?: BackupProps;
  /**
   * The admin credentials the sync and GC CronJobs use; required when `auth.enabled` and a
   * CronJob is synthesized. @default none
   */
  readonly maintenanceCredentials?: MaintenanceCredentials;
  /** A PodDisruptionBudget for the registry pods. @default none */
  readonly podDisruptionBudget?: PodDisruptionBudgetProps;
  /**
   * Serve as a pull-through cache of an upstream registry (the guide's `proxy.remoteurl`); pushes
   * are then refused. @default a normal registry
   */
  readonly proxy?: ProxyProps;
}

export interface ProxyProps {
  /** The upstream, e.g. "https://registry-1.docker.io" (or the site's mirror). */
  readonly remoteUrl: string;
  /** @default anonymous */
  readonly username?: string;
  /** The Secret (and key) holding the upstream password. @default none */
  readonly passwordSecret?: { readonly name: string; readonly key?: string };
  /** Cached images not pulled for this long are dropped ("0": never). @default "168h" */
  readonly ttl?: string;
}

/** The sync manifest's `policies`, in the constructs' spelling. */
export interface RetentionProps {
  /** Keep the N most recently pushed tags of each synced repository (listed tags count and are always kept). @default all */
  readonly keepLastVersions?: number;
  /** Delete unlisted tags pushed more than this many days ago. @default never */
  readonly maxImageAgeDays?: number;
  /** Delete manifests no tag reaches any more, so GC frees their blobs. @default false */
  readonly cleanupUnused?: boolean;
}

/** One upstream registry sync copies from. */
export interface UpstreamProps {
  /** The host as the sync manifest's sources name it (`docker.io`, `gcr.io`). */
  readonly registry: string;
  /** Where to reach it instead (the site's mirror). @default https://<registry> */
  readonly url?: string;
  /** @default anonymous */
  readonly username?: string;
  /** The Secret (and key) holding the password. @default none */
  readonly passwordSecret?: { readonly name: string; readonly key?: string };
  /** The Secret (and key) holding the CA bundle that signs the upstream's certificate. @default the system's CAs */
  readonly caSecret?: { readonly name: string; readonly key?: string };
}

/** Exactly one of the two; a budget that would block every node drain is refused at synth time. */
export interface PodDisruptionBudgetProps {
  /** Pods that must stay up during voluntary disruptions (node drains). @default unset */
  readonly minAvailable?: number;
  /** Pods that may be down during voluntary disruptions. @default unset */
  readonly maxUnavailable?: number;
}

export interface NetworkPolicyProps {
  /** @default true */
  readonly enabled?: boolean;
  /** @default ["default"] */
  readonly clientNamespaces?: readonly string[];
  /** @default "monitoring" */
  readonly monitoringNamespace?: string;
  /** CIDRs of the upstream registries sync reaches (the registry pods' only egress besides DNS). @default none */
  readonly upstreamCidrs?: readonly string[];
  /** Ports of those upstreams. @default [443] */
  readonly upstreamPorts?: readonly number[];
}

export interface MonitoringProps {
  /** @default false */
  readonly enabled?: boolean;
  /** @default { enabled: true, interval: "15s" } when monitoring is enabled */
  readonly serviceMonitor?: { readonly enabled?: boolean; readonly interval?: string };
  /** @default { release: "kube-prometheus-stack" } */
  readonly prometheusLabels?: Record<string, string>;
  /** The "Local Registry Overview" Grafana dashboard ConfigMap. @default true when monitoring is enabled */
  readonly dashboard?: boolean;
}

/** Where registry:2's image reads its config: manifests written for it keep working. */
const CONFIG_DIR = "/etc/docker/registry";
const DATA_DIR = "/var/lib/registry";
const AUTH_DIR = "/auth";
const TLS_DIR = "/certs";
const UPSTREAMS_DIR = "/etc/neam-registry/upstreams";
const PROXY_DIR = "/etc/neam-registry/proxy";
const REGISTRY_PORT = 5000;
const METRICS_PORT = 5001;
/** The image's non-root user (see server/Dockerfile). */
const RUN_AS = 65532;

/** The registry and everything it needs in one namespace: the composition other NEAM stacks import. */
export class LocalRegistry extends Construct {
  readonly namespace: string;
  readonly name: string;
  readonly configMap: KubeConfigMap;
  readonly deployment: KubeDeployment;
  readonly service: KubeService;
  readonly persistentVolumeClaim?: KubePersistentVolumeClaim;
  readonly htpasswdSecret?: KubeSecret;
  readonly monitoring?: RegistryMonitoring;
  readonly maintenance?: RegistryMaintenanceJobs;
  /** Labels that select the registry's pods. */
  readonly selectorLabels: Record<string, string>;

  constructor(scope: Construct, id: string, props: LocalRegistryProps = {}) {
    super(scope, id);
    this.namespace = props.namespace ?? "registry";
    this.name = props.name ?? "local-registry";
    const prefix = props.prefix ?? "registry";
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(prefix))
      throw new Error(`LocalRegistry: prefix ${JSON.stringify(prefix)} is not a DNS label`);
    const replicas = props.replicaCount ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1)
      throw new Error(`LocalRegistry: replicaCount must be a positive integer, not ${replicas}`);
    if (replicas > 1) {
      throw new Error(
        `LocalRegistry: replicaCount ${replicas} needs shared storage; filesystem storage on a ReadWriteOnce volume serves exactly 1 replica, and this version of the registry has no shared storage driver (S3) yet`,
      );
    }
    const persistence = { enabled: true, size: "50Gi", ...props.persistence };
    checkQuantity("persistence.size", persistence.size);
    const auth = props.auth ?? {};
    if (auth.access !== undefined && !auth.enabled)
      throw new Error(
        "LocalRegistry: auth.access needs auth.enabled (access rules are for authenticated users)",
      );
    if (auth.enabled && !auth.htpasswd === !auth.existingSecret) {
      throw new Error(
        "LocalRegistry: auth.enabled needs exactly one of auth.htpasswd and auth.existingSecret",
      );
    }
    const resources = {
      requests: { cpu: "200m", memory: "512Mi", ...props.resources?.requests },
      limits: { cpu: "1000m", memory: "2Gi", ...props.resources?.limits },
    };
    for (const [kind, values] of Object.entries(resources)) {
      for (const [resource, value] of Object.entries(values))
        checkQuantity(`resources.${kind}.${resource}`, value);
    }
    const image = {
      repository: "neam-registry",
      tag: "0.1.0",
      pullPolicy: "IfNotPresent" as const,
      ...props.image,
    };

    this.selectorLabels = {
      app: this.name,
      "app.kubernetes.io/name": "neam-registry",
      "app.kubernetes.io/instance": this.name,
    };
    const labels = {
      ...this.selectorLabels,
      tier: "infrastructure",
      "app.kubernetes.io/part-of": "neam-platform",
    };
    const metadata = (name: string) => ({ name, namespace: this.namespace, labels });

    if (props.createNamespace ?? true) {
      new KubeNamespace(this, "namespace", {
        metadata: {
          name: this.namespace,
          labels: { "kubernetes.io/metadata.name": this.namespace, app: this.name, tier: "infrastructure" },
        },
      });
    }

    if (props.proxy !== undefined && props.sync !== undefined)
      throw new Error(
        "LocalRegistry: a pull-through cache (proxy) refuses pushes, so it cannot be a sync target",
      );
    if (props.retention !== undefined && props.sync?.policies !== undefined)
      throw new Error("LocalRegistry: set retention or sync.policies, not both");
    const syncInput: SyncManifestInput["sync"] | undefined =
      props.sync === undefined
        ? undefined
        : { ...props.sync, policies: props.sync.policies ?? retentionPolicies(props.retention) };
    const upstreams = props.upstreams ?? [];
    const config: ConfigInput = {
      version: "0.1",
      log: { level: props.logLevel ?? "info" },
      ...(props.audit ? { audit: { stdout: true } } : {}),
      storage: { filesystem: { rootdirectory: DATA_DIR }, delete: { enabled: props.deleteEnabled ?? true } },
      http: {
        addr: `:${REGISTRY_PORT}`,
        debug: { addr: `:${METRICS_PORT}` },
        ...(props.tls ? { tls: { certificate: `${TLS_DIR}/tls.crt`, key: `${TLS_DIR}/tls.key` } } : {}),
      },
      ...(auth.enabled
        ? {
            auth: {
              htpasswd: { realm: auth.realm ?? "neam-registry", path: `${AUTH_DIR}/htpasswd` },
              ...(auth.access !== undefined ? { access: auth.access } : {}),
            },
          }
        : {}),
      ...(props.proxy !== undefined
        ? {
            proxy: {
              remoteurl: props.proxy.remoteUrl,
              ...(props.proxy.username !== undefined ? { username: props.proxy.username } : {}),
              ...(props.proxy.passwordSecret ? { passwordfile: `${PROXY_DIR}/password` } : {}),
              ...(props.proxy.ttl !== undefined ? { ttl: props.proxy.ttl } : {}),
            },
          }
        : {}),
      ...(upstreams.length > 0
        ? {
            sync: {
              upstreams: upstreams.map((u, i) => ({
                registry: u.registry,
                ...(u.url !== undefined ? { url: u.url } : {}),
                ...(u.username !== undefined ? { username: u.username } : {}),
                ...(u.passwordSecret ? { passwordfile: `${UPSTREAMS_DIR}/${i}/password` } : {}),
                ...(u.caSecret ? { ca: `${UPSTREAMS_DIR}/${i}/ca.crt` } : {}),
              })),
            },
          }
        : {}),
    };
    const rendered = renderRegistryConfig(config);
    this.configMap = new KubeConfigMap(this, "config", {
      metadata: metadata(`${prefix}-config`),
      data: { "config.yml": rendered.yaml },
    });

    if (auth.enabled && auth.htpasswd) {
      this.htpasswdSecret = new KubeSecret(this, "htpasswd", {
        metadata: metadata(`${prefix}-htpasswd`),
        type: "Opaque",
        stringData: { htpasswd: auth.htpasswd! },
      });
    }

    if (persistence.enabled) {
      this.persistentVolumeClaim = new KubePersistentVolumeClaim(this, "data", {
        metadata: metadata(`${prefix}-pvc`),
        spec: {
          accessModes: ["ReadWriteOnce"],
          ...(persistence.storageClass ? { storageClassName: persistence.storageClass } : {}),
          resources: { requests: { storage: Quantity.fromString(persistence.size) } },
        },
      });
    }

    const volumes: Volume[] = [
      { name: "config", configMap: { name: this.configMap.name } },
      persistence.enabled
        ? { name: "data", persistentVolumeClaim: { claimName: this.persistentVolumeClaim!.name } }
        : { name: "data", emptyDir: {} },
      { name: "tmp", emptyDir: {} },
    ];
    const mounts: VolumeMount[] = [
      { name: "config", mountPath: CONFIG_DIR, readOnly: true },
      { name: "data", mountPath: DATA_DIR },
      { name: "tmp", mountPath: "/tmp" },
    ];
    if (auth.enabled) {
      volumes.push({
        name: "htpasswd",
        secret: { secretName: this.htpasswdSecret?.name ?? auth.existingSecret! },
      });
      mounts.push({ name: "htpasswd", mountPath: AUTH_DIR, readOnly: true });
    }
    if (props.tls) {
      volumes.push({ name: "tls", secret: { secretName: props.tls.secretName } });
      mounts.push({ name: "tls", mountPath: TLS_DIR, readOnly: true });
    }
    if (props.proxy?.passwordSecret) {
      const { name, key = "password" } = props.proxy.passwordSecret;
      volumes.push({ name: "proxy", secret: { secretName: name, items: [{ key, path: "password" }] } });
      mounts.push({ name: "proxy", mountPath: PROXY_DIR, readOnly: true });
    }
    upstreams.forEach((u, i) => {
      const files = [
        ...(u.passwordSecret
          ? [{ secret: u.passwordSecret, key: u.passwordSecret.key ?? "password", path: "password" }]
          : []),
        ...(u.caSecret ? [{ secret: u.caSecret, key: u.caSecret.key ?? "ca.crt", path: "ca.crt" }] : []),
      ];
      if (files.length === 0) return;
      volumes.push({
        name: `upstream-${i}`,
        projected: {
          sources: files.map((f) => ({
            secret: { name: f.secret.name, items: [{ key: f.key, path: f.path }] },
          })),
        },
      });
      mounts.push({ name: `upstream-${i}`, mountPath: `${UPSTREAMS_DIR}/${i}`, readOnly: true });
    });

    // A change of config or users rolls the pods (the registry also reloads htpasswd itself).
    const checksum = createHash("sha256")
      .update(rendered.yaml)
      .update("\0")
      .update(auth.htpasswd ?? "")
      .digest("hex");
    const probe = (path: string, periodSeconds: number, failureThreshold: number) => ({
      httpGet: { path, port: IntOrString.fromString("metrics") },
      periodSeconds,
      failureThreshold,
      timeoutSeconds: 2,
    });

    this.deployment = new KubeDeployment(this, "deployment", {
      metadata: metadata(this.name),
      spec: {
        replicas,
        // One writer on a ReadWriteOnce volume: the old pod must go before the new one mounts it.
        strategy: { type: "Recreate" },
        selector: { matchLabels: this.selectorLabels },
        template: {
          metadata: {
            labels,
            annotations: {
              "checksum/config": checksum,
              "prometheus.io/scrape": "true",
              "prometheus.io/port": String(METRICS_PORT),
              "prometheus.io/path": "/metrics",
            },
          },
          spec: {
            automountServiceAccountToken: false,
            securityContext: podSecurityContext(RUN_AS, { fsGroup: true }),
            containers: [
              {
                name: "registry",
                image: `${image.repository}:${image.tag}`,
                imagePullPolicy: image.pullPolicy,
                args: ["serve", `${CONFIG_DIR}/config.yml`],
                ports: [
                  { name: "registry", containerPort: REGISTRY_PORT, protocol: "TCP" },
                  { name: "metrics", containerPort: METRICS_PORT, protocol: "TCP" },
                ],
                securityContext: containerSecurityContext(),
                resources: {
                  requests: mapQuantities(resources.requests),
                  limits: mapQuantities(resources.limits),
                },
                startupProbe: probe("/debug/health", 2, 30),
                livenessProbe: probe("/debug/health", 10, 3),
                readinessProbe: probe("/debug/health", 5, 2),
                volumeMounts: mounts,
              },
            ],
            volumes,
          },
        },
      },
    });

    if (props.tls?.certificate) {
      new RegistryCertificate(this, "certificate", {
        namespace: this.namespace,
        name: `${prefix}-tls`,
        secretName: props.tls.secretName,
        issuer: props.tls.certificate.issuer,
        // The in-cluster names too: the maintenance CronJobs reach the registry through its Service.
        dnsNames: nonEmpty("tls.dnsNames", props.tls.certificate.dnsNames) && [
          ...(props.tls.certificate.dnsNames ?? ["local-registry.neam.internal"]),
          `${this.name}.${this.namespace}.svc`,
          `${this.name}.${this.namespace}.svc.cluster.local`,
        ],
      });
    }
    const syncManifest =
      syncInput === undefined
        ? undefined
        : new RegistrySyncManifest(this, "sync-manifest", {
            namespace: this.namespace,
            name: `${prefix}-sync-manifest`,
            sync: syncInput,
          });
    const maintenanceLabels = {
      app: `${this.name}-maintenance`,
      "app.kubernetes.io/name": "neam-registry",
      "app.kubernetes.io/instance": this.name,
      "app.kubernetes.io/component": "maintenance",
    };
    const gcEnabled = props.gc?.enabled ?? true;
    if (syncManifest !== undefined || gcEnabled || props.backup?.enabled) {
      if (auth.enabled && props.maintenanceCredentials === undefined)
        throw new Error(
          "LocalRegistry: auth.enabled with sync, gc or backup needs maintenanceCredentials (a Secret with an admin's username and password)",
        );
      this.maintenance = new RegistryMaintenanceJobs(this, "maintenance", {
        namespace: this.namespace,
        prefix,
        image: `${image.repository}:${image.tag}`,
        imagePullPolicy: image.pullPolicy,
        registryUrl: `${props.tls ? "https" : "http"}://${this.name}.${this.namespace}.svc:${props.service?.port ?? REGISTRY_PORT}`,
        podLabels: maintenanceLabels,
        ...(props.tls ? { tlsSecretName: props.tls.secretName } : {}),
        ...(auth.enabled ? { credentials: props.maintenanceCredentials } : {}),
        ...(syncManifest !== undefined
          ? { sync: { configMapName: syncManifest.configMap.name, manifest: syncManifest.manifest } }
          : {}),
        gc: props.gc,
        backup: props.backup,
        runAs: RUN_AS,
      });
    }
    if (props.podDisruptionBudget !== undefined) {
      const { minAvailable, maxUnavailable } = props.podDisruptionBudget;
      if ((minAvailable === undefined) === (maxUnavailable === undefined))
        throw new Error(
          "LocalRegistry: podDisruptionBudget needs exactly one of minAvailable and maxUnavailable",
        );
      for (const [key, value] of Object.entries({ minAvailable, maxUnavailable })) {
        if (value !== undefined && (!Number.isInteger(value) || value < 0))
          throw new Error(`LocalRegistry: podDisruptionBudget.${key} must be a non-negative integer`);
      }
      if ((minAvailable ?? 0) >= replicas || maxUnavailable === 0)
        throw new Error(
          `LocalRegistry: podDisruptionBudget would block every node drain with ${replicas} replica(s); allow at least one pod to be evicted`,
        );
      new KubePodDisruptionBudget(this, "pdb", {
        metadata: metadata(this.name),
        spec: {
          selector: { matchLabels: this.selectorLabels },
          ...(minAvailable !== undefined ? { minAvailable: IntOrString.fromNumber(minAvailable) } : {}),
          ...(maxUnavailable !== undefined ? { maxUnavailable: IntOrString.fromNumber(maxUnavailable) } : {}),
        },
      });
    }
    const networkPolicy = props.networkPolicy ?? {};
    if (networkPolicy.enabled ?? true) {
      new RegistryNetworkPolicy(this, "network-policy", {
        namespace: this.namespace,
        name: this.name,
        selectorLabels: this.selectorLabels,
        clientNamespaces: networkPolicy.clientNamespaces,
        monitoringNamespace: networkPolicy.monitoringNamespace,
        upstreamCidrs: networkPolicy.upstreamCidrs,
        upstreamPorts: networkPolicy.upstreamPorts,
        ...(this.maintenance !== undefined ? { maintenanceLabels } : {}),
      });
    }
    if (props.monitoring?.enabled && (props.monitoring.serviceMonitor?.enabled ?? true)) {
      this.monitoring = new RegistryMonitoring(this, "monitoring", {
        namespace: this.namespace,
        serviceName: this.name,
        selectorLabels: this.selectorLabels,
        interval: props.monitoring.serviceMonitor?.interval,
        prometheusLabels: props.monitoring.prometheusLabels,
      });
    }

    if (props.monitoring?.enabled && (props.monitoring.dashboard ?? true)) {
      new RegistryDashboard(this, "dashboard", { namespace: this.namespace, job: this.name });
    }

    const service = props.service ?? {};
    this.service = new KubeService(this, "service", {
      metadata: { ...metadata(this.name), annotations: { ...service.annotations } },
      spec: {
        type: service.type ?? "ClusterIP",
        selector: this.selectorLabels,
        ports: [
          {
            name: "registry",
            port: service.port ?? REGISTRY_PORT,
            targetPort: IntOrString.fromString("registry"),
            protocol: "TCP",
          },
          {
            name: "metrics",
            port: METRICS_PORT,
            targetPort: IntOrString.fromString("metrics"),
            protocol: "TCP",
          },
        ],
      },
    });
  }
}

function nonEmpty(prop: string, values: readonly string[] | undefined): true {
  if (values !== undefined && values.length === 0)
    throw new Error(`LocalRegistry: ${prop} needs at least one name`);
  return true;
}

function retentionPolicies(
  retention: RetentionProps | undefined,
): NonNullable<SyncManifestInput["sync"]["policies"]> | undefined {
  if (retention === undefined) return undefined;
  return {
    ...(retention.keepLastVersions !== undefined ? { keep_last_versions: retention.keepLastVersions } : {}),
    ...(retention.maxImageAgeDays !== undefined ? { max_image_age_days: retention.maxImageAgeDays } : {}),
    cleanup_unused: retention.cleanupUnused ?? false,
  };
}

function mapQuantities(values: Record<string, string>): Record<string, Quantity> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Quantity.fromString(v)]));
}
