import type { LocalRegistryProps } from "../constructs/index.js";

/**
 * The environments the cdk8s app synthesizes. `production` is the operations guide's
 * values-production.yaml; `dev` is a throwaway registry on an emptyDir.
 */
export const ENVIRONMENTS: Record<string, LocalRegistryProps> = {
  dev: {
    namespace: "registry-dev",
    persistence: { enabled: false },
    resources: { requests: { cpu: "50m", memory: "128Mi" }, limits: { cpu: "500m", memory: "512Mi" } },
    logLevel: "debug",
  },
  production: {
    namespace: "registry",
    replicaCount: 1,
    image: { repository: "registry.neam.internal/neam-registry", tag: "0.1.0" },
    persistence: { enabled: true, storageClass: "fast-regional", size: "100Gi" },
    service: { type: "ClusterIP", port: 5000, annotations: { "prometheus.io/scrape": "true" } },
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
    networkPolicy: { enabled: true, clientNamespaces: ["default"], monitoringNamespace: "monitoring" },
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
