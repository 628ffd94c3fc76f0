import { randomUUID, type Hash } from "node:crypto";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { isNotFound, SourceSizeError, type StorageDriver } from "../storage/driver.js";
import { layout } from "../storage/layout.js";
import type { BlobStore } from "./blobs.js";
import { digestFromHash, digestOf, newHash, type Digest } from "./digest.js";
import { loadRunningHash, newRunningHash, type RunningHash } from "./running-hash.js";
import { RegistryError, uploadUnknown } from "./errors.js";
import { isValidUploadId } from "./names.js";

/** The byte range a client says a chunk covers (`Content-Range: start-end`, inclusive). */
export interface ChunkRange {
  readonly start: number;
  readonly end: number;
}

export interface UploadStatus {
  readonly id: string;
  /** Bytes received so far. */
  readonly size: number;
}

/** Running hashes kept at most (a few hundred bytes each). */
const MAX_RUNNING_HASHES = 10_000;

/** A running sha256 of an upload's bytes, valid while `offset` equals the data file's size. */
interface HashState {
  hash: RunningHash;
  offset: number;
}

/**
 * Blob upload sessions. All state is in storage (`_uploads/<id>/data`, `startedat` and
 * `hashstates/sha256/<offset>`, as the reference registry keeps them), so a session survives a
 * restart and any worker or replica can serve it. Each chunk is hashed as it lands and the running
 * hash saved after it, so the commit reads nothing back; the last hash is also kept in memory to
 * skip loading it. A missing or unusable saved state only costs reading the data again.
 */
