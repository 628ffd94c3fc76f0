/**
 * The registry's side of a bundle streamed to it (`/v2/_neam/bundle/imports`, for admins): the
 * bundle arrives as numbered parts, each a byte range of the archive with its own sha256 (the
 * parts `bundle create --split` writes, or ranges the client picks), in order, one request each.
 *
 * Nothing is held whole: the tar is parsed as it streams; each blob goes straight into the
 * registry's verified write path (`putBlob`, which hashes it on the way and links it only if it
 * matches); manifests (small) are checked against their digest and put by digest; tags come last,
 * once every part has landed and everything they reach is present. What a part leaves open at its
 * end — a blob that runs on into the next part, half a tar header — is kept in storage beside the
 * import's state, so a part that landed is never needed again: an import killed half way resumes
 * at the first part that did not land, even after a restart. A part whose bytes differ from its
 * listed digest does not land (the import stays where it was) and no tag is written.
 */
import { createHash } from "node:crypto";
import { PassThrough, Readable, type Writable } from "node:stream";
import { isNotFound, type StorageDriver } from "../storage/driver.js";
import { parseDigest } from "../registry/digest.js";
import { RegistryError } from "../registry/errors.js";
import type { Registry } from "../registry/registry.js";
import { readLimited } from "../read-limited.js";
import {
  BundleError,
  CONTENT_LIST,
  digestOfPath,
  splitTarget,
  validateContentList,
  type BundleContent,
  type ContentList,
} from "./format.js";

/** Where imports keep their state: outside the registry's layout (not served, not backed up). */
const IMPORTS = "/neam/bundle-imports";
const MAX_PARTS = 100_000;
const MAX_CONTENT_LIST_BYTES = 16 * 1024 * 1024;
const MAX_PAX_BYTES = 64 * 1024;
/** Imports whose content list is kept parsed in memory (a list is at most tens of MiB). */
const LISTS_CACHED = 2;

export interface PartSpec {
  readonly digest: string;
  readonly size: number;
}

export interface ReceiveCounts {
  /** Blobs stored from the bundle's bytes. */
  uploaded: number;
  /** Blobs the registry held elsewhere, linked into the repositories that need them. */
  mounted: number;
  /** Blobs the repository already held (a re-sent part, a re-run import). */
  skipped: number;
  manifests: number;
}

export interface ImportStatus {
  readonly id: string;
  readonly parts: number;
  /** Parts landed, in order: the next part to send is `landed`. */
  readonly landed: number;
  /** Digests of the landed parts. */
  readonly landedDigests: string[];
  readonly committed: boolean;
  readonly counts: ReceiveCounts;
  /** Once committed: the tags written. */
  readonly images?: { target: string; digest: string }[];
}

/** An entry of the archive being read; `remaining` counts its data, `padding` the zeros after it. */
interface OpenEntry {
  readonly name: string;
  readonly kind: "list" | "blob" | "manifest" | "pax" | "skip";
  readonly digest?: string;
  readonly size: number;
  /** Where its header starts in the archive: names its segments. */
  readonly at: number;
  remaining: number;
  padding: number;
  /** Parts that hold earlier pieces of its data (kept as segments). */
  segments: number[];
}

interface State {
  readonly version: 1;
  readonly parts: PartSpec[];
  landed: number;
  /** Archive bytes consumed (the start of part `landed`). */
  offset: number;
  /** A header cut by the end of the last part (base64, under 512 bytes). */
  header: string;
  /** Attributes of a pax header for the entry that follows it. */
  pax?: { path?: string; size?: number };
  entry?: OpenEntry;
  /** Two zero blocks seen: the rest of the archive is padding. */
  ended: boolean;
  listed: boolean;
  counts: ReceiveCounts;
  committed?: { target: string; digest: string }[];
}

const invalid = (message: string, detail?: unknown) =>
  new RegistryError("PARAMETER_INVALID", message, detail);

/** The id of an import: the sha256 of its part list, so the same bundle finds the same import. */
export function importId(parts: readonly PartSpec[]): string {
  return createHash("sha256")
    .update(parts.map((p) => `${p.digest} ${p.size}\n`).join(""))
    .digest("hex");
}

