import { isNotFound, type StorageDriver } from "../storage/driver.js";
import { layout } from "../storage/layout.js";
import type { BlobStore } from "./blobs.js";
import { digestOf, isDigest, parseDigest, type Digest } from "./digest.js";
import { RegistryError, manifestUnknown } from "./errors.js";
import { exists, listOrEmpty, readLink } from "./links.js";
import { LruCache } from "./lru.js";
import { cacheKeys, MetadataCache } from "./metadata-cache.js";
import {
  checkManifestYielding,
  parseManifest,
  type CheckedManifest,
  type ParsedManifest,
} from "./manifest.js";
import { isValidTag } from "./names.js";

export interface StoredManifest {
  readonly digest: Digest;
  readonly bytes: Buffer;
  readonly parsed: ParsedManifest;
}

export interface PutManifestResult {
  readonly digest: Digest;
  readonly subject?: Digest;
}

/** A manifest reference from a URL: a tag or a digest, validated. */
export type ManifestReference = { kind: "tag"; tag: string } | { kind: "digest"; digest: Digest };

export function parseReference(reference: string): ManifestReference {
  if (isDigest(reference)) return { kind: "digest", digest: parseDigest(reference) };
  if (!isValidTag(reference)) {
    throw new RegistryError("MANIFEST_INVALID", "invalid tag", { tag: reference.slice(0, 200) });
  }
  return { kind: "tag", tag: reference };
}

const CACHE_BYTES = 64 * 1024 * 1024;
/** References of one manifest checked at once. */
const REFERENCE_CHECKS = 8;
/** The platform served to clients that cannot read an index (the reference registry's choice). */
const DEFAULT_PLATFORM = { os: "linux", architecture: "amd64" };

/**
 * Manifests, tags and the referrers index of each repository. A manifest is a blob linked under
 * `_manifests/revisions`; a tag is `_manifests/tags/<tag>/current/link`, written only after the
 * manifest it names is in place.
 */
