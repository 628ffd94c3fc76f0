import type { Context } from "koa";
import { parseDuration } from "../config/duration.js";
import { RegistryError } from "../registry/errors.js";
import type { Maintenance } from "../maintenance/maintenance.js";
import type { Registry } from "../registry/registry.js";
import { storedBlobs } from "../registry/inventory.js";
import { statfs } from "node:fs/promises";
import type { RequestAuthorizer } from "./auth.js";
import { matcher, queryValue, type Matcher } from "./routes.js";
import { readLimited } from "../read-limited.js";
import { DEFAULT_GC_GRACE } from "../contract/defaults.js";
import {
  isCronExpression,
  parseSyncManifest,
  SyncManifestError,
  type SyncManifest,
} from "../sync/manifest.js";

const MAX_SYNC_MANIFEST_BYTES = 1024 * 1024;

// The default lives in the contract, where the constructs' CronJobs read it too.
export { DEFAULT_GC_GRACE };

/**
 * The maintenance API, for admins: garbage collection (`POST /v2/_oci/artifacts/delete`, the path
 * the operations guide uses) and the status of the last runs. Names starting with `_` are never
 * repository names, so these paths cannot shadow a repository.
 */
export function adminRoutes(
  maintenance: Maintenance,
  authz: RequestAuthorizer,
  registry?: Registry,
): Matcher {
  return matcher([
    { name: "admin_have", pattern: /^\/v2\/_neam\/have$/, methods: { GET: have } },
    { name: "admin_gc", pattern: /^\/v2\/_oci\/artifacts\/delete$/, methods: { POST: collectGarbage } },
    { name: "admin_sync", pattern: /^\/v2\/_neam\/sync$/, methods: { POST: sync } },
    { name: "admin_backup", pattern: /^\/v2\/_neam\/backup$/, methods: { GET: backup } },
    { name: "admin_status", pattern: /^\/v2\/_neam\/status$/, methods: { GET: status } },
  ]);

  /**
   * Every digest stored (blobs and manifests alike, no names) and the bytes free: what a bundle for
   * this site may leave out, and whether an import fits (`neam-registry bundle have`).
   */
  async function have(ctx: Context) {
    authz.requireAdmin(ctx);
    if (registry === undefined) throw new RegistryError("UNSUPPORTED", "no registry to list");
    const digests = (await storedBlobs(registry.driver)).map((d) => d.value).sort();
    const root = (registry.driver as { root?: string }).root;
    const free = root === undefined ? undefined : await statfs(root).catch(() => undefined);
    ctx.body = { digests, freeBytes: free === undefined ? null : free.bavail * free.bsize };
  }

  async function collectGarbage(ctx: Context) {
    authz.requireAdmin(ctx);
    keepWaiting(ctx);
    const report = await maintenance.collectGarbage({
      deleteUntagged: booleanParameter(ctx, "untagged"),
      dryRun: booleanParameter(ctx, "dryrun"),
      gracePeriodMs: durationParameter(ctx, "grace", DEFAULT_GC_GRACE),
    });
    ctx.body = report;
  }

  /** Body: the sync manifest (YAML or JSON). `schedule`: only the images synced on that cron schedule. */
  async function sync(ctx: Context) {
    authz.requireAdmin(ctx);
    keepWaiting(ctx);
    const schedule = queryValue(ctx, "schedule");
    if (schedule !== undefined && !isCronExpression(schedule)) {
      throw new RegistryError("PARAMETER_INVALID", "schedule must be a five-field cron expression", {
        schedule: schedule.slice(0, 100),
      });
    }
    let manifest: SyncManifest;
    try {
      manifest = parseSyncManifest(
        (
          await readLimited(
            ctx.req,
            MAX_SYNC_MANIFEST_BYTES,
            (n) => new RegistryError("PARAMETER_INVALID", `the sync manifest is larger than ${n} bytes`),
          )
        ).toString("utf8"),
      );
    } catch (error) {
      if (error instanceof SyncManifestError) throw new RegistryError("PARAMETER_INVALID", error.message);
      throw error;
    }
    ctx.body = await maintenance.sync(manifest, schedule === undefined ? {} : { schedule });
  }

  /** A consistent tar.gz of the registry's data; restore with `neam-registry restore`. */
  async function backup(ctx: Context) {
    authz.requireAdmin(ctx);
    keepWaiting(ctx);
    const archive = await maintenance.backup();
    ctx.type = "application/gzip";
    ctx.set(
      "Content-Disposition",
      `attachment; filename="registry-backup-${new Date().toISOString().slice(0, 10)}.tar.gz"`,
    );
    ctx.body = archive;
  }

  async function status(ctx: Context) {
    authz.requireAdmin(ctx);
    const [gc, sync, backup] = await Promise.all(
      (["gc", "sync", "backup"] as const).map((task) => maintenance.lastStatus(task)),
    );
    ctx.body = { gc: gc ?? null, sync: sync ?? null, backup: backup ?? null };
  }
}

function booleanParameter(ctx: Context, key: string): boolean {
  const value = queryValue(ctx, key);
  if (value === undefined || value === "false" || value === "0") return false;
  if (value === "true" || value === "1") return true;
  throw new RegistryError("PARAMETER_INVALID", `${key} must be true or false`, { [key]: value.slice(0, 50) });
}

function durationParameter(ctx: Context, key: string, fallback: string): number {
  const value = queryValue(ctx, key) ?? fallback;
  try {
    return parseDuration(value);
  } catch {
    throw new RegistryError("PARAMETER_INVALID", `${key} must be a duration such as 30m or 1h`, {
      [key]: value.slice(0, 50),
    });
  }
}

/**
 * A collection or sync answers when it is done, which on a large registry is longer than the
 * idle timeout that protects the listener from silent connections: lift it for this request.
 */
function keepWaiting(ctx: Context): void {
  const socket = ctx.req.socket;
  const previous = socket.timeout ?? 0;
  socket.setTimeout(0);
  ctx.res.once("close", () => {
    if (!socket.destroyed) socket.setTimeout(previous);
  });
}