/** A part list as a client sends it (`{"parts":[{"digest":"sha256:…","size":N},…]}`), checked. */
export function parsePartList(raw: unknown): PartSpec[] {
  const parts = (raw as { parts?: unknown } | null)?.parts;
  if (!Array.isArray(parts) || parts.length === 0 || parts.length > MAX_PARTS)
    throw invalid(`parts: a list of 1 to ${MAX_PARTS} {digest, size}`);
  return parts.map((p: unknown, i) => {
    const { digest, size } = (p ?? {}) as { digest?: unknown; size?: unknown };
    if (typeof digest !== "string" || !/^sha256:[a-f0-9]{64}$/.test(digest))
      throw invalid(`parts.${i}.digest: not a sha256 digest`);
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 1)
      throw invalid(`parts.${i}.size: not a positive byte count`);
    return { digest, size };
  });
}

/**
 * Parts received at once, across imports: each holds at most a content list or a manifest and a
 * stream's buffers, so this bounds what imports hold in memory together.
 */
const MAX_PARTS_AT_ONCE = 4;

export class BundleReceiver {
  private readonly busy = new Set<string>();
  private readonly lists = new Map<string, ContentList>();

  constructor(
    private readonly registry: Registry,
    /** Bytes free for blobs, when storage can tell (checked against the content list). */
    private readonly freeBytes: () => Promise<number | null> = async () => null,
  ) {}

  get maxManifestBytes(): number {
    return this.registry.options.maxManifestBytes;
  }

  private get driver(): StorageDriver {
    return this.registry.driver;
  }

  /** Starts the import of a bundle made of `parts`, or finds it when it was started before. */
  async open(parts: PartSpec[]): Promise<ImportStatus> {
    const id = importId(parts);
    const existing = await this.load(id).catch((error: unknown) => {
      if (error instanceof RegistryError && error.code === "BLOB_UPLOAD_UNKNOWN") return undefined;
      throw error;
    });
    if (existing !== undefined) return statusOf(id, existing);
    const state: State = {
      version: 1,
      parts,
      landed: 0,
      offset: 0,
      header: "",
      ended: false,
      listed: false,
      counts: { uploaded: 0, mounted: 0, skipped: 0, manifests: 0 },
    };
    await this.save(id, state);
    return statusOf(id, state);
  }

  async status(id: string): Promise<ImportStatus> {
    return statusOf(id, await this.load(id));
  }

  /**
   * Receives part `index` (`length` bytes, as its request declared before any was read). Parts
   * land in order; one already landed is answered without reading it. The last part commits.
   */
  async receivePart(id: string, index: number, length: number, body: Readable): Promise<ImportStatus> {
    return this.exclusive(id, async () => {
      const state = await this.load(id);
      if (!Number.isSafeInteger(index) || index < 0 || index >= state.parts.length)
        throw invalid(`part ${index}: the bundle has parts 0 to ${state.parts.length - 1}`);
      if (index < state.landed) return statusOf(id, state);
      if (index > state.landed)
        throw new RegistryError("RANGE_INVALID", `part ${index}: part ${state.landed} comes first`, {
          next: state.landed,
        });
      const part = state.parts[index]!;
      if (length !== part.size)
        throw new RegistryError(
          "SIZE_INVALID",
          `part ${index} is ${part.size} bytes; the request says ${length}`,
          { part: index, size: part.size },
        );
      // Work on a copy: a part that fails leaves the saved state where it was.
      const work = structuredClone(state);
      await new PartReader(this, id, work, index).read(body);
      work.landed++;
      work.offset += part.size;
      await this.save(id, work);
      await this.cleanSegments(id, work);
      if (work.landed === work.parts.length) await this.commitUnlocked(id, work);
      return statusOf(id, work);
    });
  }

  /**
   * Forgets an import: its state, content list and segments. Blobs and manifests it stored stay
   * (untagged, as garbage collection finds them); a later run starts from part 0.
   */
  async abandon(id: string): Promise<void> {
    await this.exclusive(id, async () => {
      await this.load(id);
      this.lists.delete(id);
      await this.driver.delete(`${IMPORTS}/${id}`);
    });
  }

