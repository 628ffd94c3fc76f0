import { createHash } from "node:crypto";
import { Chart } from "cdk8s";
import { Construct } from "constructs";
import { containerSecurityContext, podSecurityContext } from "./security.js";
import {
  IntOrString,
  KubeConfigMap,
  KubeDaemonSet,
  KubeDeployment,
  KubeNamespace,
  KubePersistentVolumeClaim,
  KubeSecret,
  KubeService,
  Quantity,
  type Affinity,
  type EnvVar,
  type KubeHorizontalPodAutoscalerV2,
  type KubePodDisruptionBudget,
  type Toleration,
  type Volume,
  type VolumeMount,
} from "cdk8s-plus-27/lib/imports/k8s.js";
import {
  REGISTRY_PORT,
  type ConfigInput,
  type RuntimeFormat,
  type SyncManifestInput,
} from "../server/src/contract/index.js";
import { checkQuantity, quantityValue } from "./quantities.js";
import { DEFAULT_IMAGE } from "./defaults.js";
import {
  checkDns1035Label,
  checkDnsLabel,
  checkDnsSubdomain,
  checkImageDigest,
  checkImageRepository,
  checkImageTag,
  checkLabelValue,
  checkPort,
} from "./validation.js";
import { RegistryMonitoring } from "./monitoring.js";
import { RegistryCertificate } from "./certificate.js";
import { RegistryDashboard } from "./dashboard.js";
import { RegistrySyncManifest } from "./sync-manifest.js";
import { RegistryNodeConfig } from "./node-config.js";
import { RegistryNetworkPolicy, type DnsEgressProps, type EgressTarget } from "./network-policy.js";
import { renderRegistryConfig } from "./registry-config.js";
import { RegistryWorkload } from "./registry-workload.js";
import {
  type RegistryScaling,
  type AutoscalingProps,
  type PodAntiAffinityMode,
  type PodDisruptionBudgetProps,
} from "./registry-scaling.js";
import { requiredEgress, sharedStorage, type RedisProps, type S3StorageProps } from "./shared-storage.js";
import {
  RegistryMaintenanceJobs,
  type BackupProps,
  type GcProps,
  type MaintenanceCredentials,
} from "./maintenance-jobs.js";

/** Container image of the registry. */
export interface ImageProps {
  /** `[host[:port]/]path`. @default DEFAULT_IMAGE.repository ("neam-registry") */
  readonly repository?: string;
  /** @default DEFAULT_IMAGE.tag (the package's version) */
  readonly tag?: string;
  /**
   * Pin the image by digest (`sha256:…`): the reference becomes `repository:tag@digest`, which
   * the runtime resolves by digest alone, so a moved tag cannot change what runs. @default by tag
   */
  readonly digest?: string;
  /**
   * `IfNotPresent`: the registry's image usually comes from the registry itself, so a node that
   * has it must not ask (the registry may be the pod being replaced). @default "IfNotPresent"
   */
  readonly pullPolicy?: "Always" | "IfNotPresent" | "Never";
}

/**
 * Scheduling and pod settings of the registry pods, for the stack that imports the construct.
 * Tolerations, nodeSelector, priorityClassName and imagePullSecrets also apply to the maintenance
 * CronJob pods and the pre-pull DaemonSet (they run the same image on the same nodes).
 */
export interface PodProps {
  /** @default none */
  readonly tolerations?: readonly Toleration[];
  /** @default none */
  readonly nodeSelector?: Readonly<Record<string, string>>;
  /** Registry pods only (the pre-pull DaemonSet takes its nodeAffinity). @default none */
  readonly affinity?: Affinity;
  /** @default none (the cluster's default priority) */
  readonly priorityClassName?: string;
  /** Extra environment variables of the registry container. @default none */
  readonly env?: readonly EnvVar[];
  /** Extra annotations of the registry pods (`checksum/config` is the construct's). @default none */
  readonly annotations?: Readonly<Record<string, string>>;
  /** Names of Secrets to pull the image with. @default none */
  readonly imagePullSecrets?: readonly string[];
  /**
   * The registry pods' ServiceAccount; its token is still not mounted (the registry never calls
   * the Kubernetes API). @default the namespace's default
   */
  readonly serviceAccountName?: string;
}

/**
 * A DaemonSet that pulls the registry image onto the candidate nodes before the Deployment
 * changes: under `Recreate` the old registry goes before the new one starts, and the new image
 * usually lives in that registry. Change the image, wait for the DaemonSet to roll out (the old
 * registry still serves the pull), then change the Deployment (the Pulumi program orders them).
 */
export interface PrePullProps {
  /** @default false */
  readonly enabled?: boolean;
  /** The nodes to pull onto. @default the registry's pod.nodeSelector */
  readonly nodeSelector?: Readonly<Record<string, string>>;
  /** Added to the registry's pod.tolerations. @default none */
  readonly tolerations?: readonly Toleration[];
}

