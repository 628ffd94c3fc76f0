import type { Readable } from "node:stream";
import { isNotFound, type StorageDriver } from "../storage/driver.js";
import { layout } from "../storage/layout.js";
import { BlobStore, SMALL_BLOB_BYTES } from "./blobs.js";
import { Catalog, paginate } from "./catalog.js";
import type { Digest } from "./digest.js";
import { nameUnknown, unsupported } from "./errors.js";
import { ManifestStore, type ManifestReference, type StoredManifest } from "./manifests.js";
import type { Descriptor } from "./manifest.js";
import { MetadataCache, type InvalidationBus, type SharedCacheStore } from "./metadata-cache.js";
import type { Guard } from "./collection-guard.js";
import { UploadStore, type ChunkRange, type UploadBody } from "./uploads.js";
import { GarbageCollector, type CollectionOptions, type CollectionReport } from "../gc/collector.js";
import { inspectRepository } from "./reachability.js";

export interface RegistryOptions {
  readonly deleteEnabled: boolean;
  readonly maxManifestBytes: number;
  /** How this process learns of changes made by its siblings; alone by default. */
  readonly bus?: InvalidationBus;
  /** `storage.maintenance.readonly.enabled`: pulls only; pushes and deletes are refused. */
  readonly readOnly?: boolean;
  /** Why pushes are refused (a pull-through cache); deletes are still allowed. Pushes allowed when absent. */
  readonly pushRefused?: string;
  /** Told how many blob bytes each upload request brought. */
  readonly onUploadBytes?: (bytes: number) => void;
  /** Several replicas (coordination/): what they share instead of this process's memory. */
  readonly shared?: {
    readonly cache: SharedCacheStore;
    readonly guard: Guard;
    readonly lockUpload: (id: string) => Promise<() => Promise<void>>;
    /** Throws UNAVAILABLE when writes cannot be coordinated now. */
    readonly requireReady: () => void;
  };
  /** Blob GETs are redirected to the storage when it can give a URL (`storage.redirect`). */
  readonly redirectBlobs?: boolean;
}

export interface Page {
  readonly items: string[];
  readonly more: boolean;
}

/**
 * The registry's domain: every operation of the distribution API, in terms of repositories, blobs,
 * uploads and manifests. Knows nothing of HTTP; fails with RegistryError.
 */
export class Registry {
  readonly blobs: BlobStore;
  readonly uploads: UploadStore;
  readonly manifests: ManifestStore;
  private readonly catalog: Catalog;
  private readonly collector: GarbageCollector;

  constructor(
    readonly driver: StorageDriver,
    readonly options: RegistryOptions,
  ) {
    const shared = options.shared;
    const metadata = new MetadataCache(options.bus, undefined, undefined, shared?.cache);
    this.blobs = new BlobStore(driver, metadata, shared?.guard);
    this.uploads = new UploadStore(driver, this.blobs, options.onUploadBytes, shared?.lockUpload);
    this.manifests = new ManifestStore(driver, this.blobs, options.maxManifestBytes, metadata);
    this.catalog = new Catalog(driver);
    this.collector = new GarbageCollector(driver, this.blobs, this.manifests);
  }

  /**
   * Mark and sweep, safe while this process serves requests (not while other processes write).
   * Refused in read-only mode unless a dry run (another process may be collecting offline); like
   * the reference's `garbage-collect`, it does not depend on `storage.delete.enabled`.
   */
  collectGarbage(options: CollectionOptions): Promise<CollectionReport> {
    if (!options.dryRun) this.requireNotReadOnly();
    return this.collector.collect(options);
  }

