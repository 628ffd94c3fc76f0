import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.js";
import { parseDuration } from "../config/duration.js";
import type { CollectionReport } from "../gc/collector.js";
import { DEFAULT_GC_GRACE } from "../http/admin.js";
import { createLogger } from "../log.js";
import { Maintenance } from "../maintenance/maintenance.js";
import { TaskStatusStore } from "../maintenance/status.js";
import { Registry } from "../registry/registry.js";
import { openStorage } from "../storage/open.js";
import { adminRequest, adminTarget, PASSWORD_ENV, USERNAME_ENV } from "./admin-client.js";

export const GC_USAGE = `  gc [--url URL] [--untagged] [--dry-run] [--grace DURATION] [--ca FILE] [--json]
                                 ask the running registry to collect garbage (online, safe during pushes);
                                 credentials from ${USERNAME_ENV} / ${PASSWORD_ENV}
  gc --offline --config FILE [--untagged] [--dry-run] [--grace DURATION] [--json]
                                 collect in the storage directly; the registry must be stopped or read-only
  garbage-collect [--dry-run] [--delete-untagged] FILE
                                 the reference registry's offline command, same flags
`;

/** `gc` (ours) and `garbage-collect` (the reference registry's spelling, offline). */
export async function gcCommand(args: string[], referenceSpelling: boolean): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: referenceSpelling,
    strict: true,
    options: {
      url: { type: "string", default: "http://localhost:5000" },
      untagged: { type: "boolean", default: false },
      "delete-untagged": { type: "boolean", short: "m", default: false },
      "dry-run": { type: "boolean", short: "d", default: false },
      grace: { type: "string", default: DEFAULT_GC_GRACE },
      ca: { type: "string" },
      json: { type: "boolean", default: false },
      offline: { type: "boolean", default: referenceSpelling },
      config: { type: "string" },
    },
  });
  const deleteUntagged = values.untagged || values["delete-untagged"];
  const dryRun = values["dry-run"];
  const gracePeriodMs = parseDuration(values.grace);
  let report: CollectionReport;
  if (values.offline) {
    const configPath = values.config ?? positionals[0];
    if (configPath === undefined) throw new Error("offline garbage collection needs --config FILE");
    const config = loadConfig(configPath);
    const driver = await openStorage(config, { init: true });
    const registry = new Registry(driver, {
      deleteEnabled: config.storage.delete.enabled,
      maxManifestBytes: config.http.maxmanifestbytes,
    });
    const logger = createLogger({ ...config.log, level: "warn" });
    const maintenance = new Maintenance(registry, new TaskStatusStore(driver), logger);
    // Offline means nothing else writes: no grace needed unless asked for.
    report = await maintenance.collectGarbage({
      deleteUntagged,
      dryRun,
      gracePeriodMs: args.includes("--grace") ? gracePeriodMs : 0,
    });
  } else {
    const query = new URLSearchParams({
      untagged: String(deleteUntagged),
      dryrun: String(dryRun),
      grace: values.grace,
    });
    report = (await adminRequest(
      adminTarget(values.url, values.ca),
      "POST",
      `/v2/_oci/artifacts/delete?${query}`,
    )) as CollectionReport;
  }
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : describe(report));
  return 0;
}

function describe(report: CollectionReport): string {
  const verb = report.dryRun ? "eligible for deletion" : "deleted";
  const lines = [
    ...report.manifestsDeleted.map((m) => `manifest ${verb}: ${m}`),
    ...report.blobsDeleted.map((b) => `blob ${verb}: ${b}`),
    ...report.warnings.map((w) => `warning: ${w}`),
    `gc${report.dryRun ? " (dry run)" : ""}: ${report.repositories} repositories, ` +
      `${report.manifestsDeleted.length} manifests and ${report.blobsDeleted.length} blobs ${verb}, ` +
      `${report.bytesFreed} bytes ${report.dryRun ? "to free" : "freed"}, ${report.blobsKept} blobs kept, ` +
      `${report.blobsSpared} unreferenced kept (younger than the grace period or in use), ` +
      `${report.durationSeconds.toFixed(2)} s`,
  ];
  return `${lines.join("\n")}\n`;
}
