import type { StorageDriver } from "../storage/driver.js";
import type { Digest } from "../registry/digest.js";
import { RegistryError, blobUnknown, manifestUnknown } from "../registry/errors.js";
import type { ManifestReference, StoredManifest } from "../registry/manifests.js";
import { MANIFEST_MEDIA_TYPES } from "../registry/media-types.js";
import { paginate } from "../registry/catalog.js";
import { Registry, type Page, type RegistryOptions } from "../registry/registry.js";
import { UpstreamError, type UpstreamClient } from "../sync/upstream.js";

export interface PullThroughOptions {
  readonly upstream: UpstreamClient;
  /** How long a tag checked against the upstream is served without checking again. */
  readonly revalidateMs: number;
  /** Told when the upstream could not be reached and the cached copy was served instead. */
  readonly onUpstreamUnavailable?: (error: Error) => void;
  /** Told whether a blob or manifest was served from the cache (hit) or fetched (miss, with its bytes). */
  readonly onLookup?: (kind: "blob" | "manifest", outcome: "hit" | "miss", bytes?: number) => void;
}

/** At most this many tags remember when they were last checked upstream. */
const MAX_CHECKED_TAGS = 100_000;

/**
 * The registry as a pull-through cache (`proxy.remoteurl`), as the reference registry's proxy
 * mode: what a client pulls is fetched from the upstream on first use, stored through the normal
 * (verified, crash-safe) write path, and served from storage after. A tag is checked upstream
 * (by HEAD) at most every `revalidateMs`; when the upstream cannot be reached, what is cached
 * is served, so an air-gapped site keeps pulling what it pulled before. Pushes are refused.
 */
export class PullThroughRegistry extends Registry {
  private readonly upstream: UpstreamClient;
  private readonly checkedAt = new Map<string, number>();
  /** Fetches in flight, by what they fetch: concurrent pulls of one layer download it once. */
  private readonly fetching = new Map<string, Promise<void>>();

  constructor(
    driver: StorageDriver,
    options: RegistryOptions,
    private readonly proxy: PullThroughOptions,
  ) {
    super(driver, {
      ...options,
      pushRefused:
        "the registry is a pull-through cache (proxy.remoteurl); push to the upstream registry instead",
    });
    this.upstream = proxy.upstream;
  }

  override async getManifest(
    name: string,
    reference: ManifestReference,
    acceptable?: ReadonlySet<string>,
  ): Promise<StoredManifest> {
    if (reference.kind === "tag") await this.refreshTag(name, reference.tag);
    else await this.ensureManifest(name, reference.digest);
    try {
      return await super.getManifest(name, reference, acceptable);
    } catch (error) {
      // An index served to a client that cannot read it: its platform image may not be here yet.
      if (!(error instanceof RegistryError) || error.code !== "MANIFEST_UNKNOWN" || acceptable === undefined)
        throw error;
      const index = await super.getManifest(name, reference).catch(() => undefined);
      const entry = index?.parsed.entries?.find(
        (e) =>
          e.platform?.os === "linux" && e.platform.architecture === "amd64" && acceptable.has(e.mediaType),
      );
      if (entry === undefined) throw error;
      await this.ensureManifest(name, entry.digest);
      return super.getManifest(name, reference, acceptable);
    }
  }

  override async statBlob(name: string, digest: Digest): Promise<number> {
    try {
      const size = await super.statBlob(name, digest);
      this.proxy.onLookup?.("blob", "hit");
      return size;
    } catch (error) {
      // Read-only mode: what is cached is served, nothing is fetched (that would write).
      if (!(error instanceof RegistryError) || error.code !== "BLOB_UNKNOWN" || this.options.readOnly)
        throw error;
    }
    await this.once(`blob ${name}@${digest.value}`, async () => {
      // Pulled before through another repository: link it without a download, but only once the
      // upstream says this repository holds it too. Stored content is shared; access is not: a
      // client may read a blob only through a repository that has it.
      if ((await this.blobs.globalSize(digest)) !== undefined) {
        const held = await this.upstream.hasBlob(name, digest).catch((error: unknown) => {
          throw this.unavailable(error, blobUnknown(digest.value));
        });
        if (!held) throw blobUnknown(digest.value);
        if ((await this.blobs.linkExisting(name, digest)) !== undefined) {
          this.proxy.onLookup?.("blob", "hit");
          return;
        }
      }
      const stream = await this.upstream.blob(name, digest).catch((error: unknown) => {
        throw this.unavailable(error, blobUnknown(digest.value));
      });
      const { size } = await this.uploads.putWhole(name, digest, stream);
      this.proxy.onLookup?.("blob", "miss", size);
    });
    return super.statBlob(name, digest);
  }

