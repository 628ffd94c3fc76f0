import type { Digest } from "../registry/digest.js";
import { RegistryError } from "../registry/errors.js";
import { parseManifest } from "../registry/manifest.js";
import type { Registry } from "../registry/registry.js";
import { formatReference, parseImageReference } from "./image-reference.js";
import { normaliseCron, scheduleOf, type SyncImage, type SyncManifest } from "./manifest.js";
import { applyRetention } from "./retention.js";
import { UpstreamError, type FetchedManifest, type UpstreamClient } from "./upstream.js";
import { fetchManifest, platformManifest } from "./upstream-manifests.js";

export interface SyncOptions {
  /** Only the images synced on this cron schedule (their own, or the manifest's frequency). */
  readonly schedule?: string;
}

export interface ImageResult {
  readonly source: string;
  readonly target: string;
  /** `synced`: copied now; `unchanged`: the target already had it; `failed`: see `error`. */
  readonly outcome: "synced" | "unchanged" | "failed";
  readonly digest?: string;
  /** Blob bytes fetched from the upstream (what was already here is not fetched again). */
  readonly bytes: number;
  readonly error?: string;
}

export interface SyncReport {
  readonly startedAt: string;
  readonly durationSeconds: number;
  readonly schedule?: string;
  readonly images: ImageResult[];
  readonly failed: number;
  readonly tagsDeleted: string[];
  readonly manifestsDeleted: string[];
  /** Repositories whose retention could not be applied, with why. */
  readonly retentionErrors: string[];
}

/** Blobs of one manifest fetched at once. */
const BLOB_CONCURRENCY = 4;

/**
 * Mirrors the sync manifest's images from their upstreams into the registry, image by image: a
 * failing image is reported and the others go on. Content arrives through the registry's own
 * write path (verified against its digest, crash-safe, protected from a concurrent collection);
 * what is already here is not fetched again, and an image whose target already holds the
 * upstream's digest is left alone. Then the manifest's retention policies are applied to the
 * repositories synced into.
 */
export class Syncer {
  constructor(
    private readonly registry: Registry,
    private readonly upstreamFor: (registry: string) => UpstreamClient,
  ) {}

  async run(manifest: SyncManifest, options: SyncOptions = {}): Promise<SyncReport> {
    const started = Date.now();
    const wanted = options.schedule === undefined ? undefined : normaliseCron(options.schedule);
    const images = manifest.sync.images.filter(
      (image) => wanted === undefined || scheduleOf(image, manifest) === wanted,
    );
    const results: ImageResult[] = [];
    for (const image of images) results.push(await this.syncImage(image));

    // Retention for the repositories this run wrote to; the manifest's tags there are kept.
    const listed = new Map<string, Set<string>>();
    for (const image of manifest.sync.images) {
      const { repository, tag } = targetOf(image);
      if (!listed.has(repository)) listed.set(repository, new Set());
      if (tag !== undefined) listed.get(repository)!.add(tag);
    }
    const tagsDeleted: string[] = [];
    const manifestsDeleted: string[] = [];
    const retentionErrors: string[] = [];
    const repositories = new Set(
      images.flatMap((image) => {
        try {
          return [targetOf(image).repository];
        } catch {
          return [];
        }
      }),
    );
    for (const repository of repositories) {
      try {
        const result = await applyRetention(
          this.registry,
          repository,
          listed.get(repository) ?? new Set(),
          manifest.sync.policies,
        );
        tagsDeleted.push(...result.tagsDeleted);
        manifestsDeleted.push(...result.manifestsDeleted);
      } catch (error) {
        retentionErrors.push(`${repository}: ${(error as Error).message}`);
      }
    }
    return {
      startedAt: new Date(started).toISOString(),
      durationSeconds: (Date.now() - started) / 1000,
      ...(wanted !== undefined ? { schedule: wanted } : {}),
      images: results,
      failed: results.filter((r) => r.outcome === "failed").length,
      tagsDeleted,
      manifestsDeleted,
      retentionErrors,
    };
  }