/** Where blobs live: a PersistentVolumeClaim (filesystem storage, one replica); not used with `storage.s3`. */
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
  /**
   * Have cert-manager issue it: a Certificate for these names, plus the in-cluster names
   * (`<name>`, `<name>.<namespace>`, `<name>.<namespace>.svc`, `….svc.<clusterDomain>`), from this
   * issuer. @default the Secret exists already
   */
  readonly certificate?: {
    readonly issuer: { readonly name: string; readonly kind?: "Issuer" | "ClusterIssuer" };
    /** @default ["local-registry.neam.internal"] */
    readonly dnsNames?: readonly string[];
    /** @default "ECDSA" */
    readonly keyAlgorithm?: "ECDSA" | "RSA";
  };
  /**
   * The CA the maintenance CronJobs trust for the registry's certificate. By default the TLS
   * Secret's `ca.crt` (cert-manager's CA and self-signed issuers write it), mounted as optional so
   * a Secret without it never holds a pod in ContainerCreating; a separate Secret (Vault, an
   * internal CA bundle); or "system" for a publicly trusted certificate (ACME).
   * @default { secretName: <secretName>, key: "ca.crt" }
   */
  readonly ca?: "system" | { readonly secretName: string; readonly key?: string };
}

/**
 * Props of `LocalRegistry`; the first group mirrors the operations guide's
 * `values-production.yaml`.
 */
