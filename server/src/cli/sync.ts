import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { isCronExpression, parseSyncManifest } from "../sync/manifest.js";
import type { SyncReport } from "../sync/syncer.js";
import { adminRequest, adminTarget, PASSWORD_ENV, USERNAME_ENV } from "./admin-client.js";

export const SYNC_USAGE = `  sync --manifest FILE [--url URL] [--schedule CRON] [--ca FILE] [--json]
                                 ask the running registry to mirror the sync manifest's images (those of
                                 one schedule with --schedule) and apply its retention policies; exits 1
                                 when an image failed. Credentials from ${USERNAME_ENV} / ${PASSWORD_ENV}
`;

export async function syncCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      manifest: { type: "string" },
      url: { type: "string", default: "http://localhost:5000" },
      schedule: { type: "string" },
      ca: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  if (values.manifest === undefined) throw new Error("sync needs --manifest FILE");
  const text = readFileSync(values.manifest, "utf8");
  parseSyncManifest(text); // a bad manifest is refused here, with the same one-line reason
  if (values.schedule !== undefined && !isCronExpression(values.schedule))
    throw new Error(`--schedule ${JSON.stringify(values.schedule)} is not a five-field cron expression`);
  const query = values.schedule === undefined ? "" : `?${new URLSearchParams({ schedule: values.schedule })}`;
  const report = (await adminRequest(adminTarget(values.url, values.ca), "POST", `/v2/_neam/sync${query}`, {
    content: text,
    type: "application/yaml",
  })) as SyncReport;
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : describe(report));
  return report.failed > 0 || report.retentionErrors.length > 0 ? 1 : 0;
}

function describe(report: SyncReport): string {
  const lines = report.images.map(
    (i) =>
      `${i.outcome.padEnd(9)} ${i.source} -> ${i.target}` +
      (i.digest !== undefined ? ` ${i.digest}` : "") +
      (i.bytes > 0 ? ` (${i.bytes} bytes fetched)` : "") +
      (i.error !== undefined ? `: ${i.error}` : ""),
  );
  lines.push(...report.tagsDeleted.map((t) => `retention: tag deleted ${t}`));
  lines.push(...report.manifestsDeleted.map((m) => `retention: manifest deleted ${m}`));
  lines.push(...report.retentionErrors.map((e) => `retention failed: ${e}`));
  const count = (outcome: string) => report.images.filter((i) => i.outcome === outcome).length;
  lines.push(
    `sync${report.schedule !== undefined ? ` (${report.schedule})` : ""}: ${report.images.length} images, ` +
      `${count("synced")} synced, ${count("unchanged")} unchanged, ${report.failed} failed, ` +
      `${report.durationSeconds.toFixed(2)} s`,
  );
  return `${lines.join("\n")}\n`;
}
