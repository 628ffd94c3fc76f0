import cluster, { type Worker } from "node:cluster";
import { promises as fs, statSync } from "node:fs";
import type { Writable } from "node:stream";
import { Gauge, type Registry as PromRegistry } from "prom-client";
import { isNotFound, type StorageDriver } from "../storage/driver.js";
import { FilesystemDriver } from "../storage/filesystem.js";
import { BLOBS, REPOSITORIES, ROOT } from "../storage/layout.js";
import { mapLimit, revisionsOf } from "../registry/inventory.js";
import { walkRepositoryTree } from "../registry/catalog.js";
import { listOrEmpty } from "../registry/links.js";
import { readsForCollection } from "../gc/local-reads.js";
import { METRICS } from "./names.js";

/**
 * A change to what the storage figures count, said by the process that made it:
 * - `blob`: a blob directory (`blobs/<alg>/<2>`) gained or lost a blob of `bytes`;
 * - `revisions`: a repository gained or lost manifest revisions (0: its `_manifests` was written);
 * - `rescan`: something larger changed (a repository or a tree deleted): count `locus` again;
 * - `begin`: a write or delete of `locus` starts (its `blob` or `revisions` follows when it ends).
 */
export type StorageChange =
  | { kind: "begin"; locus: string }
  | { kind: "blob"; bucket: string; count: number; bytes: number }
  | { kind: "revisions"; repository: string; count: number }
  | { kind: "rescan"; locus: string };

const MESSAGE = "neam:storage-change";
/** The figures are walked again this often, in the background: what other tools did shows up. */
const REWALK_MS = 6 * 3600_000;
const BUCKET = "b:";
const REPOSITORY = "r:";
/** `t:<name>`: the repositories under a deleted tree. `all`: everything. */
const TREE = "t:";
const ALL = "all";

/**
 * Storage gauges (bytes used and free, repository, manifest and blob counts) without a walk at
 * scrape time: a store of 140,000 blobs took 33 s to walk, longer than Prometheus waits. The
 * figures are walked once in the background at start (and every few hours, to see what other
 * tools changed), and kept current from then on by the changes the registry's own writes and
 * deletes report (`ObservedFilesystemDriver`; workers send theirs to the primary, which serves
 * the metrics). Until the first walk is done the counts are not exported and `storage_stats_complete`
 * is 0.
 *
 * A walk and changes made during it: figures are kept per locus (a blob directory, a repository).
 * A change to a locus already counted is applied; one to a locus not yet counted, being counted,
 * or counted while the change was under way (between its `begin` and its end) marks it, and
 * marked loci are counted again after the pass, until none is left. In one process this is exact.
 * With workers, a change reaches the primary a little after it is made: one made while the walk
 * counts its locus may be counted twice, and two workers writing the same new blob at once both
 * report it; the next walk corrects both.
 *
 * `manifest_count` is the number of manifest revisions summed over repositories (a manifest in two
 * repositories counts twice), as `_manifests/revisions` holds them; `blob_count` and
 * `storage_bytes` count each blob once, however many repositories link it.
 */
export class StorageStats {
  private readonly buckets = new Map<string, { count: number; bytes: number }>();
  private readonly repositories = new Map<string, number>();
  private totals = { blobs: 0, bytes: 0, manifests: 0 };
  private readonly counting = new Set<string>();
  private readonly marked = new Set<string>();
  /** Writes and deletes under way, by locus. */
  private readonly pending = new Map<string, number>();
  /** Loci counted while a change of theirs was under way: counted again once it ends. */
  private readonly ambiguous = new Set<string>();
  private walking: Promise<void> | undefined;
  private firstWalkDone = false;
  private lastWalk: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly reads: StorageDriver;
  private readonly gauges;
  /** Walks so far (tests and logs: a scrape never starts one). */
  walks = 0;

  constructor(
    driver: StorageDriver,
    private readonly filesystemRoot: string | undefined,
    register: PromRegistry,
    private readonly events: {
      error?: (error: unknown) => void;
      /** A full walk finished (figures, and how long it took). */
      walked?: (figures: Record<string, number>, seconds: number) => void;
    } = {},
  ) {
    this.reads = readsForCollection(driver);
    const gauge = (name: string, help: string) => new Gauge({ name, help, registers: [register] });
    this.gauges = {
      bytes: gauge(METRICS.storageBytes, "Bytes of blob data stored (each blob once)."),
      free: gauge(METRICS.storageFreeBytes, "Bytes free on the storage volume (filesystem storage)."),
      capacity: gauge(
        METRICS.storageCapacityBytes,
        "Size of the storage volume in bytes (filesystem storage).",
      ),
      repositories: gauge(METRICS.repositoryCount, "Repositories in the registry."),
      manifests: gauge(
        METRICS.manifestCount,
        "Manifest revisions summed over repositories (one pushed to two repositories counts twice).",
      ),
      blobs: gauge(METRICS.blobCount, "Distinct blobs stored."),
      scanned: gauge(
        METRICS.storageScanTimestampSeconds,
        "When the last full walk of the storage finished (Unix time); changes since are counted as they happen.",
      ),
      complete: gauge(
        METRICS.storageStatsComplete,
        "1 when the storage figures are complete (walked, and every change since applied); 0 during the first walk.",
      ),
    };
    this.gauges.complete.set(0);
  }