  private async syncImage(image: SyncImage): Promise<ImageResult> {
    const base = { source: image.source, target: image.target };
    let bytes = 0;
    try {
      const source = parseImageReference(image.source);
      const { repository, tag } = targetOf(image);
      const upstream = this.upstreamFor(source.registry);
      let top = await fetchManifest(upstream, source.repository, source.digest ?? source.tag ?? "latest");
      if (source.digest !== undefined && top.digest.value !== source.digest.value)
        throw new UpstreamError(`${formatReference(source)}: the upstream served ${top.digest.value}`);
      if (image.platform !== undefined)
        top = await platformManifest(upstream, source.repository, top, image.platform);

      if (tag === undefined) throw new UpstreamError(`${image.target}: the target needs a tag`);
      const current = await this.registry.manifests
        .resolve(repository, { kind: "tag", tag })
        .catch(() => undefined);
      if (current?.value === top.digest.value) {
        return { ...base, outcome: "unchanged", digest: top.digest.value, bytes: 0 };
      }
      bytes = await this.copyContent(upstream, source.repository, repository, top);
      await this.registry.putManifest(
        repository,
        { kind: "tag", tag },
        top.bytes,
        top.mediaType || undefined,
      );
      return { ...base, outcome: "synced", digest: top.digest.value, bytes };
    } catch (error) {
      return { ...base, outcome: "failed", bytes, error: describe(error) };
    }
  }

  /**
   * Copies what `manifest` references into `to`: its platform manifests (recursively) and its
   * blobs, skipping what `to` already has and mounting what another repository has. Returns the
   * blob bytes fetched.
   */
  private async copyContent(
    upstream: UpstreamClient,
    from: string,
    to: string,
    manifest: FetchedManifest,
  ): Promise<number> {
    const parsed = parseManifest(manifest.bytes, manifest.mediaType || undefined);
    let bytes = 0;
    for (const child of parsed.children) {
      const present = await this.registry.manifests
        .resolve(to, { kind: "digest", digest: child })
        .then(() => true)
        .catch(() => false);
      if (present) continue;
      const fetched = await fetchManifest(upstream, from, child);
      const fetchedBytes = await this.copyContent(upstream, from, to, fetched);
      bytes += fetchedBytes;
      await this.registry.putManifest(
        to,
        { kind: "digest", digest: child },
        fetched.bytes,
        fetched.mediaType || undefined,
      );
    }
    const pending = [...parsed.blobs];
    const worker = async () => {
      for (let digest = pending.shift(); digest !== undefined; digest = pending.shift()) {
        // Read `bytes` only after the await: the workers add concurrently.
        const fetched = await this.copyBlob(upstream, from, to, digest);
        bytes += fetched;
      }
    };
    await Promise.all(Array.from({ length: Math.min(BLOB_CONCURRENCY, pending.length) }, worker));
    return bytes;
  }

  private async copyBlob(
    upstream: UpstreamClient,
    from: string,
    to: string,
    digest: Digest,
  ): Promise<number> {
    const here = await this.registry.statBlob(to, digest).catch(() => undefined);
    if (here !== undefined) return 0;
    if ((await this.registry.mountBlob(to, digest, undefined)) !== undefined) return 0;
    const { size } = await this.registry.putBlob(to, digest, await upstream.blob(from, digest));
    return size;
  }
}

/** The target's repository and tag; the host part names this registry and is not used. */
function targetOf(image: SyncImage): { repository: string; tag?: string } {
  const target = parseImageReference(image.target);
  const tag = target.tag ?? parseImageReference(image.source).tag;
  return { repository: target.repository, ...(tag !== undefined ? { tag } : {}) };
}

function describe(error: unknown): string {
  if (error instanceof RegistryError) return `${error.code}: ${error.message}`;
  return (error as Error).message.split("\n")[0]!;
}