export interface LocalRegistryProps {
  /** @default the Chart's namespace, else "registry" */
  readonly namespace?: string;
  /**
   * Create the namespace (with the guide's labels). Off by default, so a stack that owns the
   * namespace, or holds two registries in one, emits it once. @default false
   */
  readonly createNamespace?: boolean;
  /** The cluster's DNS domain, for the certificate's in-cluster names. @default "cluster.local" */
  readonly clusterDomain?: string;
  /** Scheduling and pod settings (see PodProps). @default none */
  readonly pod?: PodProps;
  /** Pre-pull the image onto the nodes before an upgrade (see PrePullProps). @default off */
  readonly prePull?: PrePullProps;
  /**
   * Configure every node's container runtime to pull the sync manifest's upstream names
   * (`docker.io/…`) from this registry: a `RegistryNodeConfig` DaemonSet. Needs `sync`.
   * @default off
   */
  readonly nodeConfig?: {
    readonly runtime: RuntimeFormat;
    /** The registry as the nodes reach it. @default https://<first tls dnsName>:<service port> */
    readonly registryUrl?: string;
    /** The runtime's configuration directory on the nodes. @default the runtime's usual one */
    readonly hostDir?: string;
  };
  /** Name of the Deployment, Service and NetworkPolicy (the guide's). @default "local-registry" */
  readonly name?: string;
  /**
   * Prefix of the supporting objects' names, so the guide's commands find them:
   * `registry-config`, `registry-pvc`, `registry-htpasswd`, `registry-tls`, `registry-sync-manifest`,
   * `registry-image-sync`, `registry-gc`. Give another to run two registries in one namespace.
   * @default "registry"
   */
  readonly prefix?: string;
  /**
   * Filesystem storage serves one replica; more need shared storage (`storage.s3`) and `redis`.
   * With `autoscaling`, the autoscaler sets the count instead. @default 1
   */
  readonly replicaCount?: number;
  /**
   * Where blobs live: `s3` for a bucket every replica shares (Ceph RGW through Rook, MinIO, AWS).
   * @default filesystem storage on `persistence`
   */
  readonly storage?: StorageProps;
  /** Redis for the replicas' shared state; required for more than one replica. @default none */
  readonly redis?: RedisProps;
  /** A HorizontalPodAutoscaler on CPU (needs `storage.s3` and `redis`). @default a fixed `replicaCount` */
  readonly autoscaling?: AutoscalingProps;
  /**
   * With several replicas, spread them over nodes by hostname: `preferred` (the scheduler tries) or
   * `required` (a replica without a node of its own stays Pending). `pod.affinity.podAntiAffinity`
   * replaces it. @default "preferred"
   */
  readonly podAntiAffinity?: PodAntiAffinityMode;
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
  /** A PodDisruptionBudget for the registry pods. @default maxUnavailable 1 with several replicas, else none */
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

/**
 * One upstream registry sync copies from (or the pull-through cache serves). With the
 * NetworkPolicy on, every host the sync manifest or `proxy.remoteUrl` names needs an entry here
 * with `egress`, or synth fails naming the image.
 */
export interface UpstreamProps {
  /** The host as the sync manifest's sources name it (`docker.io`, `gcr.io`), or `proxy.remoteUrl`'s host. */
  readonly registry: string;
  /** Where to reach it instead (the site's mirror). @default https://<registry> (Docker Hub: https://registry-1.docker.io) */
  readonly url?: string;
  /**
   * The addresses of that URL's host: the registry pods may connect to them on the URL's port
   * (443 for https, 80 for http, or the one it names). Required with the NetworkPolicy on.
   */
  readonly egress?: { readonly cidrs: readonly string[] };
  /** @default anonymous */
  readonly username?: string;
  /** The Secret (and key) holding the password. @default none */
  readonly passwordSecret?: { readonly name: string; readonly key?: string };
  /** The Secret (and key) holding the CA bundle that signs the upstream's certificate. @default the system's CAs */
  readonly caSecret?: { readonly name: string; readonly key?: string };
}

/** The blob store. */
export interface StorageProps {
  /** An S3 bucket shared by every replica (see S3StorageProps). @default filesystem storage */
  readonly s3?: S3StorageProps;
}

export interface NetworkPolicyProps {
  /** @default true */
  readonly enabled?: boolean;
  /** Namespaces whose pods may pull and push (an empty list admits none of them). @default ["default"] */
  readonly clientNamespaces?: readonly string[];
  /**
   * The nodes' address ranges: containerd pulls from the node's IP, which NetworkPolicy treats
   * as outside the cluster. Required while the policy is on, unless `allowFromAnywhere`.
   */
  readonly nodeCidrs?: readonly string[];
  /**
   * Clients outside the cluster, for `service.type` NodePort or LoadBalancer (also the
   * LoadBalancer's `loadBalancerSourceRanges`). Required with those types, unless `allowFromAnywhere`.
   */
  readonly externalCidrs?: readonly string[];
  /** Admit every source on the registry port (authentication still applies). @default false */
  readonly allowFromAnywhere?: boolean;
  /** @default "monitoring" */
  readonly monitoringNamespace?: string;
  /** Where DNS queries may go. @default the kube-dns/CoreDNS pods in kube-system */
  readonly dns?: DnsEgressProps;
}

export interface MonitoringProps {
  /** @default false */
  readonly enabled?: boolean;
  /**
   * `scrapeTimeout` is at most the interval. @default { enabled: true, interval: "15s", scrapeTimeout: <interval> } when monitoring is enabled
   */
  readonly serviceMonitor?: {
    readonly enabled?: boolean;
    readonly interval?: string;
    readonly scrapeTimeout?: string;
  };
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
/** Where the registry reads the sync manifest (the CronJobs mount it at the same path). */
const SYNC_MANIFEST_DIR = "/etc/registry-sync";
const METRICS_PORT = 5001;
/** The image's non-root user (see server/Dockerfile). */
const RUN_AS = 65532;

/** The registry and everything it needs in one namespace: the composition other NEAM stacks import. */
export class LocalRegistry extends Construct {
  readonly namespace: string;
  readonly name: string;
  /** The full image reference the pods run (`repository:tag[@digest]`). */
  readonly image: string;
  readonly configMap: KubeConfigMap;
  readonly deployment: KubeDeployment;
  readonly service: KubeService;
  readonly namespaceObject?: KubeNamespace;
  readonly persistentVolumeClaim?: KubePersistentVolumeClaim;
  readonly htpasswdSecret?: KubeSecret;
  readonly networkPolicy?: RegistryNetworkPolicy;
  readonly certificate?: RegistryCertificate;
  readonly monitoring?: RegistryMonitoring;
  readonly dashboard?: RegistryDashboard;
  readonly podDisruptionBudget?: KubePodDisruptionBudget;
  readonly horizontalPodAutoscaler?: KubeHorizontalPodAutoscalerV2;
  /** Replica count, rollout strategy, anti-affinity, PodDisruptionBudget and autoscaler. */
  readonly scaling: RegistryScaling;
  /** The Deployment and its scaling. */
  readonly workload: RegistryWorkload;
  readonly syncManifest?: RegistrySyncManifest;
  readonly maintenance?: RegistryMaintenanceJobs;
  /** The pre-pull DaemonSet, named `<prefix>-prepull`: order the Deployment after it. */
  readonly prePull?: KubeDaemonSet;
  /** The DaemonSet that points the nodes' runtimes at this registry (`nodeConfig`). */
  readonly nodeConfig?: RegistryNodeConfig;
  /** Labels that select the registry's pods. */
  readonly selectorLabels: Record<string, string>;

