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
    tls: {
      secretName: "registry-tls-secret",
      certificate: {
        issuer: { name: "neam-internal-ca", kind: "ClusterIssuer" },
        dnsNames: ["local-registry.neam.internal"],
      },
    },
    networkPolicy: { enabled: true, clientNamespaces: ["default"], monitoringNamespace: "monitoring" },
    monitoring: { enabled: true, serviceMonitor: { enabled: true, interval: "15s" } },
  },
};