export class ManifestStore {
  /** Manifests are immutable by digest, so parsed copies can be kept without invalidation. */
  private readonly cache = new LruCache<string, StoredManifest>(CACHE_BYTES, (m) => m.bytes.length + 512);

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly maxManifestBytes: number,
    private readonly metadata: MetadataCache = new MetadataCache(),
  ) {}

  async put(
    name: string,
    reference: ManifestReference,
    bytes: Buffer,
    contentType?: string,
    /**
     * A pull-through cache stores what the upstream serves before the content it references
     * (fetched when first asked for): then the references are not checked.
     */
    options: { checkReferences?: boolean } = {},
  ): Promise<PutManifestResult> {
    if (bytes.length > this.maxManifestBytes) {
      throw new RegistryError("MANIFEST_TOO_LARGE", `manifest exceeds ${this.maxManifestBytes} bytes`);
    }
    const checked = await checkManifestYielding(bytes, contentType);
    const digest = digestOf(bytes, reference.kind === "digest" ? reference.digest.algorithm : "sha256");
    if (reference.kind === "digest" && reference.digest.value !== digest.value) {
      throw new RegistryError("DIGEST_INVALID", "manifest digest does not match its content", {
        expected: reference.digest.value,
        actual: digest.value,
      });
    }
    // Read from the bytes as iterated (the guard reads them only while a collection runs): an
    // index may list tens of thousands of children, and nothing is kept for each (issue 9 item 7).
    const reliedOn = {
      *[Symbol.iterator]() {
        yield digest;
        for (const { digest: referenced } of checked.references()) yield referenced;
        if (checked.subject !== undefined) yield checked.subject;
      },
    };
    await this.blobs.guard.write(reliedOn, () =>
      this.write(name, reference, digest, bytes, checked, options.checkReferences ?? true),
    );
    const parsed = checked.parsed();
    // The cache keeps bytes of its own: the caller's may be a view of a buffer it reuses (the
    // HTTP layer lends one to each large manifest push, never spanning it whole) or of a pool slab.
    const kept = bytes.byteLength === bytes.buffer.byteLength ? bytes : Buffer.from(bytes);
    this.cache.set(digest.value, { digest, bytes: kept, parsed });
    return { digest, subject: parsed.subject };
  }

  private async write(
    name: string,
    reference: ManifestReference,
    digest: Digest,
    bytes: Buffer,
    checked: CheckedManifest,
    checkReferences: boolean,
  ): Promise<void> {
    if (checkReferences) await this.checkReferences(name, checked);

    // Order matters for crash safety: content, then revision, then index entries, then the tag;
    // one batch writes them in that order. Content already stored is written again (the same
    // bytes), which costs less than asking first on every push.
    const link = (path: string, durable = true) => ({ path, content: digest.value, durable });
    const files = [
      { path: layout.blobData(digest), content: bytes },
      link(layout.revisionLink(name, digest)),
    ];
    if (checked.subject !== undefined) files.push(link(layout.referrerLink(name, checked.subject, digest)));
    if (reference.kind === "tag") {
      // The current link is one atomic rename: it creates the tag, so a listed tag always
      // resolves. The tag's history entry is informational: not worth a sync.
      files.push(link(layout.tagCurrentLink(name, reference.tag)));
      files.push(link(layout.tagIndexLink(name, reference.tag, digest), false));
    }
    await this.driver.putContents(files);
    if (reference.kind === "tag") {
      await this.metadata.invalidate([cacheKeys.tag(name, reference.tag), cacheKeys.tagList(name)]);
    }
  }

  /**
   * The manifest a reference names, as a client that reads `acceptable` media types can take it
   * (undefined: any). An index such a client cannot read is answered with its linux/amd64 entry
   * when the client can read that, as the reference registry does; otherwise MANIFEST_UNKNOWN.
   */
  async get(
    name: string,
    reference: ManifestReference,
    acceptable?: ReadonlySet<string>,
  ): Promise<StoredManifest> {
    const digest = await this.resolve(name, reference);
    const manifest = await this.load(digest);
    if (acceptable === undefined || acceptable.has(manifest.parsed.mediaType)) return manifest;
    const entry = manifest.parsed.entries?.find(
      (e) =>
        acceptable.has(e.mediaType) &&
        e.platform?.os === DEFAULT_PLATFORM.os &&
        e.platform?.architecture === DEFAULT_PLATFORM.architecture,
    );
    if (entry !== undefined && (await exists(this.driver, layout.revisionLink(name, entry.digest))))
      return this.load(entry.digest);
    throw new RegistryError(
      "MANIFEST_UNKNOWN",
      `manifest is ${manifest.parsed.mediaType}, which the Accept header does not allow`,
      {
        mediaType: manifest.parsed.mediaType,
      },
    );
  }

  /** The digest a reference names in `name`; MANIFEST_UNKNOWN when it names nothing there. */
  async resolve(name: string, reference: ManifestReference): Promise<Digest> {
    if (reference.kind === "tag") {
      const key = cacheKeys.tag(name, reference.tag);
      const cached = await this.metadata.get<Digest>(key);
      if (cached !== undefined) return cached;
      const digest = await readLink(this.driver, layout.tagCurrentLink(name, reference.tag));
      if (digest === undefined) throw manifestUnknown(reference.tag);
      this.metadata.set(key, digest);
      return digest;
    }
    const key = cacheKeys.revision(name, reference.digest.value);
    if ((await this.metadata.get<boolean>(key)) === true) return reference.digest;
    if (!(await exists(this.driver, layout.revisionLink(name, reference.digest)))) {
      throw manifestUnknown(reference.digest.value);
    }
    this.metadata.set(key, true);
    return reference.digest;
  }

  /** Deletes a tag, or a manifest with every tag and referrers entry that points at it. */
  async delete(name: string, reference: ManifestReference): Promise<void> {
    if (reference.kind === "tag") {
      if ((await readLink(this.driver, layout.tagCurrentLink(name, reference.tag))) === undefined) {
        throw manifestUnknown(reference.tag);
      }
      await this.driver.delete(layout.tagDir(name, reference.tag));
      await this.metadata.invalidate([cacheKeys.tag(name, reference.tag), cacheKeys.tagList(name)]);
      return;
    }
    const digest = await this.resolve(name, reference);
    // Tags first: a crash then leaves an untagged manifest, never a tag pointing at nothing.
    const dropped = [cacheKeys.tagList(name)];
    for (const tag of await listOrEmpty(this.driver, layout.tagsDir(name))) {
      const current = await readLink(this.driver, layout.tagCurrentLink(name, tag));
      if (current?.value === digest.value) {
        await this.driver.delete(layout.tagDir(name, tag));
        dropped.push(cacheKeys.tag(name, tag));
      }
    }
    const manifest = await this.load(digest).catch(() => undefined);
    await this.removeRevision(name, digest, manifest?.parsed.subject, dropped);
  }

  /**
   * Removes a revision garbage collection found unreachable, under its guard: no tag names it (a
   * tag pushed since the pass read the tags relied on the digest, which protected it from
   * condemnation), so the tags are not scanned, and the manifest is not loaded (the pass read it:
   * `subject` is what it found). `delete` does both for each manifest, and on a large store that
   * listed every tag of the repository per deletion and filled the manifest cache with manifests
   * being deleted (issue 12). Nothing read here is cached; what was cached about the revision is
   * dropped everywhere before this resolves.
   */
  async removeUnreachable(name: string, digest: Digest, subject: Digest | undefined): Promise<void> {
    this.cache.delete(digest.value);
    await this.removeRevision(name, digest, subject, []);
  }

  /**
   * Removes a revision and its referrers entry (first: a crash then leaves a revision without
   * one, which lists nothing), then drops what was cached about it, and `alsoDrop`, everywhere.
   */
  private async removeRevision(
    name: string,
    digest: Digest,
    subject: Digest | undefined,
    alsoDrop: readonly string[],
  ): Promise<void> {
    if (subject !== undefined)
      await this.driver.delete(layout.referrerLink(name, subject, digest).replace(/\/link$/, ""));
    await this.driver.delete(layout.revisionDir(name, digest));
    await this.metadata.invalidate([
      cacheKeys.revision(name, digest.value),
      cacheKeys.blob(name, digest.value),
      ...alsoDrop,
    ]);
  }

  /** What this process holds in memory for manifests: parsed manifests (and their bytes), metadata entries. */
  cacheSize(): { manifests: number; manifestBytes: number; metadataEntries: number } {
    const { entries, weight } = this.cache.size;
    return { manifests: entries, manifestBytes: weight, metadataEntries: this.metadata.size };
  }

  /** Tags of a repository in lexical (byte) order. */
  async tags(name: string): Promise<readonly string[]> {
    const key = cacheKeys.tagList(name);
    const cached = await this.metadata.get<readonly string[]>(key);
    if (cached !== undefined) return cached;
    const tags = (await listOrEmpty(this.driver, layout.tagsDir(name)))
      .filter(isValidTag)
      .sort(compareStrings);
    this.metadata.set(key, tags);
    return tags;
  }

  /** Tags of a repository with when each was last pushed (ms since the epoch), from storage. */
  async tagTimes(name: string): Promise<{ tag: string; pushedAt: number }[]> {
    const found: { tag: string; pushedAt: number }[] = [];
    for (const tag of await listOrEmpty(this.driver, layout.tagsDir(name))) {
      if (!isValidTag(tag)) continue;
      try {
        found.push({
          tag,
          pushedAt: (await this.driver.stat(layout.tagCurrentLink(name, tag))).modTime.getTime(),
        });
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    }
    return found;
  }

  /** Manifests in `name` whose subject is `subject`. */
  async referrers(name: string, subject: Digest): Promise<StoredManifest[]> {
    const dir = layout.referrersDir(name, subject);
    const found: StoredManifest[] = [];
    for (const algorithm of await listOrEmpty(this.driver, dir)) {
      for (const hex of await listOrEmpty(this.driver, `${dir}/${algorithm}`)) {
        let digest: Digest;
        try {
          digest = parseDigest(`${algorithm}:${hex}`);
        } catch {
          continue;
        }
        // The revision may have been deleted by another tool; the index is only a hint.
        if (!(await exists(this.driver, layout.revisionLink(name, digest)))) continue;
        found.push(await this.load(digest));
      }
    }
    return found.sort((a, b) => compareStrings(a.digest.value, b.digest.value));
  }

  async load(digest: Digest): Promise<StoredManifest> {
    const cached = this.cache.get(digest.value);
    if (cached !== undefined) return cached;
    let bytes: Buffer;
    try {
      bytes = await this.blobs.read(digest);
    } catch {
      throw manifestUnknown(digest.value);
    }
    const manifest = { digest, bytes, parsed: parseManifest(bytes) };
    this.cache.set(digest.value, manifest);
    return manifest;
  }

  /**
   * Checks that everything the manifest references is in `name`, a few at a time, stopping at
   * the first that is not: an index may list tens of thousands of children, and checking all at
   * once (or listing every missing one in the error) costs memory and time a push must not.
   */
  private async checkReferences(name: string, checked: CheckedManifest): Promise<void> {
    // One iterator shared by the workers: each takes the next reference when it is free.
    const references = checked.references()[Symbol.iterator]();
    let missing: Digest | undefined;
    const present = async ({ digest, manifest }: { digest: Digest; manifest: boolean }) => {
      if (manifest) return exists(this.driver, layout.revisionLink(name, digest));
      return this.blobs.stat(name, digest).then(
        () => true,
        (error: unknown) => {
          if (error instanceof RegistryError && error.code === "BLOB_UNKNOWN") return false;
          throw error;
        },
      );
    };
    const worker = async () => {
      while (missing === undefined) {
        const next = references.next();
        if (next.done === true) return;
        if (!(await present(next.value))) missing ??= next.value.digest;
      }
    };
    await Promise.all(Array.from({ length: REFERENCE_CHECKS }, worker));
    if (missing !== undefined) {
      throw new RegistryError(
        "MANIFEST_BLOB_UNKNOWN",
        "manifest references a manifest or blob unknown to registry",
        { digests: [missing.value] },
      );
    }
  }
}

export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