  constructor(scope: Construct, id: string, props: LocalRegistryProps = {}) {
    super(scope, id);
    this.namespace = checkDnsLabel("namespace", props.namespace ?? Chart.of(this).namespace ?? "registry");
    this.name = checkDns1035Label("name", props.name ?? "local-registry");
    // The maintenance and pre-pull pods' `app` label is `<name>-maintenance`: a label value.
    checkLabelValue("name (as the label app=<name>-maintenance)", `${this.name}-maintenance`);
    const prefix = props.prefix ?? "registry";
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(prefix) || prefix.length > 40)
      throw new Error(`LocalRegistry: prefix ${JSON.stringify(prefix)} is not a DNS label`);
    const clusterDomain = checkDnsSubdomain("clusterDomain", props.clusterDomain ?? "cluster.local");
    const replicas = props.replicaCount ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1)
      throw new Error(`LocalRegistry: replicaCount must be a positive integer, not ${replicas}`);
    const s3 = props.storage?.s3;
    const autoscaling =
      props.autoscaling !== undefined && (props.autoscaling.enabled ?? true) ? props.autoscaling : undefined;
    // Several replicas need the same blobs (S3) and one view of what is in flight (Redis): upload
    // sessions, the GC guard and lanes, caches. Filesystem storage is one ReadWriteOnce volume.
    const scaling = autoscaling !== undefined ? "autoscaling" : `replicaCount ${replicas}`;
    if ((replicas > 1 || autoscaling !== undefined) && s3 === undefined)
      throw new Error(
        `LocalRegistry: ${scaling} needs shared storage (storage.s3); filesystem storage on a ReadWriteOnce volume serves exactly 1 replica`,
      );
    if ((replicas > 1 || autoscaling !== undefined) && props.redis === undefined)
      throw new Error(
        `LocalRegistry: ${scaling} needs redis (the replicas' shared upload sessions, GC lanes and caches)`,
      );
    if (autoscaling !== undefined && props.replicaCount !== undefined)
      throw new Error(
        "LocalRegistry: replicaCount and autoscaling: the autoscaler sets the count; give autoscaling.minReplicas instead",
      );
    if (s3 !== undefined && props.persistence !== undefined)
      throw new Error(
        "LocalRegistry: persistence is the filesystem storage's volume; with storage.s3 the blobs live in the bucket: drop persistence",
      );
    // The server archives a filesystem storage root (`GET /v2/_neam/backup` refuses S3): a CronJob
    // that fails every night would only look like a backup.
    if (s3 !== undefined && props.backup?.enabled)
      throw new Error(
        "LocalRegistry: backup needs filesystem storage; with storage.s3 the bucket is backed up by the object store (versioning, multisite): drop backup",
      );
    const shared = sharedStorage(s3, props.redis);
    const persistence = { enabled: s3 === undefined, size: "50Gi", ...props.persistence };
    checkQuantity("persistence.size", persistence.size);
    if (persistence.storageClass !== undefined)
      checkDnsSubdomain("persistence.storageClass", persistence.storageClass);
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
    if (auth.existingSecret !== undefined) checkDnsSubdomain("auth.existingSecret", auth.existingSecret);
    if (props.maintenanceCredentials !== undefined)
      checkDnsSubdomain("maintenanceCredentials.secretName", props.maintenanceCredentials.secretName);
    const resources = {
      requests: { cpu: "200m", memory: "512Mi", ...props.resources?.requests },
      limits: { cpu: "1000m", memory: "2Gi", ...props.resources?.limits },
    };
    for (const [kind, values] of Object.entries(resources)) {
      for (const [resource, value] of Object.entries(values))
        checkQuantity(`resources.${kind}.${resource}`, value);
    }
    // The API server refuses a request above its limit.
    for (const resource of ["cpu", "memory"] as const) {
      const request = resources.requests[resource];
      const limit = resources.limits[resource];
      if (
        quantityValue(`resources.requests.${resource}`, request) >
        quantityValue(`resources.limits.${resource}`, limit)
      )
        throw new Error(
          `LocalRegistry: resources.requests.${resource} ${request} is more than resources.limits.${resource} ${limit}`,
        );
    }
    const image = {
      repository: checkImageRepository(
        "image.repository",
        props.image?.repository ?? DEFAULT_IMAGE.repository,
      ),
      tag: checkImageTag("image.tag", props.image?.tag ?? DEFAULT_IMAGE.tag),
      pullPolicy: props.image?.pullPolicy ?? ("IfNotPresent" as const),
    };
    const digest =
      props.image?.digest === undefined ? undefined : checkImageDigest("image.digest", props.image.digest);
    this.image = `${image.repository}:${image.tag}${digest !== undefined ? `@${digest}` : ""}`;
    const pod = props.pod ?? {};
    checkPodProps(pod);
    const service = props.service ?? {};
    const servicePort = checkPort("service.port", service.port ?? REGISTRY_PORT);
    if (props.tls !== undefined) {
      checkDnsSubdomain("tls.secretName", props.tls.secretName);
      if (typeof props.tls.ca === "object") checkDnsSubdomain("tls.ca.secretName", props.tls.ca.secretName);
    }

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