export class UploadStore {
  private readonly hashes = new Map<string, HashState>();
  private readonly busy = new Set<string>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    /** Told how many blob bytes each upload request brought (for the upload throughput metric). */
    private readonly onBytes: (bytes: number) => void = () => {},
    /** Several replicas: takes the session's shared lock (throws when another holds it); returns its release. */
    private readonly lockShared?: (id: string) => Promise<() => Promise<void>>,
  ) {}

  async create(name: string): Promise<UploadStatus> {
    const id = randomUUID();
    // A session lost to a power cut is only an upload the client restarts: no need to sync.
    await this.driver.putContents([
      { path: layout.uploadStartedAt(name, id), content: new Date().toISOString(), durable: false },
      { path: layout.uploadData(name, id), content: "", durable: false },
    ]);
    this.rememberHash(id, { hash: newRunningHash(), offset: 0 });
    return { id, size: 0 };
  }

  async status(name: string, id: string): Promise<UploadStatus> {
    if (!isValidUploadId(id)) throw uploadUnknown(id);
    try {
      const info = await this.driver.stat(layout.uploadData(name, id));
      return { id, size: info.size };
    } catch (error) {
      if (isNotFound(error)) throw uploadUnknown(id);
      throw error;
    }
  }

  /** Appends a chunk (or a whole streamed body) to the session; returns the new status. */
  async append(name: string, id: string, body: UploadBody, range?: ChunkRange): Promise<UploadStatus> {
    return this.exclusive(id, async () => {
      if (Buffer.isBuffer(body)) {
        const appended = await this.appendRead(name, id, body, range);
        if (appended !== undefined) return appended;
      }
      return this.appendUnlocked(name, id, asStream(body), range);
    });
  }

  /**
   * Appends a chunk already read in one storage step, when this process holds the session's
   * running hash and the data file is as long as that hash says (the driver checks as it
   * appends). Undefined, with nothing written, when it cannot: the general path then looks.
   */
  private async appendRead(
    name: string,
    id: string,
    body: Buffer,
    range: ChunkRange | undefined,
  ): Promise<UploadStatus | undefined> {
    const kept = this.hashes.get(id);
    if (kept === undefined || this.driver.appendContent === undefined || !isValidUploadId(id))
      return undefined;
    if (range !== undefined && range.start !== kept.offset) return undefined;
    checkChunkLength(range, body.length);
    let before: number;
    try {
      before = await this.driver.appendContent(layout.uploadData(name, id), body, kept.offset);
    } catch (error) {
      if (isNotFound(error)) throw uploadUnknown(id);
      throw error;
    }
    if (before !== kept.offset) return undefined;
    this.onBytes(body.length);
    const size = before + body.length;
    kept.hash.update(body);
    this.rememberHash(id, { hash: kept.hash, offset: size });
    if (body.length > 0) await this.saveHash(name, id, kept.hash, before, size);
    return { id, size };
  }

  /**
   * Closes the session: appends the optional final chunk, checks the whole content against
   * `digest`, and moves it into the blob store linked from `name`. A mismatch cancels the session.
   */
  async commit(
    name: string,
    id: string,
    digest: Digest,
    finalChunk?: { body: UploadBody; range?: ChunkRange },
  ): Promise<{ digest: Digest; size: number }> {
    return this.exclusive(id, async () => {
      if (finalChunk === undefined) {
        const committed = await this.commitKept(name, id, digest);
        if (committed !== undefined) return committed;
      }
      const status = await this.status(name, id);
      const whole = finalChunk?.body;
      if (Buffer.isBuffer(whole) && status.size === 0 && (finalChunk?.range?.start ?? 0) === 0) {
        // The whole blob in the closing request (POST, then PUT with the body): no need to go
        // through the session's file.
        checkChunkLength(finalChunk?.range, whole.length);
        // The session's files hold nothing of the blob: they go while it is stored (one wait for
        // the event loop instead of two). A blob that fails to store takes the session with it,
        // as a mismatching digest does: the client starts the upload again.
        const [stored, forgotten] = await Promise.allSettled([
          this.storeRead(name, digest, whole),
          this.forget(name, id),
        ]);
        if (stored.status === "rejected") throw stored.reason;
        if (forgotten.status === "rejected") throw forgotten.reason;
        return stored.value;
      }
      const { size } =
        finalChunk !== undefined
          ? await this.appendUnlocked(name, id, asStream(finalChunk.body), finalChunk.range, status)
          : status;
      const dataPath = layout.uploadData(name, id);
      const computed = await this.finalDigest(name, id, dataPath, size, digest);
      if (computed.value !== digest.value) await this.forget(name, id);
      checkDigest(digest, computed);
      await this.blobs.store(dataPath, name, digest, size);
      await this.forget(name, id);
      return { digest, size };
    });
  }

  /**
   * Commits a session whose running hash this process holds and says is `digest`: the data is
   * moved in as the blob, linked and the session removed in one storage batch, without asking for
   * the session's size first (the move checks that the data holds exactly the hashed bytes).
   * Undefined, with nothing done, when it cannot: the general path then looks.
   */
  private async commitKept(
    name: string,
    id: string,
    digest: Digest,
  ): Promise<{ digest: Digest; size: number } | undefined> {
    const kept = this.hashes.get(id);
    if (kept === undefined || digest.algorithm !== "sha256" || !isValidUploadId(id)) return undefined;
    if (kept.hash.digest().value !== digest.value) return undefined;
    try {
      await this.blobs.store(layout.uploadData(name, id), name, digest, kept.offset, {
        exactSize: true,
        thenRemove: layout.uploadDir(name, id),
      });
    } catch (error) {
      if (error instanceof SourceSizeError) return undefined;
      if (isNotFound(error)) throw uploadUnknown(id);
      throw error;
    }
    this.hashes.delete(id);
    return { digest, size: kept.offset };
  }

  /**
   * A whole blob in one request (`POST ?digest=`): no session to resume. A body already read
   * (small) is verified and stored in one write; a stream goes to a scratch file, hashed on the
   * way, and is moved into place only if it matches `digest`.
   */
  async putWhole(name: string, digest: Digest, body: UploadBody): Promise<{ digest: Digest; size: number }> {
    if (Buffer.isBuffer(body)) return this.storeRead(name, digest, body);
    const scratch = this.driver.scratchPath();
    let adopted = false;
    try {
      const hash = newHash(digest.algorithm);
      const tap = measuringTap(hash);
      await pipeline(body, tap, await this.driver.writer(scratch, false, { durable: true }));
      const size = tap.bytes;
      this.onBytes(size);
      checkDigest(digest, digestFromHash(hash, digest.algorithm));
      adopted = await this.blobs.store(scratch, name, digest, size);
      return { digest, size };
    } finally {
      if (!adopted) await this.driver.delete(scratch);
    }
  }

  /** Verifies a whole body already read and stores it as the blob, data and link in one batch. */
  private async storeRead(
    name: string,
    digest: Digest,
    content: Buffer,
  ): Promise<{ digest: Digest; size: number }> {
    this.onBytes(content.length);
    checkDigest(digest, digestOf(content, digest.algorithm));
    await this.blobs.storeContent(name, digest, content);
    return { digest, size: content.length };
  }

  async cancel(name: string, id: string): Promise<void> {
    await this.status(name, id);
    await this.forget(name, id);
  }

  private async appendUnlocked(
    name: string,
    id: string,
    body: Readable,
    range?: ChunkRange,
    known?: UploadStatus,
  ): Promise<UploadStatus> {
    const { size } = known ?? (await this.status(name, id));
    if (range !== undefined && range.start !== size) {
      throw new RegistryError("RANGE_INVALID", `chunk must start at offset ${size}`, { range, size });
    }
    const hashing = await this.runningHash(name, id, size);
    const tap = measuringTap(hashing);
    // Synced as each chunk lands (the disk works while the client sends the next), so the data is
    // durable when the chunk is acknowledged and the commit has nothing left to flush.
    const out = await this.driver.writer(layout.uploadData(name, id), true, { durable: true });
    await pipeline(body, tap, out);
    const written = tap.bytes;
    this.onBytes(written);
    checkChunkLength(range, written);
    if (hashing !== undefined) {
      this.rememberHash(id, { hash: hashing, offset: size + written });
      if (written > 0) await this.saveHash(name, id, hashing, size, size + written);
    }
    return { id, size: size + written };
  }

  /**
   * The running hash of the session's first `size` bytes: the one kept in memory, else the latest
   * saved state at or below `size` (hashing the bytes after it), else, for an empty session, a
   * fresh one. Undefined when none can be had without reading everything back.
   */
  private async runningHash(name: string, id: string, size: number): Promise<RunningHash | undefined> {
    const kept = this.hashes.get(id);
    this.hashes.delete(id);
    if (kept !== undefined && kept.offset === size) return kept.hash;
    if (size === 0) return newRunningHash();
    const saved = await this.savedHash(name, id, size);
    if (saved === undefined) return undefined;
    if (saved.offset < size) {
      // Bytes written after the state was saved (a crash between the two): hash only those.
      for await (const chunk of await this.driver.reader(layout.uploadData(name, id), saved.offset, size - 1))
        saved.hash.update(chunk as Buffer);
    }
    return saved.hash;
  }

  /** The latest usable saved state covering at most `size` bytes. */
  private async savedHash(name: string, id: string, size: number): Promise<HashState | undefined> {
    let names: string[];
    try {
      names = await this.driver.list(layout.uploadHashStates(name, id, "sha256"));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    const offsets = names
      .filter((n) => /^\d{1,15}$/.test(n))
      .map(Number)
      .filter((offset) => offset <= size)
      .sort((a, b) => b - a);
    for (const offset of offsets) {
      let content: Buffer;
      try {
        content = await this.driver.getContent(layout.uploadHashState(name, id, "sha256", offset));
      } catch (error) {
        if (isNotFound(error)) continue;
        throw error;
      }
      const hash = loadRunningHash(content, offset);
      if (hash !== undefined) return { hash, offset };
    }
    return undefined;
  }

  /**
   * Saves the running hash after a chunk, in storage so another replica can continue, and drops
   * the one saved before it. Not synced: the chunk's data is, and a lost or torn state is only
   * read around.
   */
  private async saveHash(
    name: string,
    id: string,
    hash: RunningHash,
    previous: number,
    offset: number,
  ): Promise<void> {
    const state = hash.save();
    if (state === undefined) return;
    await this.driver.putContent(layout.uploadHashState(name, id, "sha256", offset), state, {
      durable: false,
    });
    if (previous > 0) await this.driver.delete(layout.uploadHashState(name, id, "sha256", previous));
  }

  /**
   * The digest of the session's `size` bytes: from the running hash when there is one, else by
   * reading the data. A running hash (possibly loaded from a state something else wrote) is never
   * the last word on a mismatch: the data is then read to be sure before the upload is refused.
   */
  private async finalDigest(
    name: string,
    id: string,
    dataPath: string,
    size: number,
    wanted: Digest,
  ): Promise<Digest> {
    if (wanted.algorithm === "sha256") {
      const running = await this.runningHash(name, id, size);
      const digest = running?.digest();
      if (digest?.value === wanted.value) return digest;
    }
    // Another algorithm, no usable state, or a mismatch: hash what is stored.
    const hash = newHash(wanted.algorithm);
    if (size > 0) {
      for await (const chunk of await this.driver.reader(dataPath)) hash.update(chunk as Buffer);
    }
    return digestFromHash(hash, wanted.algorithm);
  }

  /**
   * Keeps a running hash, dropping the oldest past a bound: abandoned sessions must not grow
   * memory forever, and a dropped hash only costs a re-read at commit.
   */
  private rememberHash(id: string, state: HashState): void {
    this.hashes.delete(id);
    if (this.hashes.size >= MAX_RUNNING_HASHES) this.hashes.delete(this.hashes.keys().next().value!);
    this.hashes.set(id, state);
  }

  private async forget(name: string, id: string): Promise<void> {
    this.hashes.delete(id);
    await this.driver.delete(layout.uploadDir(name, id));
  }

  private async exclusive<T>(id: string, work: () => Promise<T>): Promise<T> {
    if (this.busy.has(id)) {
      throw new RegistryError("BLOB_UPLOAD_INVALID", "another request is writing to this upload", { id });
    }
    this.busy.add(id);
    let release: (() => Promise<void>) | undefined;
    try {
      release = await this.lockShared?.(id);
      return await work();
    } catch (error) {
      this.hashes.delete(id);
      throw error;
    } finally {
      this.busy.delete(id);
      await release?.();
    }
  }
}

/** A request body: a stream, or a small one already read whole. */
export type UploadBody = Readable | Buffer;

function asStream(body: UploadBody): Readable {
  return Buffer.isBuffer(body) ? Readable.from([body]) : body;
}

function checkDigest(expected: Digest, actual: Digest): void {
  if (actual.value !== expected.value) {
    throw new RegistryError("DIGEST_INVALID", "provided digest did not match uploaded content", {
      expected: expected.value,
      actual: actual.value,
    });
  }
}

function checkChunkLength(range: ChunkRange | undefined, written: number): void {
  if (range !== undefined && written !== range.end - range.start + 1) {
    throw new RegistryError("RANGE_INVALID", "chunk length does not match its Content-Range", {
      range,
      written,
    });
  }
}

/** A pass-through that feeds every chunk to `hash` (when given) and counts the bytes. */
function measuringTap(hash: RunningHash | Hash | undefined): Transform & { bytes: number } {
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash?.update(chunk);
      tap.bytes += chunk.length;
      callback(null, chunk);
    },
  }) as Transform & { bytes: number };
  tap.bytes = 0;
  return tap;
}