  /** Writes the tags once every part has landed and everything under them is present. */
  async commit(id: string): Promise<ImportStatus> {
    return this.exclusive(id, async () => {
      const state = await this.load(id);
      if (state.committed === undefined) await this.commitUnlocked(id, state);
      return statusOf(id, state);
    });
  }

  private async commitUnlocked(id: string, state: State): Promise<void> {
    if (state.landed < state.parts.length)
      throw new RegistryError("BLOB_UPLOAD_INVALID", `part ${state.landed} has not landed yet`, {
        next: state.landed,
      });
    if (state.entry !== undefined || (state.header !== "" && !state.ended))
      throw invalid(`the bundle ends inside ${state.entry?.name ?? "a tar header"}: it is cut short`);
    const list = await this.contentList(id, state);
    for (const item of list.content) {
      if (item.manifest) {
        for (const repository of item.repositories)
          await this.registry
            .getManifest(repository, { kind: "digest", digest: parseDigest(item.digest) })
            .catch((error: unknown) => {
              throw new RegistryError(
                "MANIFEST_BLOB_UNKNOWN",
                `${item.digest}: manifest missing from the bundle (for ${repository})`,
                { digest: item.digest, cause: (error as Error).message },
              );
            });
      } else await this.place(item, undefined, true);
    }
    // Tags last: everything they name is in place.
    const images: { target: string; digest: string }[] = [];
    for (const image of list.images) {
      const { repository, tag } = splitTarget(image.target);
      const stored = await this.registry.getManifest(repository, {
        kind: "digest",
        digest: parseDigest(image.digest),
      });
      await this.registry.putManifest(repository, { kind: "tag", tag }, stored.bytes, image.mediaType);
      images.push({ target: image.target, digest: image.digest });
    }
    state.committed = images;
    await this.save(id, state);
    this.lists.delete(id);
    await this.driver.delete(`${IMPORTS}/${id}/list.json`);
    await this.driver.delete(`${IMPORTS}/${id}/segments`);
  }

  /**
   * A blob in every repository that needs it without sending it: already linked (skipped), or held
   * elsewhere in the registry (mounted), told to `counts` when given. False when the registry does
   * not hold it; with `required`, that is an error naming it.
   */
  async place(item: BundleContent, counts: ReceiveCounts | undefined, required: boolean): Promise<boolean> {
    const digest = parseDigest(item.digest);
    let all = true;
    for (const [i, repository] of item.repositories.entries()) {
      if (await this.registry.blobs.isLinked(repository, digest)) {
        if (i === 0 && counts) counts.skipped++;
        continue;
      }
      if ((await this.registry.mountBlob(repository, digest, undefined)) !== undefined) {
        if (i === 0 && counts) counts.mounted++;
        continue;
      }
      all = false;
      if (required)
        throw new RegistryError(
          "MANIFEST_BLOB_UNKNOWN",
          `${item.digest}: ${item.omitted ? "left out of the bundle for this site" : "not in the bundle"}, and the registry does not hold it`,
          { digest: item.digest },
        );
      break;
    }
    return all;
  }

  /** Stores a blob streamed from the bundle in its first repository (verified), then links the rest. */
  async storeBlob(item: BundleContent, state: State, body: Readable, part: number): Promise<void> {
    const digest = parseDigest(item.digest);
    const first = item.repositories[0]!;
    try {
      await this.registry.putBlob(first, digest, body);
    } catch (error) {
      if (error instanceof RegistryError && error.code === "DIGEST_INVALID") {
        const actual = (error.detail as { actual?: string } | undefined)?.actual;
        throw new RegistryError(
          "DIGEST_INVALID",
          `${item.digest}: the bundle's bytes for it hash to ${actual ?? "something else"} (part ${part})`,
          { digest: item.digest, part },
        );
      }
      throw error;
    }
    state.counts.uploaded++;
    for (const repository of item.repositories.slice(1))
      if (!(await this.registry.blobs.isLinked(repository, digest)))
        await this.registry.mountBlob(repository, digest, first);
  }