  /** Starts the first walk (in the background) and the periodic ones. */
  start(): void {
    void this.walk();
    this.timer = setInterval(() => void this.walk(), REWALK_MS).unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Resolves when the walk under way (if any) is over. */
  async settled(): Promise<void> {
    while (this.walking !== undefined) await this.walking;
  }

  /** Sets the gauges from the figures as they are: no storage reads but `statfs`. */
  async publish(): Promise<void> {
    if (this.firstWalkDone) {
      this.gauges.bytes.set(this.totals.bytes);
      this.gauges.blobs.set(this.totals.blobs);
      this.gauges.repositories.set(this.repositories.size);
      this.gauges.manifests.set(this.totals.manifests);
      this.gauges.scanned.set(this.lastWalk! / 1000);
    }
    this.gauges.complete.set(this.firstWalkDone && this.marked.size === 0 ? 1 : 0);
    if (this.filesystemRoot !== undefined) {
      const s = await fs.statfs(this.filesystemRoot);
      this.gauges.free.set(s.bavail * s.bsize);
      this.gauges.capacity.set(s.blocks * s.bsize);
    }
  }

  /** Applies a change reported by a write or delete (this process's or a worker's). */
  apply(change: StorageChange): void {
    if (change.kind === "begin") {
      this.pending.set(change.locus, (this.pending.get(change.locus) ?? 0) + 1);
      if (this.counting.has(change.locus)) this.ambiguous.add(change.locus);
      return;
    }
    const locus = locusOf(change);
    if (change.kind !== "rescan") {
      const left = (this.pending.get(locus) ?? 1) - 1;
      if (left > 0) this.pending.set(locus, left);
      else this.pending.delete(locus);
    }
    const known = change.kind === "blob" ? this.buckets.has(locus) : this.repositories.has(locus.slice(2));
    if (
      change.kind === "rescan" ||
      this.counting.has(locus) ||
      this.ambiguous.has(locus) ||
      (!this.firstWalkDone && !known)
    ) {
      if (!this.pending.has(locus)) this.ambiguous.delete(locus);
      this.mark(locus);
      return;
    }
    if (change.kind === "blob") {
      const bucket = this.buckets.get(locus) ?? { count: 0, bytes: 0 };
      bucket.count += change.count;
      bucket.bytes += change.bytes;
      if (bucket.count === 0) this.buckets.delete(locus);
      else this.buckets.set(locus, bucket);
      this.totals.blobs += change.count;
      this.totals.bytes += change.bytes;
    } else {
      this.repositories.set(
        change.repository,
        (this.repositories.get(change.repository) ?? 0) + change.count,
      );
      this.totals.manifests += change.count;
    }
  }

  /** Counts `locus` again, soon (after the walk under way, if any). */
  private mark(locus: string): void {
    this.marked.add(locus);
    if (this.walking === undefined) void this.walk(false);
  }

  /** A full walk (`full`), or a recount of the marked loci only; one at a time. */
  private walk(full = true): Promise<void> {
    if (this.walking !== undefined) return this.walking;
    this.walking = (async () => {
      try {
        const started = performance.now();
        if (full) {
          this.walks++;
          await this.walkAll();
        }
        while (this.marked.size > 0) {
          const loci = [...this.marked];
          this.marked.clear();
          if (loci.includes(ALL)) await this.walkAll();
          else await mapLimit(loci, 4, (locus) => this.recount(locus));
        }
        if (full) {
          this.firstWalkDone = true;
          this.lastWalk = Date.now();
          this.events.walked?.(
            { ...this.totals, repositories: this.repositories.size },
            (performance.now() - started) / 1000,
          );
        }
      } catch (error) {
        this.events.error?.(error);
      } finally {
        this.walking = undefined;
      }
    })();
    return this.walking;
  }

  private async walkAll(): Promise<void> {
    const buckets: string[] = [];
    for (const algorithm of await listOrEmpty(this.reads, BLOBS))
      for (const prefix of await listOrEmpty(this.reads, `${BLOBS}/${algorithm}`))
        buckets.push(`${algorithm}/${prefix}`);
    // Buckets gone since the last walk (deleted by another tool) are dropped.
    for (const known of this.buckets.keys())
      if (!buckets.includes(known.slice(BUCKET.length))) await this.recount(known);
    await mapLimit(buckets, 4, (bucket) => this.recount(BUCKET + bucket));
    const names: string[] = [];
    await walkRepositoryTree(this.reads, (name, children) => {
      if (children.includes("_manifests")) names.push(name);
    });
    const found = new Set(names);
    for (const known of [...this.repositories.keys()])
      if (!found.has(known)) await this.recount(REPOSITORY + known);
    await mapLimit(names, 4, (name) => this.recount(REPOSITORY + name));
  }

  /** Counts one locus from storage and replaces its figures. */
  private async recount(locus: string): Promise<void> {
    if (locus === ALL) return this.walkAll();
    if (locus.startsWith(TREE)) {
      const top = locus.slice(TREE.length);
      const under = (name: string) => name === top || name.startsWith(`${top}/`);
      const names = [...this.repositories.keys()].filter(under);
      await walkRepositoryTree(this.reads, (name, children) => {
        if (under(name) && children.includes("_manifests")) names.push(name);
      });
      await mapLimit([...new Set(names)], 4, (name) => this.recount(REPOSITORY + name));
      return;
    }
    this.counting.add(locus);
    if (this.pending.has(locus)) this.ambiguous.add(locus);
    try {
      if (locus.startsWith(BUCKET)) {
        const dir = `${BLOBS}/${locus.slice(BUCKET.length)}`;
        let count = 0;
        let bytes = 0;
        for (const hex of await listOrEmpty(this.reads, dir)) {
          try {
            bytes += (await this.reads.stat(`${dir}/${hex}/data`)).size;
            count++;
          } catch (error) {
            if (!isNotFound(error)) throw error;
          }
        }
        const old = this.buckets.get(locus) ?? { count: 0, bytes: 0 };
        this.totals.blobs += count - old.count;
        this.totals.bytes += bytes - old.bytes;
        if (count === 0) this.buckets.delete(locus);
        else this.buckets.set(locus, { count, bytes });
      } else {
        const name = locus.slice(REPOSITORY.length);
        const children = await listOrEmpty(this.reads, `${REPOSITORIES}/${name}`);
        const count = children.includes("_manifests") ? (await revisionsOf(this.reads, name)).length : -1;
        this.totals.manifests += Math.max(count, 0) - (this.repositories.get(name) ?? 0);
        if (count < 0) this.repositories.delete(name);
        else this.repositories.set(name, count);
      }
    } finally {
      this.counting.delete(locus);
    }
  }

  /** Receives the changes workers report (`http.workers` > 1). */
  receiveFromWorkers(): void {
    cluster.on("message", (_worker: Worker, message: { type?: string; change?: StorageChange }) => {
      if (message?.type === MESSAGE && message.change !== undefined) this.apply(message.change);
    });
  }
}

function locusOf(change: Exclude<StorageChange, { kind: "begin" }>): string {
  if (change.kind === "blob") return BUCKET + change.bucket;
  if (change.kind === "revisions") return REPOSITORY + change.repository;
  return change.locus;
}

/** Where a worker's changes go: to the primary, which keeps the figures. */
export function sendToPrimary(change: StorageChange): void {
  process.send?.({ type: MESSAGE, change });
}

const BLOB_PATH = /^\/docker\/registry\/v2\/blobs\/([^/]+)\/([^/]+)\/([^/]+)(?:\/data)?$/;
const REVISION_PATH =
  /^\/docker\/registry\/v2\/repositories\/(.+?)\/_manifests\/revisions\/([^/]+)\/([^/]+)(?:\/link)?$/;
const MANIFESTS_PATH = /^\/docker\/registry\/v2\/repositories\/(.+?)\/_manifests(?:\/|$)/;

/**
 * The filesystem driver, reporting what its writes and deletes change in the storage figures.
 * Each write or delete of a blob's data or a revision link looks at the file before and after
 * (a synchronous `stat`, a few microseconds), so a blob written again or a link already there
 * changes nothing; operations on one path are serialised in this process so two of them cannot
 * both see it absent. Larger deletes (a repository, a tree) ask for a recount.
 */
export class ObservedFilesystemDriver extends FilesystemDriver {
  private readonly busy = new Map<string, Promise<unknown>>();
  private report: (change: StorageChange) => void;