  async repositoryExists(name: string): Promise<boolean> {
    try {
      await this.driver.stat(layout.repository(name));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  // --- blobs

  statBlob(name: string, digest: Digest): Promise<number> {
    return this.blobs.stat(name, digest);
  }

  /** Blob bytes `start`..`end` (inclusive): from memory for small blobs, streamed from storage otherwise. */
  async readBlob(digest: Digest, size: number, start = 0, end = size - 1): Promise<Readable | Buffer> {
    if (size <= SMALL_BLOB_BYTES) {
      const content = await this.blobs.smallContent(digest);
      return start === 0 && end === content.length - 1 ? content : content.subarray(start, end + 1);
    }
    return this.blobs.open(digest, start, end);
  }

  /** Where to redirect a GET of the blob (checked with `statBlob` first), when redirects are on. */
  async blobRedirect(digest: Digest): Promise<string | undefined> {
    if (this.options.redirectBlobs !== true || this.driver.redirectURL === undefined) return undefined;
    return this.driver.redirectURL(layout.blobData(digest));
  }

  /** The blob's file on this machine, when storage keeps one (for zero-copy serving); checked with `statBlob` first. */
  blobFile(digest: Digest): string | undefined {
    return this.driver.localFile?.(layout.blobData(digest));
  }

  async deleteBlob(name: string, digest: Digest): Promise<void> {
    this.requireDelete();
    await this.blobs.unlink(name, digest);
  }

  /**
   * Links a blob into `name` without upload: from `from` when given and it holds the blob, or from
   * anywhere in the registry when `from` is absent. Undefined when it cannot mount.
   */
  async mountBlob(name: string, digest: Digest, from: string | undefined): Promise<number | undefined> {
    this.requireWritable();
    if (from !== undefined && !(await this.blobs.isLinked(from, digest))) return undefined;
    return this.blobs.linkExisting(name, digest);
  }

  // --- uploads

  async startUpload(name: string) {
    this.requireWritable();
    return this.uploads.create(name);
  }

  uploadStatus(name: string, id: string) {
    return this.uploads.status(name, id);
  }

  async appendUpload(name: string, id: string, body: UploadBody, range?: ChunkRange) {
    this.requireWritable();
    return this.uploads.append(name, id, body, range);
  }

  async completeUpload(
    name: string,
    id: string,
    digest: Digest,
    finalChunk?: { body: UploadBody; range?: ChunkRange },
  ) {
    this.requireWritable();
    return this.uploads.commit(name, id, digest, finalChunk);
  }

  cancelUpload(name: string, id: string) {
    return this.uploads.cancel(name, id);
  }

  /**
   * Single-request upload: the whole blob in one body, verified against `digest`; a small body
   * may come already read (a Buffer).
   */
  async putBlob(name: string, digest: Digest, body: UploadBody) {
    this.requireWritable();
    return this.uploads.putWhole(name, digest, body);
  }

  // --- manifests and tags

  /** See ManifestStore.get: `acceptable` are the media types the client reads (undefined: any). */
  getManifest(
    name: string,
    reference: ManifestReference,
    acceptable?: ReadonlySet<string>,
  ): Promise<StoredManifest> {
    return this.manifests.get(name, reference, acceptable);
  }

  async putManifest(name: string, reference: ManifestReference, bytes: Buffer, contentType?: string) {
    this.requireWritable();
    return this.manifests.put(name, reference, bytes, contentType);
  }

  async deleteManifest(name: string, reference: ManifestReference): Promise<void> {
    this.requireDelete();
    await this.manifests.delete(name, reference);
  }

  /** Tags of a repository with when each was last pushed (ms since the epoch). */
  tagTimes(name: string): Promise<{ tag: string; pushedAt: number }[]> {
    return this.manifests.tagTimes(name);
  }

  /** Manifests of `name` no tag reaches (see reachability.ts), older than `before` (ms). */
  async untaggedManifests(name: string, before: number): Promise<readonly Digest[]> {
    return (await inspectRepository(this.driver, this.manifests, name, before)).unreachable;
  }

  async listTags(name: string, n?: number, last?: string): Promise<Page> {
    if (!(await this.repositoryExists(name))) throw nameUnknown(name);
    return paginate(await this.manifests.tags(name), n, last);
  }

  /** Repositories in lexical order; `visible` hides those the caller may not see, before paging. */
  async listRepositories(n?: number, last?: string, visible?: (name: string) => boolean): Promise<Page> {
    const all = await this.catalog.repositories();
    return paginate(visible === undefined ? all : all.filter(visible), n, last);
  }

  /** The referrers of `subject` in `name` as index descriptors, optionally of one artifact type. */
  async referrers(name: string, subject: Digest, artifactType?: string): Promise<Descriptor[]> {
    const descriptors = (await this.manifests.referrers(name, subject)).map(referrerDescriptor);
    return artifactType === undefined
      ? descriptors
      : descriptors.filter((d) => d.artifactType === artifactType);
  }

  private requireDelete(): void {
    this.requireNotReadOnly();
    if (!this.options.deleteEnabled) throw unsupported("deletion is disabled (storage.delete.enabled)");
  }

  private requireWritable(): void {
    this.requireNotReadOnly();
    if (this.options.pushRefused !== undefined) throw unsupported(this.options.pushRefused);
  }

  /** Every write to storage checks this first, including those the registry makes for itself. */
  protected requireNotReadOnly(): void {
    if (this.options.readOnly)
      throw unsupported("the registry is in read-only mode (storage.maintenance.readonly)");
    // Before storage changes: a write other replicas would not learn of is refused whole.
    this.options.shared?.requireReady();
  }
}

function referrerDescriptor(m: StoredManifest): Descriptor {
  const { parsed } = m;
  const artifactType = parsed.artifactType ?? (parsed.isIndex ? undefined : parsed.configMediaType);
  return {
    mediaType: parsed.mediaType,
    digest: m.digest.value,
    size: m.bytes.length,
    ...(artifactType !== undefined && artifactType !== "" ? { artifactType } : {}),
    ...(parsed.annotations !== undefined ? { annotations: parsed.annotations } : {}),
  };
}