  async storeManifest(item: BundleContent, state: State, bytes: Buffer, part: number): Promise<void> {
    const actual = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    if (actual !== item.digest || bytes.length !== item.size)
      throw new RegistryError(
        "DIGEST_INVALID",
        `${item.digest}: the bundle holds ${bytes.length} bytes hashing to ${actual} (part ${part})`,
        { digest: item.digest, part },
      );
    for (const repository of item.repositories)
      await this.registry.putManifest(
        repository,
        { kind: "digest", digest: parseDigest(item.digest) },
        bytes,
        item.mediaType,
      );
    state.counts.manifests++;
  }

  /** Takes the bundle's content list: checked, kept beside the state, and the site's share placed. */
  async acceptList(id: string, state: State, bytes: Buffer): Promise<void> {
    let list: ContentList;
    try {
      list = validateContentList(JSON.parse(bytes.toString("utf8")));
    } catch (error) {
      throw invalid(error instanceof BundleError ? error.message : "the bundle's content list is not JSON");
    }
    let needed = 0;
    for (const item of list.content)
      if (
        !item.manifest &&
        !item.omitted &&
        (await this.registry.blobs.globalSize(parseDigest(item.digest))) === undefined
      )
        needed += item.size;
    const free = await this.freeBytes();
    if (free !== null && needed > free)
      throw new RegistryError(
        "SIZE_INVALID",
        `the bundle needs ${needed} bytes the registry lacks, and it has ${free} free`,
        { needed, free },
      );
    await this.driver.putContent(`${IMPORTS}/${id}/list.json`, bytes);
    this.remember(id, list);
    state.listed = true;
    // What the bundle left out for this site must be here already: link it now, so manifests put
    // as they arrive find it.
    for (const item of list.content) if (item.omitted) await this.place(item, state.counts, true);
  }

  async contentList(id: string, state: State): Promise<ContentList> {
    if (!state.listed) throw invalid(`the bundle does not start with ${CONTENT_LIST}`);
    const cached = this.lists.get(id);
    if (cached !== undefined) return cached;
    const list = validateContentList(
      JSON.parse((await this.driver.getContent(`${IMPORTS}/${id}/list.json`)).toString("utf8")),
    );
    this.remember(id, list);
    return list;
  }

  private remember(id: string, list: ContentList): void {
    this.lists.delete(id);
    if (this.lists.size >= LISTS_CACHED) this.lists.delete(this.lists.keys().next().value!);
    this.lists.set(id, list);
  }

  segmentPath(id: string, entryAt: number, part: number): string {
    return `${IMPORTS}/${id}/segments/${entryAt}-${part}`;
  }

  async writeSegment(id: string, entryAt: number, part: number): Promise<Writable> {
    return this.driver.writer(this.segmentPath(id, entryAt, part), false, { durable: true });
  }

  /** The pieces of an entry kept from earlier parts, in order, then what `live` brings. */
  joined(id: string, entry: OpenEntry, live: Readable): Readable {
    const driver = this.driver;
    const paths = entry.segments.map((part) => this.segmentPath(id, entry.at, part));
    return Readable.from(
      (async function* () {
        for (const path of paths) yield* await driver.reader(path);
        yield* live;
      })(),
    );
  }