    if (props.createNamespace ?? false) {
      const chart = Chart.of(this);
      const existing = chart.node
        .findAll()
        .find((c) => c instanceof KubeNamespace && c.name === this.namespace);
      if (existing !== undefined)
        throw new Error(
          `LocalRegistry: createNamespace: namespace ${this.namespace} is already created in this chart by ${existing.node.path}; set createNamespace on one registry only`,
        );
      this.namespaceObject = new KubeNamespace(this, "namespace", {
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
    upstreams.forEach((u, i) => {
      for (const [key, secret] of [
        ["passwordSecret", u.passwordSecret],
        ["caSecret", u.caSecret],
      ] as const)
        if (secret !== undefined) checkDnsSubdomain(`upstreams[${i}].${key}.name`, secret.name);
    });
    if (props.proxy?.passwordSecret !== undefined)
      checkDnsSubdomain("proxy.passwordSecret.name", props.proxy.passwordSecret.name);
    const config: ConfigInput = {
      version: "0.1",
      log: { level: props.logLevel ?? "info" },
      ...(props.audit ? { audit: { stdout: true } } : {}),
      storage: {
        ...(s3 === undefined ? { filesystem: { rootdirectory: DATA_DIR } } : {}),
        delete: { enabled: props.deleteEnabled ?? true },
        // The reference's switch for the blob-descriptor cache in Redis (shared by the replicas).
        ...(props.redis !== undefined ? { cache: { blobdescriptor: "redis" as const } } : {}),
      },
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
      ...(upstreams.length > 0 || syncInput !== undefined
        ? {
            sync: {
              // Pulls by upstream name (`?ns=docker.io`) follow the mounted manifest's map.
              ...(syncInput !== undefined ? { manifest: `${SYNC_MANIFEST_DIR}/sync-manifest.yaml` } : {}),
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
    const rendered = renderRegistryConfig(config, {
      ...(shared.s3 !== undefined ? { s3: shared.s3 } : {}),
      ...(shared.redis !== undefined ? { redis: shared.redis } : {}),
    });
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

    // With S3 the blobs live in the bucket: no data volume at all.
    const volumes: Volume[] = [
      { name: "config", configMap: { name: this.configMap.name } },
      ...(s3 !== undefined
        ? []
        : [
            persistence.enabled
              ? { name: "data", persistentVolumeClaim: { claimName: this.persistentVolumeClaim!.name } }
              : { name: "data", emptyDir: {} },
          ]),
      { name: "tmp", emptyDir: {} },
      ...shared.volumes,
    ];
    const mounts: VolumeMount[] = [
      { name: "config", mountPath: CONFIG_DIR, readOnly: true },
      ...(s3 !== undefined ? [] : [{ name: "data", mountPath: DATA_DIR }]),
      { name: "tmp", mountPath: "/tmp" },
      ...shared.mounts,
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
    if (syncInput !== undefined) {
      // A directory mount, not subPath: the kubelet swaps in ConfigMap updates and the registry
      // follows them without a restart.
      volumes.push({ name: "sync-manifest", configMap: { name: `${prefix}-sync-manifest` } });
      mounts.push({ name: "sync-manifest", mountPath: SYNC_MANIFEST_DIR, readOnly: true });
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

    const monitoringOn = props.monitoring?.enabled ?? false;
    const serviceMonitorOn = monitoringOn && (props.monitoring?.serviceMonitor?.enabled ?? true);
    for (const key of Object.keys({ ...service.annotations, ...pod.annotations })) {
      // A ServiceMonitor already scrapes the metrics port; annotation discovery would scrape it
      // again (and, on the Service, its first port: the registry port, plain HTTP against TLS).
      if (key.startsWith("prometheus.io/") && serviceMonitorOn)
        throw new Error(
          `LocalRegistry: service/pod annotation ${key} scrapes the registry a second time beside the ServiceMonitor; drop it`,
        );
    }

    // A change of config or users rolls the pods (the registry also reloads htpasswd itself).
    const checksum = createHash("sha256")
      .update(rendered.yaml)
      .update("\0")
      .update(auth.htpasswd ?? "")
      .digest("hex");
    for (const variable of shared.env)
      if (pod.env?.some((e) => e.name === variable.name))
        throw new Error(
          `LocalRegistry: pod.env ${variable.name} is the construct's own (set from storage.s3 or redis)`,
        );
    this.workload = new RegistryWorkload(this, "workload", {
      namespace: this.namespace,
      name: this.name,
      labels,
      selectorLabels: this.selectorLabels,
      image: this.image,
      imagePullPolicy: image.pullPolicy,
      args: ["serve", `${CONFIG_DIR}/config.yml`],
      pod,
      podAnnotations: {
        ...pod.annotations,
        "checksum/config": checksum,
        // Annotation-based discovery only when no ServiceMonitor scrapes (never both).
        ...(serviceMonitorOn
          ? {}
          : {
              "prometheus.io/scrape": "true",
              "prometheus.io/port": String(METRICS_PORT),
              "prometheus.io/path": "/metrics",
            }),
      },
      env: [...shared.env, ...(pod.env ?? [])],
      resources,
      volumes,
      mounts,
      runAs: RUN_AS,
      sharedStorage: s3 !== undefined,
      redis: props.redis !== undefined,
      scaling: {
        replicas,
        ...(autoscaling !== undefined ? { autoscaling } : {}),
        ...(props.podDisruptionBudget !== undefined
          ? { podDisruptionBudget: props.podDisruptionBudget }
          : {}),
        sharedState: props.redis !== undefined,
        ...(props.podAntiAffinity !== undefined ? { podAntiAffinity: props.podAntiAffinity } : {}),
      },
    });
    this.deployment = this.workload.deployment;
    this.scaling = this.workload.scaling;
    this.podDisruptionBudget = this.scaling.podDisruptionBudget;
    this.horizontalPodAutoscaler = this.scaling.horizontalPodAutoscaler;

    if (props.tls?.certificate) {
      this.certificate = new RegistryCertificate(this, "certificate", {
        namespace: this.namespace,
        name: `${prefix}-tls`,
        secretName: props.tls.secretName,
        issuer: props.tls.certificate.issuer,
        ...(props.tls.certificate.keyAlgorithm !== undefined
          ? { keyAlgorithm: props.tls.certificate.keyAlgorithm }
          : {}),
        // The names clients use (the guide's `local-registry:5000` from the namespace, and from
        // others), and the Service name the maintenance CronJobs connect to.
        dnsNames: nonEmpty("tls.dnsNames", props.tls.certificate.dnsNames) && [
          ...(props.tls.certificate.dnsNames ?? ["local-registry.neam.internal"]),
          this.name,
          `${this.name}.${this.namespace}`,
          `${this.name}.${this.namespace}.svc`,
          `${this.name}.${this.namespace}.svc.${clusterDomain}`,
        ],
      });
    }
    if (syncInput !== undefined)
      this.syncManifest = new RegistrySyncManifest(this, "sync-manifest", {
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
    if (this.syncManifest !== undefined || gcEnabled || props.backup?.enabled) {
      if (auth.enabled && props.maintenanceCredentials === undefined)
        throw new Error(
          "LocalRegistry: auth.enabled with sync, gc or backup needs maintenanceCredentials (a Secret with an admin's username and password)",
        );
      const tlsCa = props.tls?.ca;
      this.maintenance = new RegistryMaintenanceJobs(this, "maintenance", {
        namespace: this.namespace,
        prefix,
        image: this.image,
        imagePullPolicy: image.pullPolicy,
        registryUrl: `${props.tls ? "https" : "http"}://${this.name}.${this.namespace}.svc:${servicePort}`,
        podLabels: maintenanceLabels,
        ...(props.tls === undefined || tlsCa === "system"
          ? {}
          : {
              ca:
                tlsCa === undefined
                  ? { secretName: props.tls.secretName, key: "ca.crt", optional: true }
                  : { secretName: tlsCa.secretName, key: tlsCa.key ?? "ca.crt" },
            }),
        ...(auth.enabled ? { credentials: props.maintenanceCredentials } : {}),
        ...(this.syncManifest !== undefined
          ? {
              sync: { configMapName: this.syncManifest.configMap.name, manifest: this.syncManifest.manifest },
            }
          : {}),
        gc: props.gc,
        backup: props.backup,
        runAs: RUN_AS,
        pod,
      });
    }

    const prePullLabels = {
      app: `${this.name}-prepull`,
      "app.kubernetes.io/name": "neam-registry",
      "app.kubernetes.io/instance": this.name,
      "app.kubernetes.io/component": "prepull",
    };
    if (props.prePull?.enabled) {
      this.prePull = prePullDaemonSet(this, {
        name: `${prefix}-prepull`,
        namespace: this.namespace,
        labels: prePullLabels,
        image: this.image,
        pullPolicy: image.pullPolicy,
        pod,
        prePull: props.prePull,
      });
    }

    if (props.nodeConfig !== undefined) {
      if (syncInput === undefined)
        throw new Error("LocalRegistry: nodeConfig needs sync (the upstream names to send to the registry)");
      const dnsName = props.tls?.certificate?.dnsNames?.[0];
      const registryUrl =
        props.nodeConfig.registryUrl ??
        (props.tls !== undefined && dnsName !== undefined ? `https://${dnsName}:${servicePort}` : undefined);
      if (registryUrl === undefined)
        throw new Error("LocalRegistry: nodeConfig.registryUrl is required without tls.certificate.dnsNames");
      const ca =
        props.tls === undefined || props.tls.ca === "system"
          ? undefined
          : (props.tls.ca ?? { secretName: props.tls.secretName, key: "ca.crt" });
      this.nodeConfig = new RegistryNodeConfig(this, "node-config", {
        namespace: this.namespace,
        prefix,
        runtime: props.nodeConfig.runtime,
        registryUrl,
        syncManifest: { sync: syncInput },
        image: this.image,
        ...(ca !== undefined ? { ca } : {}),
        ...(props.nodeConfig.hostDir !== undefined ? { hostDir: props.nodeConfig.hostDir } : {}),
      });
    }

    const networkPolicy = props.networkPolicy ?? {};
    const serviceType = service.type ?? "ClusterIP";
    if (networkPolicy.enabled ?? true) {
      if (
        serviceType !== "ClusterIP" &&
        (networkPolicy.externalCidrs ?? []).length === 0 &&
        !networkPolicy.allowFromAnywhere
      )
        throw new Error(
          `LocalRegistry: networkPolicy.externalCidrs is required with service.type ${serviceType} (the clients outside the cluster), or set networkPolicy.allowFromAnywhere`,
        );
      this.networkPolicy = new RegistryNetworkPolicy(this, "network-policy", {
        namespace: this.namespace,
        name: this.name,
        selectorLabels: this.selectorLabels,
        registryPort: REGISTRY_PORT,
        metricsPort: METRICS_PORT,
        ...(networkPolicy.clientNamespaces !== undefined
          ? { clientNamespaces: networkPolicy.clientNamespaces }
          : {}),
        ...(networkPolicy.nodeCidrs !== undefined ? { nodeCidrs: networkPolicy.nodeCidrs } : {}),
        ...(networkPolicy.externalCidrs !== undefined ? { externalCidrs: networkPolicy.externalCidrs } : {}),
        ...(networkPolicy.allowFromAnywhere !== undefined
          ? { allowFromAnywhere: networkPolicy.allowFromAnywhere }
          : {}),
        ...(networkPolicy.monitoringNamespace !== undefined
          ? { monitoringNamespace: networkPolicy.monitoringNamespace }
          : {}),
        ...(networkPolicy.dns !== undefined ? { dns: networkPolicy.dns } : {}),
        egress: [...upstreamEgress(upstreams, this.syncManifest, props.proxy), ...requiredEgress(shared)],
        ...(this.maintenance !== undefined ? { maintenanceLabels } : {}),
        ...(this.prePull !== undefined ? { prePullLabels } : {}),
      });
    }
    if (serviceMonitorOn) {
      this.monitoring = new RegistryMonitoring(this, "monitoring", {
        namespace: this.namespace,
        serviceName: this.name,
        selectorLabels: this.selectorLabels,
        interval: props.monitoring?.serviceMonitor?.interval,
        ...(props.monitoring?.serviceMonitor?.scrapeTimeout !== undefined
          ? { scrapeTimeout: props.monitoring.serviceMonitor.scrapeTimeout }
          : {}),
        prometheusLabels: props.monitoring?.prometheusLabels,
      });
    }

    if (monitoringOn && (props.monitoring?.dashboard ?? true)) {
      this.dashboard = new RegistryDashboard(this, "dashboard", {
        namespace: this.namespace,
        job: this.name,
      });
    }

    const loadBalancerSourceRanges =
      serviceType === "LoadBalancer" && networkPolicy.externalCidrs !== undefined
        ? { loadBalancerSourceRanges: [...networkPolicy.externalCidrs] }
        : {};
    this.service = new KubeService(this, "service", {
      metadata: { ...metadata(this.name), annotations: { ...service.annotations } },
      spec: {
        type: serviceType,
        selector: this.selectorLabels,
        ...loadBalancerSourceRanges,
        ports: [
          {
            name: "registry",
            port: servicePort,
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

/** The API server's rules for the pod hooks. */
function checkPodProps(pod: PodProps): void {
  if (pod.priorityClassName !== undefined) checkDnsSubdomain("pod.priorityClassName", pod.priorityClassName);
  if (pod.serviceAccountName !== undefined)
    checkDnsSubdomain("pod.serviceAccountName", pod.serviceAccountName);
  for (const name of pod.imagePullSecrets ?? []) checkDnsSubdomain("pod.imagePullSecrets", name);
  for (const [key, value] of Object.entries(pod.nodeSelector ?? {}))
    checkLabelValue(`pod.nodeSelector.${key}`, value);
  for (const env of pod.env ?? []) {
    if (!/^[-._a-zA-Z][-._a-zA-Z0-9]*$/.test(env.name))
      throw new Error(
        `LocalRegistry: pod.env ${JSON.stringify(env.name)} is not an environment variable name`,
      );
  }
  if (pod.annotations?.["checksum/config"] !== undefined)
    throw new Error(
      "LocalRegistry: pod.annotations checksum/config is the construct's own (it rolls the pods)",
    );
}

/**
 * The egress the registry pods need for sync and the pull-through cache: every upstream host the
 * sync manifest or `proxy.remoteUrl` names must have an `upstreams` entry with `egress`, whose
 * CIDRs are opened on the port of the URL the registry really connects to. Anything missing
 * fails synth naming the image, instead of a sync that times out in the cluster.
 */
function upstreamEgress(
  upstreams: readonly UpstreamProps[],
  syncManifest: RegistrySyncManifest | undefined,
  proxy: ProxyProps | undefined,
): EgressTarget[] {
  const targets: EgressTarget[] = [];
  upstreams.forEach((u, i) => {
    if (u.egress === undefined) return;
    targets.push({ cidrs: u.egress.cidrs, port: urlPort(u.url ?? defaultUpstreamUrl(u.registry)) });
    if (u.egress.cidrs.length === 0)
      throw new Error(`LocalRegistry: upstreams[${i}].egress.cidrs needs at least one CIDR`);
  });
  const require = (host: string, what: string, match: (u: UpstreamProps) => boolean) => {
    const upstream = upstreams.find(match);
    if (upstream === undefined)
      throw new Error(
        `LocalRegistry: ${what}: no upstreams entry for ${host}; map it to a site mirror (url) with egress.cidrs, or the NetworkPolicy blocks the fetch`,
      );
    if (upstream.egress === undefined)
      throw new Error(
        `LocalRegistry: ${what}: upstreams entry ${upstream.registry} has no egress.cidrs, so the NetworkPolicy blocks the fetch`,
      );
  };
  for (const image of syncManifest?.manifest.sync.images ?? []) {
    // The host part, as the server's parseImageReference splits it.
    const host = image.source.slice(0, image.source.indexOf("/"));
    require(host, `sync image ${image.source}`, (u) => u.registry === host);
  }
  if (proxy !== undefined) {
    const host = new URL(proxy.remoteUrl).host;
    require(host, `proxy.remoteUrl ${proxy.remoteUrl}`, (u) =>
      u.registry === host || (u.url !== undefined && new URL(u.url).host === host));
    const upstream = upstreams.find(
      (u) => u.registry === host || (u.url !== undefined && new URL(u.url).host === host),
    )!;
    targets.push({ cidrs: upstream.egress!.cidrs, port: urlPort(proxy.remoteUrl) });
  }
  // One rule per distinct destination.
  const seen = new Set<string>();
  return targets.filter((t) => {
    const key = `${[...(t.cidrs ?? [])].sort().join(",")}:${t.port}`;
    return !seen.has(key) && seen.add(key) !== undefined;
  });
}

/** Where the server reaches an upstream its config does not give a URL for (server/src/sync/upstreams.ts). */
function defaultUpstreamUrl(registry: string): string {
  return registry === "docker.io" ? "https://registry-1.docker.io" : `https://${registry}`;
}

function urlPort(url: string): number {
  const parsed = new URL(url);
  return parsed.port !== "" ? Number(parsed.port) : parsed.protocol === "http:" ? 80 : 443;
}

function prePullDaemonSet(
  scope: Construct,
  options: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    image: string;
    pullPolicy: "Always" | "IfNotPresent" | "Never";
    pod: PodProps;
    prePull: PrePullProps;
  },
): KubeDaemonSet {
  const { pod, prePull } = options;
  const tolerations = [...(pod.tolerations ?? []), ...(prePull.tolerations ?? [])];
  const nodeSelector = prePull.nodeSelector ?? pod.nodeSelector;
  const nodeAffinity = pod.affinity?.nodeAffinity;
  const tiny = {
    requests: { cpu: Quantity.fromString("1m"), memory: Quantity.fromString("16Mi") },
    limits: { cpu: Quantity.fromString("100m"), memory: Quantity.fromString("128Mi") },
  };
  const container = (name: string, script: string) => ({
    name,
    image: options.image,
    imagePullPolicy: options.pullPolicy,
    command: ["node", "-e", script],
    securityContext: containerSecurityContext(),
    resources: tiny,
  });
  return new KubeDaemonSet(scope, "prepull", {
    metadata: { name: options.name, namespace: options.namespace, labels: options.labels },
    spec: {
      selector: { matchLabels: options.labels },
      // The pods serve nothing: replace them all at once, so the pull starts on every node.
      updateStrategy: {
        type: "RollingUpdate",
        rollingUpdate: { maxUnavailable: IntOrString.fromString("100%") },
      },
      template: {
        metadata: { labels: options.labels },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: 1,
          securityContext: podSecurityContext(RUN_AS),
          ...(tolerations.length > 0 ? { tolerations } : {}),
          ...(nodeSelector !== undefined ? { nodeSelector: { ...nodeSelector } } : {}),
          ...(nodeAffinity !== undefined ? { affinity: { nodeAffinity } } : {}),
          ...(pod.imagePullSecrets !== undefined
            ? { imagePullSecrets: pod.imagePullSecrets.map((name) => ({ name })) }
            : {}),
          // The init container pulls the image and exits; the main one (the same image, so no
          // second pull) only keeps the pod Ready, which is what `rollout status` waits for.
          initContainers: [container("pull", "")],
          containers: [
            container(
              "hold",
              "process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 2 ** 30);",
            ),
          ],
        },
      },
    },
  });
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
