import type { LocalRegistryProps } from "../constructs/index.js";

/**
 * The environments the cdk8s app synthesizes. `production` is the operations guide's
 * values-production.yaml on an air-gapped site: the registry serves its own image (loaded onto
 * the nodes once with `ctr -n k8s.io images import`, pre-pulled before each upgrade), and syncs
 * from the site's mirrors, never from the internet. `dev` is a throwaway registry on an emptyDir
 * (a kind cluster: nodes on the 172.18.0.0/16 docker network). The address ranges are the site's:
 * change them to yours.
 */
export const ENVIRONMENTS: Record<string, LocalRegistryProps> = {
  dev: {
    namespace: "registry-dev",
    createNamespace: true,
    networkPolicy: { nodeCidrs: ["172.18.0.0/16"] },
    persistence: { enabled: false },
    resources: { requests: { cpu: "50m", memory: "128Mi" }, limits: { cpu: "500m", memory: "512Mi" } },
    logLevel: "debug",
  },
  production: {
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
    // An htpasswd user's name and password, for the sync and GC CronJobs (kubectl create secret generic).
    maintenanceCredentials: { secretName: "registry-maintenance" },
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
  },
};