  /** Segments of entries no longer open: what the saved state no longer needs. */
  private async cleanSegments(id: string, state: State): Promise<void> {
    let names: string[];
    try {
      names = await this.driver.list(`${IMPORTS}/${id}/segments`);
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    for (const name of names)
      if (state.entry === undefined || !name.startsWith(`${state.entry.at}-`))
        await this.driver.delete(`${IMPORTS}/${id}/segments/${name}`);
  }

  private async load(id: string): Promise<State> {
    if (!/^[a-f0-9]{64}$/.test(id))
      throw new RegistryError("BLOB_UPLOAD_UNKNOWN", "no such bundle import", { id });
    try {
      return JSON.parse(
        (await this.driver.getContent(`${IMPORTS}/${id}/state.json`)).toString("utf8"),
      ) as State;
    } catch (error) {
      if (isNotFound(error)) throw new RegistryError("BLOB_UPLOAD_UNKNOWN", "no such bundle import", { id });
      throw error;
    }
  }

  private async save(id: string, state: State): Promise<void> {
    await this.driver.putContent(`${IMPORTS}/${id}/state.json`, JSON.stringify(state));
  }

  private async exclusive<T>(id: string, work: () => Promise<T>): Promise<T> {
    if (this.busy.has(id))
      throw new RegistryError("BLOB_UPLOAD_INVALID", "another request is sending to this bundle import", {
        id,
      });
    if (this.busy.size >= MAX_PARTS_AT_ONCE)
      throw new RegistryError(
        "TOOMANYREQUESTS",
        "the registry is receiving as many bundle parts as it may; retry later",
        {
          retryAfter: 5,
        },
      );
    this.busy.add(id);
    try {
      return await work();
    } finally {
      this.busy.delete(id);
    }
  }
}

function statusOf(id: string, state: State): ImportStatus {
  return {
    id,
    parts: state.parts.length,
    landed: state.landed,
    landedDigests: state.parts.slice(0, state.landed).map((p) => p.digest),
    committed: state.committed !== undefined,
    counts: state.counts,
    ...(state.committed !== undefined ? { images: state.committed } : {}),
  };
}

/** Where an entry's data goes while this part brings it. */
interface Sink {
  readonly input: PassThrough;
  /** Settles when what consumes the input is done with it. */
  readonly done: Promise<void>;
}

/** Reads one part: the tar parsed from where the last part left it. */
class PartReader {
  private header: Buffer;
  private sink: Sink | undefined;
  private segment: Writable | undefined;
  /** Bytes of this part read so far. */
  private consumed = 0;
  private readonly size: number;

  constructor(
    private readonly receiver: BundleReceiver,
    private readonly id: string,
    private readonly state: State,
    private readonly index: number,
  ) {
    this.header = Buffer.from(state.header, "base64");
    this.size = state.parts[index]!.size;
  }

  async read(body: Readable): Promise<void> {
    const hash = createHash("sha256");
    try {
      if (this.state.entry !== undefined) await this.resume(this.state.entry);
      for await (const chunk of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        if (this.consumed + chunk.length > this.size)
          throw new RegistryError("SIZE_INVALID", `part ${this.index} is longer than ${this.size} bytes`);
        hash.update(chunk);
        await this.feed(chunk);
        this.consumed += chunk.length;
      }
      if (this.consumed !== this.size)
        throw new RegistryError(
          "SIZE_INVALID",
          `part ${this.index} ended after ${this.consumed} of ${this.size} bytes`,
        );
      const digest = `sha256:${hash.digest("hex")}`;
      const expected = this.state.parts[this.index]!.digest;
      if (digest !== expected)
        throw new RegistryError(
          "DIGEST_INVALID",
          `part ${this.index}: its bytes hash to ${digest}, not ${expected} (a damaged part)`,
          { part: this.index, digest: expected },
        );
      // The entry still open runs on into the next part: close this part's piece of it.
      await this.closeSegment();
      this.state.header = this.header.toString("base64");
    } catch (error) {
      this.abort(error as Error);
      await this.sink?.done.catch(() => {});
      throw error;
    }
  }

  private abort(error: Error): void {
    this.sink?.input.destroy(error);
    // Destroyed without an error: its writes' failures are awaited where they happen.
    this.segment?.destroy();
  }

  /** Bytes of this part not yet read, after `offset` bytes of the current chunk. */
  private leftAfter(offset: number): number {
    return this.size - this.consumed - offset;
  }

  private async feed(chunk: Buffer): Promise<void> {
    let at = 0;
    while (at < chunk.length) {
      const entry = this.state.entry;
      if (this.state.ended) return;
      if (entry === undefined) {
        const take = Math.min(512 - this.header.length, chunk.length - at);
        this.header = Buffer.concat([this.header, chunk.subarray(at, at + take)]);
        at += take;
        if (this.header.length === 512) {
          const header = this.header;
          this.header = Buffer.alloc(0);
          await this.begin(header, this.state.offset + this.consumed + at - 512, at);
        }
        continue;
      }
      if (entry.remaining > 0) {
        const take = Math.min(entry.remaining, chunk.length - at);
        await this.write(chunk.subarray(at, at + take));
        entry.remaining -= take;
        at += take;
        if (entry.remaining === 0) await this.finish();
      }
      if (entry.remaining === 0) {
        const skip = Math.min(entry.padding, chunk.length - at);
        entry.padding -= skip;
        at += skip;
        if (entry.padding === 0) this.state.entry = undefined;
      }
    }
  }

