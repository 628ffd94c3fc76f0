import { METRICS } from "../server/src/index.js";

/** One alerting rule, in the shape Prometheus (and the PrometheusRule CRD) takes. */
export interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  readonly for: string;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
}

export interface AlertOptions {
  /** The Prometheus `job` of the registry's scrape target (the Service name under a ServiceMonitor). */
  readonly job: string;
  /** Share of 5xx answers that pages. @default 0.1 */
  readonly errorRatio?: number;
  /** Free share of the volume under which storage is "full". @default 0.1 */
  readonly freeRatio?: number;
  /** p99 of manifest requests, in seconds, above which the registry is slow. @default 1 */
  readonly manifestP99Seconds?: number;
}

/**
 * The registry's alerts, written against the metric names the server exports (server/src/metrics/names.ts):
 * the guide's three (down, high error rate, storage full) plus slow manifest serving.
 */
export function registryAlerts(options: AlertOptions): AlertRule[] {
  const job = `job="${options.job}"`;
  const m = METRICS;
  return [
    {
      alert: "RegistryDown",
      expr: `up{${job}} == 0`,
      for: "1m",
      labels: { severity: "critical" },
      annotations: {
        summary: "Registry is down",
        description: "Prometheus cannot scrape {{ $labels.instance }}.",
      },
    },
    {
      alert: "RegistryHighErrorRate",
      expr:
        `sum by (job) (rate(${m.httpRequestsTotal}{${job},status=~"5.."}[5m]))` +
        ` / sum by (job) (rate(${m.httpRequestsTotal}{${job}}[5m])) > ${options.errorRatio ?? 0.1}`,
      for: "5m",
      labels: { severity: "warning" },
      annotations: {
        summary: "High error rate on registry",
        description: "{{ $value | humanizePercentage }} of requests fail with 5xx.",
      },
    },
    {
      alert: "RegistryStorageFull",
      expr: `${m.storageFreeBytes}{${job}} / ${m.storageCapacityBytes}{${job}} < ${options.freeRatio ?? 0.1}`,
      for: "10m",
      labels: { severity: "warning" },
      annotations: {
        summary: "Registry storage is low",
        description: "{{ $value | humanizePercentage }} of the registry volume is free.",
      },
    },
    {
      alert: "RegistryHighLatency",
      expr:
        `histogram_quantile(0.99, sum by (le) (rate(${m.httpRequestDurationSeconds}_bucket{${job},route="manifest"}[5m])))` +
        ` > ${options.manifestP99Seconds ?? 1}`,
      for: "10m",
      labels: { severity: "warning" },
      annotations: {
        summary: "Registry is slow",
        description: "p99 of manifest requests is {{ $value | humanizeDuration }}.",
      },
    },
  ];
}
