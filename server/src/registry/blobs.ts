import type { Readable } from "node:stream";
import { isNotFound, type StorageDriver } from "../storage/driver.js";
import { layout } from "../storage/layout.js";
import type { Digest } from "./digest.js";
import { blobUnknown } from "./errors.js";
import { exists, readLink, writeLink } from "./links.js";
import { cacheKeys, MetadataCache } from "./metadata-cache.js";
import { LruCache } from "./lru.js";
import { CollectionGuard, type Guard } from "./collection-guard.js";

/** Blobs up to this size are served from memory once read (configs, small layers, signatures). */
export const SMALL_BLOB_BYTES = 64 * 1024;

/**
 * Content-addressed blobs, stored once for the whole registry and linked into repositories
 * (`_layers/<alg>/<hex>/link`). A repository may read a blob only through its own link.
 */
export class BlobStore {
  /** Content is immutable by digest, so small blobs can be kept without invalidation. */
  private readonly small = new LruCache<string, Buffer>(16 * 1024 * 1024, (b) => b.length + 64);

  constructor(
    private readonly driver: StorageDriver,
    private readonly cache: MetadataCache = new MetadataCache(),
    readonly guard: Guard = new CollectionGuard(),
  ) {}

  /** The whole content of a small blob already checked with `stat`, from memory when it can. */
  async smallContent(digest: Digest): Promise<Buffer> {
    const cached = this.small.get(digest.value);
    if (cached !== undefined) return cached;
    const content = await this.read(digest);
    if (content.length <= SMALL_BLOB_BYTES) this.small.set(digest.value, content);
    return content;
  }

  /** Size of the blob's data if it is stored anywhere in the registry. */
  async globalSize(digest: Digest): Promise<number | undefined> {
    try {
      return (await this.driver.stat(layout.blobData(digest))).size;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** Whether `name` links the blob, as a layer/config or as one of its manifests. */
  async isLinked(name: string, digest: Digest): Promise<boolean> {
    if ((await readLink(this.driver, layout.layerLink(name, digest)))?.value === digest.value) return true;
    return exists(this.driver, layout.revisionLink(name, digest));
  }

  /** Size of a blob readable from `name`; BLOB_UNKNOWN otherwise. */
  async stat(name: string, digest: Digest): Promise<number> {
    // A client that finds the blob will reference it without uploading: a collection must keep it.
    const deletion = this.guard.touch(digest);
    if (deletion !== undefined) await deletion;
    const key = cacheKeys.blob(name, digest.value);
    const cached = await this.cache.get<number>(key);
    if (cached !== undefined) return cached;
    const [linked, size] = await Promise.all([this.isLinked(name, digest), this.globalSize(digest)]);
    if (!linked || size === undefined) throw blobUnknown(digest.value);
    this.cache.set(key, size);
    return size;
  }

  /** Streams bytes `start`..`end` (inclusive) of a blob already checked with `stat`. */
  async open(digest: Digest, start?: number, end?: number): Promise<Readable> {
    try {
      return await this.driver.reader(layout.blobData(digest), start, end);
    } catch (error) {
      if (isNotFound(error)) throw blobUnknown(digest.value);
      throw error;
    }
  }

  async read(digest: Digest): Promise<Buffer> {
    try {
      return await this.driver.getContent(layout.blobData(digest));
    } catch (error) {
      if (isNotFound(error)) throw blobUnknown(digest.value);
      throw error;
    }
  }

  /**
   * Stores verified content held in memory as a blob and links it into `name`, safe against a
   * running collection: the whole-body form of `store`. Data and link go in one batch, data
   * first. Content already stored is written again (the same bytes replace it): checking first
   * would cost every new blob a round trip to save one on a rare re-upload (clients check with
   * HEAD before uploading).
   */
  async storeContent(name: string, digest: Digest, content: Buffer): Promise<void> {
    await this.guard.write([digest], async () => {
      await this.driver.putContents([
        { path: layout.blobData(digest), content },
        { path: layout.layerLink(name, digest), content: digest.value },
      ]);
      this.cache.set(cacheKeys.blob(name, digest.value), content.length);
    });
  }

  /**
   * Makes a verified upload file the blob's data and links it into `name`, safe against a running
   * collection: data moved and link written in one batch, data first, as `storeContent` does. A
   * blob already stored locally gets the upload's copy (the same bytes) moved over it: asking
   * first would cost every new blob a round trip to save a rename on a rare re-upload. On object
   * storage a move is a copy, so there it asks. Says whether the file was moved (else the caller
   * drops it). With `exactSize`, the file must hold `size` bytes (else SourceSizeError, nothing
   * done); `thenRemove` (the upload's directory) is removed in the same batch, after the link.
   */
  async store(
    sourcePath: string,
    name: string,
    digest: Digest,
    size: number,
    options: { exactSize?: boolean; thenRemove?: string } = {},
  ): Promise<boolean> {
    const then =
      options.thenRemove === undefined ? [] : [{ path: options.thenRemove, remove: true as const }];
    return this.guard.write([digest], async () => {
      if (this.driver.localFile === undefined && (await this.globalSize(digest)) === size) {
        await this.link(name, digest, size);
        if (options.thenRemove !== undefined) await this.driver.delete(options.thenRemove);
        return false;
      }
      await this.driver.putContents([
        { path: layout.blobData(digest), source: sourcePath, size: options.exactSize ? size : undefined },
        { path: layout.layerLink(name, digest), content: digest.value },
        ...then,
      ]);
      this.cache.set(cacheKeys.blob(name, digest.value), size);
      return true;
    });
  }

  /** Links a blob stored anywhere in the registry into `name`; its size, or undefined when absent. */
  async linkExisting(name: string, digest: Digest): Promise<number | undefined> {
    return this.guard.write([digest], async () => {
      const size = await this.globalSize(digest);
      if (size !== undefined) await this.link(name, digest, size);
      return size;
    });
  }

  /** Links a stored blob of `size` bytes into `name` (and remembers it, for the manifest push that follows). */
  async link(name: string, digest: Digest, size: number, checkFirst = true): Promise<void> {
    const path = layout.layerLink(name, digest);
    if (!checkFirst || (await readLink(this.driver, path))?.value !== digest.value)
      await writeLink(this.driver, path, digest);
    this.cache.set(cacheKeys.blob(name, digest.value), size);
  }

  /**
   * Deletes a blob for good: its links from `linkedFrom` first (so no link outlives its data in a
   * crash), then the data. Only garbage collection calls this, under its guard.
   */
  async remove(digest: Digest, linkedFrom: readonly string[]): Promise<void> {
    for (const name of linkedFrom) await this.driver.delete(layout.layerDir(name, digest));
    await this.cache.invalidate(linkedFrom.map((name) => cacheKeys.blob(name, digest.value)));
    this.small.delete(digest.value);
    await this.driver.delete(layout.blobDir(digest));
  }

  /** Removes the repository's link; the data stays until garbage collection. */
  async unlink(name: string, digest: Digest): Promise<void> {
    if ((await readLink(this.driver, layout.layerLink(name, digest))) === undefined)
      throw blobUnknown(digest.value);
    await this.driver.delete(layout.layerDir(name, digest));
    await this.cache.invalidate([cacheKeys.blob(name, digest.value)]);
  }
}