  override async listTags(name: string, n?: number, last?: string): Promise<Page> {
    try {
      const tags = (await this.upstream.tags(name)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return paginate(tags, n, last);
    } catch (error) {
      if (error instanceof UpstreamError && error.status === 404) throw manifestUnknownName(name);
      this.proxy.onUpstreamUnavailable?.(error as Error);
      return super.listTags(name, n, last);
    }
  }

  /** Points the local tag at what the upstream's tag names now, fetching that manifest if needed. */
  private async refreshTag(name: string, tag: string): Promise<void> {
    if (this.options.readOnly) return; // serve what is cached: fetching would write
    const key = `${name}:${tag}`;
    const checked = this.checkedAt.get(key);
    if (checked !== undefined && Date.now() - checked < this.proxy.revalidateMs) {
      this.proxy.onLookup?.("manifest", "hit");
      return;
    }
    let digest: Digest | undefined;
    try {
      digest = await this.upstream.manifestDigest(name, tag);
    } catch (error) {
      if (error instanceof UpstreamError && error.status === 404) throw manifestUnknown(tag);
      // Unreachable: the cached tag (if any) is served.
      this.proxy.onUpstreamUnavailable?.(error as Error);
      return;
    }
    await this.once(`tag ${key}`, async () => {
      const local = await this.manifests.resolve(name, { kind: "tag", tag }).catch(() => undefined);
      const fetched =
        digest !== undefined && local?.value === digest.value
          ? await this.manifests.load(local)
          : await this.upstream.manifest(name, digest?.value ?? tag);
      if (digest !== undefined && fetched.digest.value !== digest.value)
        throw new RegistryError(
          "MANIFEST_INVALID",
          "the upstream served a manifest that does not match its digest",
        );
      const cached = "parsed" in fetched;
      this.proxy.onLookup?.("manifest", cached ? "hit" : "miss", cached ? undefined : fetched.bytes.length);
      const mediaType = cached ? fetched.parsed.mediaType : fetched.mediaType;
      // Rewritten even when unchanged: the tag's time says when it was last confirmed (for proxy.ttl).
      await this.manifests.put(
        name,
        { kind: "tag", tag },
        fetched.bytes,
        MANIFEST_MEDIA_TYPES.includes(mediaType) ? mediaType : undefined,
        { checkReferences: false },
      );
    });
    this.checkedAt.delete(key);
    if (this.checkedAt.size >= MAX_CHECKED_TAGS) this.checkedAt.delete(this.checkedAt.keys().next().value!);
    this.checkedAt.set(key, Date.now());
  }

  /** Makes a manifest named by digest present, from the upstream if it is not here. */
  private async ensureManifest(name: string, digest: Digest): Promise<void> {
    const present = await this.manifests
      .resolve(name, { kind: "digest", digest })
      .then(() => true)
      .catch(() => false);
    if (present) {
      this.proxy.onLookup?.("manifest", "hit");
      return;
    }
    if (this.options.readOnly) throw manifestUnknown(digest.value);
    await this.once(`manifest ${name}@${digest.value}`, async () => {
      const fetched = await this.upstream.manifest(name, digest.value).catch((error: unknown) => {
        throw this.unavailable(error, manifestUnknown(digest.value));
      });
      if (fetched.digest.value !== digest.value)
        throw new RegistryError(
          "MANIFEST_INVALID",
          "the upstream served a manifest that does not match its digest",
        );
      const mediaType = MANIFEST_MEDIA_TYPES.includes(fetched.mediaType) ? fetched.mediaType : undefined;
      await this.manifests.put(name, { kind: "digest", digest }, fetched.bytes, mediaType, {
        checkReferences: false,
      });
      this.proxy.onLookup?.("manifest", "miss", fetched.bytes.length);
    });
  }

  /** Runs `work` once for concurrent callers with the same key. */
  private async once(key: string, work: () => Promise<void>): Promise<void> {
    let running = this.fetching.get(key);
    if (running === undefined) {
      running = work().finally(() => this.fetching.delete(key));
      this.fetching.set(key, running);
    }
    await running;
  }

  /** A 404 upstream is the client's `unknown`; anything else is logged and answered `unknown` too. */
  private unavailable(error: unknown, unknown: RegistryError): RegistryError {
    if (!(error instanceof UpstreamError && error.status === 404))
      this.proxy.onUpstreamUnavailable?.(error as Error);
    return unknown;
  }
}

function manifestUnknownName(name: string): RegistryError {
  return new RegistryError("NAME_UNKNOWN", "repository name not known to registry", { name });
}