  constructor(rootDirectory: string, report: (change: StorageChange) => void = () => {}) {
    super(rootDirectory);
    this.report = report;
  }

  /** Where changes go from now on. */
  observe(report: (change: StorageChange) => void): void {
    this.report = report;
  }

  override async putContents(files: Parameters<FilesystemDriver["putContents"]>[0]): Promise<void> {
    const tracked = files.map((f) => f.path).filter((p) => tracks(p));
    if (tracked.length === 0) return super.putContents(files);
    return this.observed(tracked, () => super.putContents(files));
  }

  override async move(source: string, dest: string): Promise<void> {
    if (!tracks(dest)) return super.move(source, dest);
    return this.observed([dest], () => super.move(source, dest));
  }

  override async writer(path: string, append: boolean, options?: { durable?: boolean }): Promise<Writable> {
    const stream = await super.writer(path, append, options);
    const blob = BLOB_PATH.exec(path);
    if (blob !== null)
      stream.once("close", () => this.report({ kind: "rescan", locus: `${BUCKET}${blob[1]}/${blob[2]}` }));
    return stream;
  }

  override async delete(path: string): Promise<void> {
    if (tracks(path)) return this.observed([path], () => super.delete(path));
    const rescan = rescanFor(path);
    await super.delete(path);
    if (rescan !== undefined) this.report({ kind: "rescan", locus: rescan });
  }

