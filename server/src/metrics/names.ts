/**
 * Every metric the registry exports, by name. The constructs' alert rules and dashboard import
 * these, and a test checks each PromQL name against this list: one source of truth.
 */
export const METRICS = {
  httpRequestsTotal: "http_requests_total",
  httpRequestDurationSeconds: "http_request_duration_seconds",
  httpResponseSizeBytes: "http_response_size_bytes",
  httpRequestsInFlight: "http_requests_in_flight",
  storageBytes: "storage_bytes",
  storageFreeBytes: "storage_free_bytes",
  storageCapacityBytes: "storage_capacity_bytes",
  repositoryCount: "repository_count",
  manifestCount: "manifest_count",
  blobCount: "blob_count",
  storageScanTimestampSeconds: "storage_scan_timestamp_seconds",
  storageStatsComplete: "storage_stats_complete",
  uploadBytesTotal: "registry_upload_bytes_total",
  buildInfo: "registry_build_info",
  taskLastRunTimestampSeconds: "registry_task_last_run_timestamp_seconds",
  taskLastSuccessTimestampSeconds: "registry_task_last_success_timestamp_seconds",
  taskLastRunSuccess: "registry_task_last_run_success",
  taskLastRunDurationSeconds: "registry_task_last_run_duration_seconds",
  taskLastRunItems: "registry_task_last_run_items",
  tlsCertificateExpiryTimestampSeconds: "registry_tls_certificate_expiry_timestamp_seconds",
  notificationPendingEvents: "registry_notification_pending_events",
  proxyLookupsTotal: "registry_proxy_lookups_total",
  proxyFetchedBytesTotal: "registry_proxy_fetched_bytes_total",
  proxyUpstreamErrorsTotal: "registry_proxy_upstream_errors_total",
  notificationDeliveries: "registry_notification_deliveries",
} as const;

export type MetricName = (typeof METRICS)[keyof typeof METRICS];
