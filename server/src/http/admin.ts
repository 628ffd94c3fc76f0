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
import { BundleReceiver, parsePartList } from "../bundle/receive.js";
import {
  isCronExpression,
  parseSyncManifest,
  SyncManifestError,
  type SyncManifest,
} from "../sync/manifest.js";

const MAX_SYNC_MANIFEST_BYTES = 1024 * 1024;
/** What a refused bundle part is read on for, at most, before its connection is closed. */
const MAX_DRAINED_BYTES = 256 * 1024 * 1024;
/** A part list of 100,000 parts is about 9 MiB. */
const MAX_PART_LIST_BYTES = 10 * 1024 * 1024;

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
  const receiver =
    registry === undefined
      ? undefined
      : new BundleReceiver(registry, async () => (await freeBytes(registry)) ?? null);
  return matcher([
    { name: "admin_have", pattern: /^\/v2\/_neam\/have$/, methods: { GET: have } },
    {
      name: "admin_bundle_imports",
      pattern: /^\/v2\/_neam\/bundle\/imports$/,
      methods: { POST: openImport },
    },
    {
      name: "admin_bundle_import",
      pattern: /^\/v2\/_neam\/bundle\/imports\/([^/]+)$/,
      methods: { GET: importStatus, DELETE: abandonImport },
    },
    {
      name: "admin_bundle_part",
      pattern: /^\/v2\/_neam\/bundle\/imports\/([^/]+)\/parts\/([^/]+)$/,
      methods: { PUT: receivePart },
    },
    {
      name: "admin_bundle_commit",
      pattern: /^\/v2\/_neam\/bundle\/imports\/([^/]+)\/commit$/,
      methods: { POST: commitImport },
    },
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
    ctx.body = { digests, freeBytes: (await freeBytes(registry)) ?? null };
  }

  function bundles(ctx: Context): BundleReceiver {
    authz.requireAdmin(ctx);
    if (receiver === undefined) throw new RegistryError("UNSUPPORTED", "no registry to import into");
    return receiver;
  }

  /**
   * A bundle import, started or found again: body `{"parts":[{"digest":"sha256:…","size":N},…]}`,
   * the parts in order. Answers which parts landed (the next to send is `landed`).
   */
  async function openImport(ctx: Context) {
    const imports = bundles(ctx);
    let raw: unknown;
    try {
      raw = JSON.parse(
        (
          await readLimited(
            ctx.req,
            MAX_PART_LIST_BYTES,
            (n) => new RegistryError("PARAMETER_INVALID", `the part list is larger than ${n} bytes`),
          )
        ).toString("utf8"),
      );
    } catch (error) {
      if (error instanceof RegistryError) throw error;
      throw new RegistryError("PARAMETER_INVALID", "the part list is not JSON");
    }
    ctx.body = await imports.open(parsePartList(raw));
  }

  async function importStatus(ctx: Context, params: string[]) {
    ctx.body = await bundles(ctx).status(params[0]!);
  }

  /**
   * One part of the bundle, streamed (Content-Length: its size). Checked before a byte is read:
   * the caller is an admin, the part is the next one and its length is right.
   */
  async function receivePart(ctx: Context, params: string[]) {
    const imports = bundles(ctx);
    const index = /^\d{1,6}$/.test(params[1]!) ? Number(params[1]) : -1;
    const length = ctx.get("Content-Length");
    if (!/^\d{1,16}$/.test(length))
      throw new RegistryError("SIZE_INVALID", "a bundle part needs a Content-Length (its size)");
    // The body keeps http.bodytimeout; the commit after the last part may take longer than idle.
    ctx.req.once("end", () => keepWaiting(ctx));
    try {
      ctx.body = await imports.receivePart(params[0]!, index, Number(length), ctx.req);
    } catch (error) {
      // Refused half way (a damaged blob): read on to the part's end, so that a client still
      // sending sees the answer naming the digest rather than a reset connection.
      await drain(ctx, MAX_DRAINED_BYTES);
      throw error;
    }
    // A part that had landed already is answered unread: its body is no next request.
    if (!ctx.req.complete) ctx.set("Connection", "close");
  }

  async function abandonImport(ctx: Context, params: string[]) {
    await bundles(ctx).abandon(params[0]!);
    ctx.status = 204;
  }

  async function commitImport(ctx: Context, params: string[]) {
    const imports = bundles(ctx);
    keepWaiting(ctx);
    ctx.body = await imports.commit(params[0]!);
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

/** Reads and drops what is left of the request body, up to `limit` bytes (the body timeout applies). */
async function drain(ctx: Context, limit: number): Promise<void> {
  const req = ctx.req;
  if (req.complete || req.destroyed) return;
  let seen = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      seen += chunk.length;
      if (seen > limit) break;
    }
  } catch {
    /* the client went away: nobody to answer */
  }
}

/** Bytes free on the registry's storage, when it is a local filesystem. */
async function freeBytes(registry: Registry): Promise<number | undefined> {
  const root = (registry.driver as { root?: string }).root;
  const free = root === undefined ? undefined : await statfs(root).catch(() => undefined);
  return free === undefined ? undefined : free.bavail * free.bsize;
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
