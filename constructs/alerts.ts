import { METRICS } from "../server/src/contract/index.js";

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
  /** Hours without a successful sync after which sync is stale. @default 26 (a daily schedule, with slack) */
  readonly syncStaleAfterHours?: number;
  /** Hours without a successful garbage collection after which GC is stale. @default 194 (weekly, with slack) */
  readonly gcStaleAfterHours?: number;
  /** Hours without a successful backup after which backups are stale (when scheduled). @default 26 */
  readonly backupStaleAfterHours?: number;
  /** Days before the served certificate expires at which to warn. @default 14 */
  readonly certificateExpiryDays?: number;
}

/**
 * The registry's alerts, written against the metric names the server exports (server/src/metrics/names.ts):
 * the guide's three (down, high error rate, storage full), a replica down beside others that
 * serve, slow manifest serving, sync, garbage
 * collection and backups failing or stale (they never fire for a task that never ran), and a
 * certificate near its expiry.
 */
export function registryAlerts(options: AlertOptions): AlertRule[] {
  const job = `job="${options.job}"`;
  const m = METRICS;
  return [
    {
      alert: "RegistryDown",
      // Down means no replica answers: with several, one down while others serve is
      // RegistryReplicaDown. `up == 0` needs a target: a Pending pod, or a Service without
      // endpoints, has none, so `absent` covers the registry that never came up.
      expr: `(up{${job}} == 0 unless on (job) sum by (job) (up{${job}}) > 0) or absent(up{${job}})`,
      for: "1m",
      labels: { severity: "critical" },
      annotations: {
        summary: "Registry is down",
        description:
          "{{ with $labels.instance }}Prometheus cannot scrape {{ . }}.{{ else }}Prometheus has no scrape target for the registry (pod not running, or no ServiceMonitor match).{{ end }}",
      },
    },
    {
      alert: "RegistryReplicaDown",
      expr: `up{${job}} == 0 and on (job) sum by (job) (up{${job}}) > 0`,
      for: "5m",
      labels: { severity: "warning" },
      annotations: {
        summary: "A registry replica is down",
        description:
          "Prometheus cannot scrape {{ $labels.instance }}; the other replicas serve. Its node, or its start (S3, Redis), is the place to look.",
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
    ...taskAlerts("sync", "RegistrySync", "Image sync", options.syncStaleAfterHours ?? 26, job),
    ...taskAlerts(
      "gc",
      "RegistryGarbageCollection",
      "Garbage collection",
      options.gcStaleAfterHours ?? 194,
      job,
    ),
    ...taskAlerts("backup", "RegistryBackup", "Backup", options.backupStaleAfterHours ?? 26, job),
    {
      alert: "RegistryCertificateExpiringSoon",
      expr: `${m.tlsCertificateExpiryTimestampSeconds}{${job}} - time() < ${(options.certificateExpiryDays ?? 14) * 86400}`,
      for: "1h",
      labels: { severity: "warning" },
      annotations: {
        summary: "Registry certificate expires soon",
        description:
          "The certificate served by {{ $labels.instance }} expires in {{ $value | humanizeDuration }}; cert-manager has not renewed it, or the registry cannot read the renewal.",
      },
    },
  ];
}

/** A maintenance task's last run failed, or it has not succeeded for too long (registry_task_* gauges). */
function taskAlerts(
  task: string,
  prefix: string,
  title: string,
  staleAfterHours: number,
  job: string,
): AlertRule[] {
  const m = METRICS;
  const selector = `{${job},task="${task}"}`;
  return [
    {
      alert: `${prefix}Failing`,
      expr: `${m.taskLastRunSuccess}${selector} == 0`,
      for: "5m",
      labels: { severity: "warning" },
      annotations: {
        summary: `${title} failed`,
        description: `The last ${task} run failed; \`curl /v2/_neam/status\` or the CronJob's logs say why.`,
      },
    },
    {
      alert: `${prefix}Stale`,
      expr: `time() - ${m.taskLastSuccessTimestampSeconds}${selector} > ${staleAfterHours * 3600}`,
      for: "15m",
      labels: { severity: "warning" },
      annotations: {
        summary: `${title} has not succeeded for ${staleAfterHours} hours`,
        description: `The last successful ${task} run was {{ $value | humanizeDuration }} ago; check the CronJob.`,
      },
    },
  ];
}
