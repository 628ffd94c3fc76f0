import type { LocalRegistryProps } from "../constructs/index.js";

/**
 * The environments the cdk8s app synthesizes. `production` is the operations guide's
 * values-production.yaml on an air-gapped site: the registry serves its own image (loaded onto
 * the nodes once with `ctr -n k8s.io images import`, pre-pulled before each upgrade), and syncs
 * from the site's mirrors, never from the internet. `dev` is a throwaway registry on an emptyDir
 * (a kind cluster: nodes on the 172.18.0.0/16 docker network). `scaleout` is production on a
 * site that outgrew one pod: the same registry, with its blobs in a Ceph bucket (Rook's RGW) and
 * its shared state in Redis, three to six replicas behind the one Service. The address ranges
 * are the site's: change them to yours.
 */
const DEV: LocalRegistryProps = {
  namespace: "registry-dev",
  createNamespace: true,
  networkPolicy: { nodeCidrs: ["172.18.0.0/16"] },
  persistence: { enabled: false },
  resources: { requests: { cpu: "50m", memory: "128Mi" }, limits: { cpu: "500m", memory: "512Mi" } },
  logLevel: "debug",
};

const PRODUCTION: LocalRegistryProps = {
  namespace: "registry",
  createNamespace: true,
  replicaCount: 1,
  // Served by this registry itself (the certificate names local-registry.neam.internal); the tag
  // is the package's version (DEFAULT_IMAGE), so a release changes it in one place.
  image: { repository: "local-registry.neam.internal:5000/neam-registry", pullPolicy: "IfNotPresent" },
  prePull: { enabled: true },
  // Every node's containerd sends pulls of the sync manifest's upstream names (docker.io/…,
  // gcr.io/…) here: workloads keep their upstream image names.
  nodeConfig: { runtime: "containerd" },
  persistence: { enabled: true, storageClass: "fast-regional", size: "100Gi" },
  // No prometheus.io annotations: the ServiceMonitor scrapes the metrics port (once).
  service: { type: "ClusterIP", port: 5000 },
  resources: { requests: { cpu: "200m", memory: "512Mi" }, limits: { cpu: "1000m", memory: "2Gi" } },
  auth: { enabled: true, existingSecret: "registry-htpasswd" },
  // An htpasswd user's name and password, for the sync, GC and backup CronJobs (kubectl create secret generic).
  maintenanceCredentials: { secretName: "registry-maintenance" },
  // The guide backs the registry up daily and restores from the archive (its "Backup and
  // Recovery"): `registry-backup` takes an online, consistent archive every night at 01:00, after
  // the 00:00 sync and before the per-image syncs and Sunday's GC, onto a volume of its own (the
  // cluster's default StorageClass, so not the data volume's failure domain). Layers are already
  // compressed, so each archive is about as large as the data, and the newest is written before
  // the oldest goes: the volume holds keep + 1 full copies of the 100Gi data volume.
  // RegistryBackupFailing/Stale alert when a night is missed.
  backup: { enabled: true, schedule: "0 1 * * *", keep: 7, size: "800Gi" },
  tls: {
    secretName: "registry-tls-secret",
    certificate: {
      issuer: { name: "neam-internal-ca", kind: "ClusterIssuer" },
      dnsNames: ["local-registry.neam.internal"],
    },
  },
  networkPolicy: {
    enabled: true,
    clientNamespaces: ["default"],
    // The nodes' addresses: containerd pulls from there.
    nodeCidrs: ["10.10.0.0/24"],
    monitoringNamespace: "monitoring",
  },
  // The site's mirrors of the upstreams the sync manifest names; their certificates are signed
  // by the site CA in the `site-mirror-ca` Secret.
  upstreams: [
    {
      registry: "docker.io",
      url: "https://dockerhub-mirror.neam.internal",
      caSecret: { name: "site-mirror-ca" },
      egress: { cidrs: ["10.20.0.10/32"] },
    },
    {
      registry: "gcr.io",
      url: "https://gcr-mirror.neam.internal",
      caSecret: { name: "site-mirror-ca" },
      egress: { cidrs: ["10.20.0.11/32"] },
    },
  ],
  audit: true,
  monitoring: { enabled: true, serviceMonitor: { enabled: true, interval: "15s" } },
  sync: {
    frequency: "daily",
    images: [
      {
        source: "docker.io/library/nginx:1.25-alpine",
        target: "local-registry:5000/nginx:1.25-alpine",
        platform: "linux/amd64",
        schedule: "0 2 * * *",
      },
      {
        source: "gcr.io/spiffe-io/spire-server:1.8.0",
        target: "local-registry:5000/spiffe-io/spire-server:1.8.0",
        platform: "linux/amd64",
        schedule: "0 3 * * *",
      },
    ],
    policies: { keep_last_versions: 3, max_image_age_days: 30, cleanup_unused: true },
  },
};

/**
 * `scaleout`: production's registry, its blobs in an S3 bucket on the cluster's Ceph (Rook's
 * object store `registry-store`; the bucket and its credentials from an ObjectBucketClaim named
 * `registry-bucket`), its shared state in a Redis in the registry's namespace. No volume: any
 * replica serves any request, so the Deployment rolls one pod at a time and the autoscaler adds
 * replicas under load.
 */
const {
  persistence: _filesystemVolume,
  replicaCount: _fixedCount,
  // `neam-registry backup` archives a filesystem storage root; the bucket is backed up by the
  // object store (Ceph multisite or bucket versioning), and the constructs refuse backup with s3.
  backup: _filesystemBackup,
  ...PRODUCTION_WITHOUT_VOLUME
} = PRODUCTION;
const SCALEOUT: LocalRegistryProps = {
  ...PRODUCTION_WITHOUT_VOLUME,
  storage: {
    s3: {
      bucket: "neam-registry",
      region: "us-east-1",
      // Rook's RGW Service (port 80); its pods listen on 8080, which is what the policy sees.
      regionEndpoint: "http://rook-ceph-rgw-registry-store.rook-ceph.svc",
      forcePathStyle: true,
      credentialsSecret: { name: "registry-bucket" },
      egress: {
        pods: { namespace: "rook-ceph", labels: { app: "rook-ceph-rgw", rgw: "registry-store" } },
        port: 8080,
      },
    },
  },
  redis: {
    addr: "registry-redis.registry.svc:6379",
    passwordSecret: { name: "registry-redis", key: "password" },
    egress: { pods: { namespace: "registry", labels: { app: "registry-redis" } } },
  },
  autoscaling: { minReplicas: 3, maxReplicas: 6, targetCpuUtilization: 70 },
};

export const ENVIRONMENTS: Record<string, LocalRegistryProps> = {
  dev: DEV,
  production: PRODUCTION,
  scaleout: SCALEOUT,
};
