import { parse as parseYaml } from "yaml";
import { z } from "zod";

/**
 * The sync manifest of the operations guide (`sync-manifest.yaml` in the `registry-sync-manifest`
 * ConfigMap): which upstream images to mirror into the registry, when, and what to keep.
 */

/** Allowed values of the five cron fields: minute, hour, day of month, month, day of week. */
const CRON_RANGES: [number, number][] = [
  [0, 59],
  [0, 23],
  [1, 31],
  [1, 12],
  [0, 7],
];

/** A standard five-field cron expression (`*`, `a`, `a-b`, each with an optional `/step`, comma-separated). */
export function isCronExpression(expression: string): boolean {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5) return false;
  return fields.every((field, i) => {
    const [min, max] = CRON_RANGES[i]!;
    return field.split(",").every((part) => {
      const match = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
      if (!match) return false;
      const [, , from, to, step] = match;
      if (step !== undefined && Number(step) === 0) return false;
      const inRange = (v: string | undefined) => v === undefined || (Number(v) >= min && Number(v) <= max);
      return inRange(from) && inRange(to) && (to === undefined || Number(to) >= Number(from));
    });
  });
}

export const Cron = z
  .string()
  .refine(isCronExpression, 'must be a five-field cron expression such as "0 */4 * * *"');

/** `host[:port]/path[:tag][@digest]`, as docker and skopeo write image references. */
const IMAGE_REFERENCE =
  /^[a-zA-Z0-9.-]+(:\d+)?\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*(:[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127})?(@sha256:[a-f0-9]{64})?$/;
const ImageReference = z
  .string()
  .regex(IMAGE_REFERENCE, "must be an image reference such as docker.io/library/nginx:1.25");

const Platform = z
  .string()
  .regex(/^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/, "must be os/arch[/variant], such as linux/amd64");

/** The operations guide's sync CronJob runs every 4 hours. */
export const DEFAULT_SYNC_SCHEDULE = "0 */4 * * *";

const FREQUENCIES: Record<string, string> = {
  hourly: "0 * * * *",
  daily: "0 0 * * *",
  weekly: "0 0 * * 0",
};

export const SyncManifestSchema = z.strictObject({
  sync: z.strictObject({
    /** How often the whole list is synced when an image has no schedule of its own. */
    frequency: z.union([z.enum(["hourly", "daily", "weekly"]), Cron]).default(DEFAULT_SYNC_SCHEDULE),
    images: z
      .array(
        z.strictObject({
          source: ImageReference,
          target: ImageReference,
          platform: Platform.optional(),
          schedule: Cron.optional(),
        }),
      )
      .min(1),
    policies: z
      .strictObject({
        keep_last_versions: z.number().int().positive().optional(),
        max_image_age_days: z.number().int().positive().optional(),
        cleanup_unused: z.boolean().default(false),
      })
      .prefault({}),
  }),
});

export type SyncManifest = z.output<typeof SyncManifestSchema>;
export type SyncManifestInput = z.input<typeof SyncManifestSchema>;

/** A sync manifest that cannot be used; the message is one line naming the entry. */
export class SyncManifestError extends Error {
  override name = "SyncManifestError";
}

export function validateSyncManifest(raw: unknown): SyncManifest {
  const result = SyncManifestSchema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues.find((i) => i.code === "unrecognized_keys") ?? result.error.issues[0]!;
  const at = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    throw new SyncManifestError(
      `sync manifest: unknown key ${issue.keys.map((k) => JSON.stringify(at ? `${at}.${k}` : k)).join(", ")}`,
    );
  }
  throw new SyncManifestError(`sync manifest: ${at || "(root)"}: ${issue.message}`);
}

export function parseSyncManifest(text: string): SyncManifest {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new SyncManifestError(
      `sync manifest is not valid YAML: ${(error as Error).message.split("\n")[0]}`,
    );
  }
  return validateSyncManifest(raw);
}

export type SyncImage = SyncManifest["sync"]["images"][number];

/** The manifest's `frequency` as a cron schedule (`daily` is `0 0 * * *`). */
export function frequencyOf(manifest: SyncManifest): string {
  const frequency = manifest.sync.frequency;
  return normaliseCron(FREQUENCIES[frequency] ?? frequency);
}

/** The cron schedule an image is synced on: its own, or the manifest's frequency. */
export function scheduleOf(image: SyncImage, manifest: SyncManifest): string {
  return image.schedule === undefined ? frequencyOf(manifest) : normaliseCron(image.schedule);
}

/** One space between fields, so equal schedules compare equal. */
export function normaliseCron(expression: string): string {
  return expression.trim().split(/\s+/).join(" ");
}

/** The distinct schedules of a manifest's images, in order of first appearance (one CronJob each). */
export function schedulesOf(manifest: SyncManifest): string[] {
  return [...new Set(manifest.sync.images.map((image) => scheduleOf(image, manifest)))];
}