  /** Runs `work` on `paths` (after other work on them), reporting what changed. */
  private async observed<T>(paths: string[], work: () => Promise<T>): Promise<T> {
    const before = Promise.all(paths.map((p) => this.busy.get(p)));
    const run = before.then(async () => {
      for (const p of paths) this.report({ kind: "begin", locus: trackedLocus(p) });
      const states = paths.map((p) => this.state(p));
      try {
        return await work();
      } finally {
        paths.forEach((p, i) => this.changed(p, states[i]!, this.state(p)));
      }
    });
    const settled = run.catch(() => {});
    for (const p of paths) this.busy.set(p, settled);
    try {
      return await run;
    } finally {
      for (const p of paths) if (this.busy.get(p) === settled) this.busy.delete(p);
    }
  }

  /** The size of the file a tracked path stands for, or -1 when absent. */
  private state(path: string): number {
    const blob = BLOB_PATH.exec(path);
    const file = blob !== null ? `${ROOT}/blobs/${blob[1]}/${blob[2]}/${blob[3]}/data` : linkOf(path);
    return statSync(this.localFile(file), { throwIfNoEntry: false })?.size ?? -1;
  }

  /** Ends what `begin` started for `path` (with a change of nothing when nothing changed). */
  private changed(path: string, before: number, after: number): void {
    const blob = BLOB_PATH.exec(path);
    if (blob !== null) {
      this.report({
        kind: "blob",
        bucket: `${blob[1]}/${blob[2]}`,
        count: (after >= 0 ? 1 : 0) - (before >= 0 ? 1 : 0),
        bytes: Math.max(after, 0) - Math.max(before, 0),
      });
      return;
    }
    const revision = REVISION_PATH.exec(path)!;
    this.report({
      kind: "revisions",
      repository: revision[1]!,
      count: (after >= 0 ? 1 : 0) - (before >= 0 ? 1 : 0),
    });
  }
}

function trackedLocus(path: string): string {
  const blob = BLOB_PATH.exec(path);
  if (blob !== null) return `${BUCKET}${blob[1]}/${blob[2]}`;
  return `${REPOSITORY}${REVISION_PATH.exec(path)![1]}`;
}

function tracks(path: string): boolean {
  return BLOB_PATH.test(path) || REVISION_PATH.test(path);
}

function linkOf(revisionPath: string): string {
  return revisionPath.endsWith("/link") ? revisionPath : `${revisionPath}/link`;
}

/** What a delete of `path` (not a blob or revision) makes worth counting again, if anything. */
function rescanFor(path: string): string | undefined {
  const clean = path.replace(/\/+$/, "");
  if (clean === "" || clean === ROOT || ROOT.startsWith(`${clean}/`)) return ALL;
  // Scratch files and our own state outside the layout count for nothing.
  if (!clean.startsWith(`${ROOT}/`)) return undefined;
  if (clean === BLOBS || clean === REPOSITORIES) return ALL;
  if (clean.startsWith(`${BLOBS}/`)) {
    const parts = clean.slice(BLOBS.length + 1).split("/");
    return parts.length === 2 ? `${BUCKET}${parts[0]}/${parts[1]}` : ALL;
  }
  if (!clean.startsWith(`${REPOSITORIES}/`)) return undefined;
  const manifests = MANIFESTS_PATH.exec(clean);
  if (manifests !== null) {
    // Tags and their indexes change no figure; anything holding revisions does.
    return /\/_manifests\/tags(\/|$)/.test(clean) ? undefined : `${REPOSITORY}${manifests[1]}`;
  }
  const name = clean.slice(REPOSITORIES.length + 1);
  // `_layers`, `_uploads`, `_referrers` of a repository hold nothing counted.
  if (name.split("/").some((part) => part.startsWith("_"))) return undefined;
  return `${TREE}${name}`;
}