  /** A header read whole (`after` bytes into the current chunk): opens its entry. */
  private async begin(header: Buffer, headerAt: number, after: number): Promise<void> {
    if (header.every((b) => b === 0)) {
      // One zero block ends the entries; a bundle carries nothing after them.
      this.state.ended = true;
      return;
    }
    if (!checksumOk(header))
      throw new RegistryError(
        "DIGEST_INVALID",
        `part ${this.index}: a damaged tar header at byte ${headerAt} of the bundle`,
        { part: this.index },
      );
    const type = String.fromCharCode(header[156]!);
    const pax = this.state.pax;
    this.state.pax = undefined;
    const size = pax?.size ?? tarSize(header);
    let name = pax?.path ?? tarName(header);
    name = name.replace(/^\.\//, "");
    const list = this.state.listed ? await this.receiver.contentList(this.id, this.state) : undefined;
    let kind: OpenEntry["kind"] = "skip";
    let digest: string | undefined;
    if (type === "x") kind = size <= MAX_PAX_BYTES ? "pax" : "skip";
    else if (type === "0" || type === "\0") {
      if (!this.state.listed) {
        if (name !== CONTENT_LIST)
          throw invalid(
            `the archive starts with ${name}, not ${CONTENT_LIST}: import a plain OCI layout through the distribution API (bundle import without --via-server)`,
          );
        kind = "list";
      } else {
        digest = digestOfPath(name);
        const item = digest === undefined ? undefined : listed(list!, digest);
        if (item !== undefined) {
          if (item.size !== size)
            throw new RegistryError(
              "SIZE_INVALID",
              `${item.digest}: the bundle holds ${size} bytes, its content list says ${item.size} (part ${this.index})`,
              { digest: item.digest, part: this.index },
            );
          kind = item.manifest ? "manifest" : "blob";
        }
      }
    }
    if (kind === "list" && size > MAX_CONTENT_LIST_BYTES)
      throw invalid(`the bundle's content list is larger than ${MAX_CONTENT_LIST_BYTES} bytes`);
    const entry: OpenEntry = {
      name,
      kind,
      ...(digest !== undefined ? { digest } : {}),
      size,
      at: headerAt,
      remaining: size,
      padding: (512 - (size % 512)) % 512,
      segments: [],
    };
    this.state.entry = entry;
    if (kind === "blob") {
      const item = listed(list!, digest!)!;
      // Already here (a part sent again, a re-run): its bytes pass by unread.
      if (await this.receiver.place(item, this.state.counts, false)) {
        this.state.entry = { ...entry, kind: "skip" };
        return;
      }
    }
    await this.open(this.state.entry, this.leftAfter(after));
    if (size === 0) await this.finish();
  }

  /** An entry carried over from the last part. */
  private async resume(entry: OpenEntry): Promise<void> {
    if (entry.remaining > 0) await this.open(entry, this.size);
  }

  /** Where the entry's data goes: its consumer when it ends in this part, else a segment. */
  private async open(entry: OpenEntry, left: number): Promise<void> {
    if (entry.kind === "skip") return;
    if (entry.remaining > left) {
      this.segment = await this.receiver.writeSegment(this.id, entry.at, this.index);
      // Failures surface in write() and closeSegment(); an unheard 'error' would end the process.
      this.segment.on("error", () => {});
      return;
    }
    const input = new PassThrough({ highWaterMark: 1 << 20 });
    // Destroyed on a failed part: its consumer hears it through its own reads (or never reads).
    input.on("error", () => {});
    const body = entry.segments.length > 0 ? this.receiver.joined(this.id, entry, input) : input;
    const done = this.consume(entry, body);
    done.catch(() => {});
    this.sink = { input, done };
  }

  private async consume(entry: OpenEntry, body: Readable): Promise<void> {
    if (entry.kind === "blob") {
      const list = await this.receiver.contentList(this.id, this.state);
      await this.receiver.storeBlob(listed(list, entry.digest!)!, this.state, body, this.index);
      return;
    }
    const limit =
      entry.kind === "list"
        ? MAX_CONTENT_LIST_BYTES
        : entry.kind === "pax"
          ? MAX_PAX_BYTES
          : this.receiver.maxManifestBytes;
    const bytes = await readLimited(body, limit, (n) =>
      invalid(`${entry.name}: larger than ${n} bytes (part ${this.index})`),
    );
    if (entry.kind === "list") await this.receiver.acceptList(this.id, this.state, bytes);
    else if (entry.kind === "pax") this.state.pax = parsePax(bytes);
    else {
      const list = await this.receiver.contentList(this.id, this.state);
      await this.receiver.storeManifest(listed(list, entry.digest!)!, this.state, bytes, this.index);
    }
  }

  private async write(data: Buffer): Promise<void> {
    const target: Writable | undefined = this.sink?.input ?? this.segment;
    if (target === undefined) return;
    if (target.errored) throw target.errored;
    if (!target.write(data))
      await new Promise<void>((resolve, reject) => {
        // The consumer failing (a digest, storage) ends the wait as much as the drain does.
        const failed = (error: Error) => {
          target.off("drain", drained);
          reject(error);
        };
        const drained = () => {
          target.off("error", failed);
          resolve();
        };
        target.once("drain", drained);
        target.once("error", failed);
        this.sink?.done.then(undefined, failed);
      });
  }

  private async finish(): Promise<void> {
    const sink = this.sink;
    this.sink = undefined;
    if (sink !== undefined) {
      sink.input.end();
      await sink.done;
    }
  }

  private async closeSegment(): Promise<void> {
    const segment = this.segment;
    this.segment = undefined;
    if (segment === undefined) return;
    await new Promise<void>((resolve, reject) => {
      if (segment.errored) return reject(segment.errored);
      segment.once("error", reject);
      segment.once("finish", resolve);
      segment.end();
    });
    this.state.entry!.segments.push(this.index);
  }
}

function listed(list: ContentList, digest: string): BundleContent | undefined {
  // Content lists run to a million entries: index them once per list.
  let index = indexes.get(list);
  if (index === undefined) {
    index = new Map(list.content.map((c) => [c.digest, c]));
    indexes.set(list, index);
  }
  return index.get(digest);
}
const indexes = new WeakMap<ContentList, Map<string, BundleContent>>();

function checksumOk(header: Buffer): boolean {
  const stored = parseInt(header.subarray(148, 156).toString("ascii").replace(/\0.*$/s, "").trim(), 8);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
  return stored === sum;
}

function tarName(header: Buffer): string {
  const field = (start: number, length: number) => {
    const bytes = header.subarray(start, start + length);
    const end = bytes.indexOf(0);
    return bytes.subarray(0, end < 0 ? length : end).toString("utf8");
  };
  const name = field(0, 100);
  const prefix = header.subarray(257, 262).toString("ascii") === "ustar" ? field(345, 155) : "";
  return prefix === "" ? name : `${prefix}/${name}`;
}

function tarSize(header: Buffer): number {
  const field = header.subarray(124, 136);
  // Sizes past 8 GiB are base-256 (first byte 0x80), as GNU tar and tar-stream write them.
  if ((field[0]! & 0x80) !== 0) return Number(field.subarray(1).reduce((n, b) => n * 256n + BigInt(b), 0n));
  return parseInt(field.toString("ascii").replace(/\0.*$/s, "").trim() || "0", 8);
}

/** `path` and `size` of a pax extended header (`LEN key=value\n` records). */
function parsePax(bytes: Buffer): { path?: string; size?: number } {
  const out: { path?: string; size?: number } = {};
  let at = 0;
  while (at < bytes.length) {
    const space = bytes.indexOf(0x20, at);
    const length = Number(bytes.subarray(at, space).toString("ascii"));
    if (space < 0 || !Number.isSafeInteger(length) || length <= 0) break;
    const record = bytes.subarray(space + 1, at + length - 1).toString("utf8");
    const eq = record.indexOf("=");
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (key === "path") out.path = value;
    if (key === "size" && /^\d+$/.test(value)) out.size = Number(value);
    at += length;
  }
  return out;
}
