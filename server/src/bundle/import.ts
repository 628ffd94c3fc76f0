/**
 * `bundle import` and `bundle inspect`. An import streams the bundle once: each blob straight
 * from the archive into an upload (the registry verifies its digest before linking it, through its
 * normal write path, so a collection running meanwhile protects it), skipping what the target
 * repository already holds — a re-run after a kill sends nothing that landed — and mounting what
 * another repository holds. Manifests follow by digest, children first, and tags come last, only
 * when everything under them is in place: a damaged or cut bundle commits no tag.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { Transform, type Readable } from "node:stream";
import { extract as tarExtract, type Header as Headers } from "tar-stream";
import { readLimited } from "../read-limited.js";
import { parseManifest } from "../registry/manifest.js";
import {
  BundleError,
  CONTENT_LIST,
  digestOfPath,
  splitTarget,
  validateContentList,
  type BundleContent,
  type BundleImage,
  type ContentList,
} from "./format.js";
import { cutEntry, readBundle, type BundleFiles } from "./parts.js";
import type { PushClient } from "./push-client.js";

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** A bundle of 50,000 blobs lists about 10 MiB; JSON.parse of this much stays in tens of MiB. */
const MAX_CONTENT_LIST_BYTES = 16 * 1024 * 1024;

export interface ImportReport {
  readonly images: { target: string; digest: string }[];
  readonly uploaded: number;
  readonly mounted: number;
  /** Blobs the target repository already held: not sent. */
  readonly skipped: number;
  readonly manifests: number;
  readonly bytesSent: number;
}

type Entry = { header: Headers; stream: Readable };

/** Calls `each` for every entry of the bundle, in order; an entry not consumed is skipped. */
async function entries(
  files: BundleFiles,
  each: (entry: Entry) => Promise<void>,
  onBytes?: (n: number) => void,
) {
  const cut = cutEntry(files);
  const extract = tarExtract();
  const source = readBundle(files, onBytes);
  source.on("error", (error) => extract.destroy(error));
  source.pipe(extract);
  let last = "(start)";
  try {
    for await (const entry of extract as AsyncIterable<Readable & { header: Headers }>) {
      last = entry.header.name;
      if (last === cut) throw new BundleError(`the bundle is cut short in ${cut}: the rest of it is missing`);
      await each({ header: entry.header, stream: entry });
      entry.resume();
    }
  } catch (error) {
    if (error instanceof BundleError) throw error;
    throw new BundleError(`the bundle is damaged or cut short after ${last}: ${(error as Error).message}`);
  }
}

async function readJson(stream: Readable, limit: number): Promise<unknown> {
  const bytes = await readLimited(stream, limit).catch(() => {
    throw new BundleError(`the bundle's content list is larger than ${limit} bytes`);
  });
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new BundleError("the bundle's content list is not JSON");
  }
}

/** Hashes what passes and fails at the end if it is not `digest` of `size` bytes. */
function verifying(digest: string, size: number): Transform {
  const [algorithm, hex] = digest.split(":") as [string, string];
  const hash = createHash(algorithm);
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      seen += chunk.length;
      done(null, chunk);
    },
    flush(done) {
      const actual = hash.digest("hex");
      done(
        seen === size && actual === hex
          ? null
          : new BundleError(`${digest}: the bundle holds ${seen} bytes hashing to sha256:${actual}`),
      );
    },
  });
}

function sizeOf(digest: string, sizes: Map<string, number>): number {
  const size = sizes.get(digest);
  if (size === undefined || !Number.isSafeInteger(size) || size < 0)
    throw new BundleError(`${digest}: the layout's manifest gives it no size`);
  return size;
}

/** Reads a plain OCI layout tar's index and manifests (passes over the file, data skipped). */
async function planLayout(files: BundleFiles, repository: string | undefined): Promise<ContentList> {
  let index:
    | {
        manifests?: {
          digest: string;
          mediaType: string;
          size: number;
          annotations?: Record<string, string>;
        }[];
      }
    | undefined;
  await entries(files, async ({ header, stream }) => {
    if (header.name.replace(/^\.\//, "") === "index.json")
      index = JSON.parse((await readLimited(stream, MAX_MANIFEST_BYTES)).toString("utf8"));
  });
  if (index === undefined)
    throw new BundleError("the archive is neither a bundle nor an OCI layout (no index.json)");
  const images: BundleImage[] = [];
  for (const descriptor of index.manifests ?? []) {
    const name = descriptor.annotations?.["org.opencontainers.image.ref.name"];
    if (name === undefined) continue;
    const lastColon = name.lastIndexOf(":");
    const hasRepository = lastColon > 0 && lastColon > name.lastIndexOf("/");
    const tag = hasRepository ? name.slice(lastColon + 1) : name;
    const target = repository ?? (hasRepository ? name.slice(0, lastColon) : undefined);
    if (target === undefined)
      throw new BundleError(`the layout names its image "${name}" only: give --repository`);
    images.push({
      source: name,
      target: `${target}:${tag}`,
      digest: descriptor.digest,
      mediaType: descriptor.mediaType,
    });
  }
  if (images.length === 0)
    throw new BundleError("the OCI layout names no image (org.opencontainers.image.ref.name)");

  // Manifests reachable from the named images, level by level.
  const manifests = new Map<string, { bytes: Buffer; repositories: Set<string> }>();
  let wanted = new Map<string, Set<string>>(
    images.map((i) => [i.digest, new Set([splitTarget(i.target).repository])]),
  );
  for (let depth = 0; wanted.size > 0 && depth < 8; depth++) {
    const found = new Map<string, Buffer>();
    await entries(files, async ({ header, stream }) => {
      const digest = digestOfPath(header.name);
      if (digest !== undefined && wanted.has(digest) && (header.size ?? 0) <= MAX_MANIFEST_BYTES)
        found.set(digest, await readLimited(stream, MAX_MANIFEST_BYTES));
    });
    const next = new Map<string, Set<string>>();
    for (const [digest, repositories] of wanted) {
      const bytes = found.get(digest);
      if (bytes === undefined) throw new BundleError(`${digest}: manifest missing from the layout`);
      manifests.set(digest, { bytes, repositories });
      for (const child of parseManifest(bytes).children)
        if (!manifests.has(child.value))
          next.set(child.value, new Set([...(next.get(child.value) ?? []), ...repositories]));
    }
    wanted = next;
  }
  const content: BundleContent[] = [];
  const blobs = new Map<string, BundleContent>();
  const sized = (bytes: Buffer) => {
    const body = JSON.parse(bytes.toString("utf8")) as {
      config?: { digest: string; size: number };
      layers?: { digest: string; size: number }[];
    };
    return new Map(
      [body.config, ...(body.layers ?? [])].filter((d) => d !== undefined).map((d) => [d!.digest, d!.size]),
    );
  };
  for (const [digest, { bytes, repositories }] of manifests) {
    const parsed = parseManifest(bytes);
    const sizes = sized(bytes);
    for (const blob of parsed.blobs) {
      const existing = blobs.get(blob.value);
      if (existing) {
        for (const r of repositories) if (!existing.repositories.includes(r)) existing.repositories.push(r);
        continue;
      }
      const entry: BundleContent = {
        digest: blob.value,
        size: sizeOf(blob.value, sizes),
        mediaType: "application/octet-stream",
        manifest: false,
        repositories: [...repositories],
        source: "layout",
      };
      blobs.set(blob.value, entry);
    }
    content.push({
      digest,
      size: bytes.length,
      mediaType: parsed.mediaType,
      manifest: true,
      repositories: [...repositories],
      source: "layout",
    });
  }
  // Children were found after their parents: commit them first.
  content.reverse();
  return validateContentList({
    version: 1,
    created: new Date(0).toISOString(),
    images,
    content: [...blobs.values(), ...content],
  });
}

/** The name in the archive's first tar header (its first 100 bytes, NUL-terminated). */
function firstEntryName(files: BundleFiles): string {
  const header = Buffer.alloc(100);
  const fd = openSync(files.parts[0]!.path, "r");
  try {
    readSync(fd, header, 0, 100, 0);
  } finally {
    closeSync(fd);
  }
  const end = header.indexOf(0);
  return header.subarray(0, end < 0 ? 100 : end).toString("utf8");
}

export interface ImportOptions {
  readonly client: PushClient;
  /** For a plain OCI layout whose index names images by tag only. */
  readonly repository?: string;
  readonly onPlanned?: (list: ContentList) => void;
  readonly onBytes?: (n: number) => void;
}

export async function importBundle(files: BundleFiles, options: ImportOptions): Promise<ImportReport> {
  const { client } = options;
  let list: ContentList | undefined;
  const firstIsList = firstEntryName(files) === CONTENT_LIST;
  if (!firstIsList) {
    list = await planLayout(files, options.repository);
    options.onPlanned?.(list);
  }

  const have = await client.have().catch(() => ({ digests: [] as string[], freeBytes: null }));
  const held = new Set(have.digests);
  const byDigest = new Map<string, BundleContent>();
  const done = new Set<string>();
  const manifests = new Map<string, Buffer>();
  let uploaded = 0;
  let mounted = 0;
  let skipped = 0;

  const place = async (item: BundleContent, stream: Readable | undefined): Promise<void> => {
    const [first, ...others] = item.repositories;
    if (await client.blobExists(first!, item.digest)) skipped++;
    else if (held.has(item.digest) && (await client.mount(first!, item.digest))) mounted++;
    else if (stream !== undefined) {
      if (item.size < 0) throw new BundleError(`${item.digest}: no size in the layout`);
      const checked = stream.pipe(verifying(item.digest, item.size));
      // A damaged or cut bundle shows up as the upload's body failing: say that, not "hang up".
      let broken: Error | undefined;
      const fail = (error: Error) => {
        broken ??= error;
        checked.destroy(error);
      };
      stream.on("error", fail);
      checked.on("error", (error: Error) => (broken ??= error));
      await client.upload(first!, item.digest, item.size, checked).catch((error: Error) => {
        const cause = broken ?? error;
        throw new BundleError(
          broken instanceof BundleError
            ? broken.message
            : broken !== undefined
              ? `${item.digest}: the bundle is damaged or cut short here (${cause.message})`
              : `${item.digest} failed: ${cause.message}`,
        );
      });
      uploaded++;
    } else return;
    for (const repository of others)
      if (
        !(await client.blobExists(repository, item.digest)) &&
        !(await client.mount(repository, item.digest))
      )
        throw new BundleError(`${item.digest}: could not be linked into ${repository}`);
    done.add(item.digest);
  };

  const plan = (content: ContentList) => {
    list = content;
    for (const item of content.content) byDigest.set(item.digest, item);
    const needed = content.content
      .filter((c) => !c.manifest && !held.has(c.digest))
      .reduce((sum, c) => sum + Math.max(0, c.size), 0);
    if (have.freeBytes !== null && needed > have.freeBytes)
      throw new BundleError(
        `the bundle needs ${needed} bytes the registry lacks, and it has ${have.freeBytes} free`,
      );
  };
  if (list !== undefined) plan(list);

  await entries(
    files,
    async ({ header, stream }) => {
      if (header.name === CONTENT_LIST && firstIsList) {
        const parsed = validateContentList(await readJson(stream, MAX_CONTENT_LIST_BYTES));
        options.onPlanned?.(parsed);
        plan(parsed);
        return;
      }
      const digest = digestOfPath(header.name);
      const item = digest === undefined ? undefined : byDigest.get(digest);
      if (item === undefined || done.has(item.digest)) return;
      if (item.manifest) {
        const bytes = await readLimited(stream.pipe(verifying(item.digest, item.size)), MAX_MANIFEST_BYTES);
        manifests.set(item.digest, bytes);
      } else {
        await place(item, stream);
      }
    },
    options.onBytes,
  );
  if (list === undefined) throw new BundleError("the bundle holds no content list");

  // What the bundle left out (the site had it) or did not reach: present already, or missing.
  for (const item of list.content)
    if (!item.manifest && !done.has(item.digest)) {
      await place(item, undefined);
      if (!done.has(item.digest))
        throw new BundleError(`${item.digest}: not in the bundle and not in the registry (a cut bundle?)`);
    }
  for (const item of list.content.filter((c) => c.manifest)) {
    const bytes = manifests.get(item.digest);
    if (bytes === undefined) throw new BundleError(`${item.digest}: manifest missing from the bundle`);
    for (const repository of item.repositories)
      await client.putManifest(repository, item.digest, item.mediaType, bytes);
  }
  // Tags last: everything they name is in place.
  for (const image of list.images) {
    const { repository, tag } = splitTarget(image.target);
    await client.putManifest(repository, tag, image.mediaType, manifests.get(image.digest)!);
  }
  return {
    images: list.images.map((i) => ({ target: i.target, digest: i.digest })),
    uploaded,
    mounted,
    skipped,
    manifests: manifests.size,
    bytesSent: client.bytesSent,
  };
}

export interface InspectReport {
  readonly images: BundleImage[];
  readonly entries: number;
  readonly bytes: number;
  readonly omitted: number;
  readonly problems: string[];
}

/** Lists and verifies a bundle without importing: every blob against its digest, every part against its list. */
export async function inspectBundle(
  files: BundleFiles,
  onBytes?: (n: number) => void,
): Promise<InspectReport> {
  let list: ContentList | undefined;
  const seen = new Set<string>();
  const sizes = new Map<string, number>();
  const problems: string[] = [];
  let count = 0;
  try {
    await entries(
      files,
      async ({ header, stream }) => {
        count++;
        if (header.name === CONTENT_LIST) {
          list = validateContentList(await readJson(stream, MAX_CONTENT_LIST_BYTES));
          return;
        }
        const digest = digestOfPath(header.name);
        if (digest === undefined) return;
        sizes.set(digest, header.size ?? 0);
        try {
          await new Promise<void>((resolve, reject) => {
            const check = stream.pipe(verifying(digest, header.size ?? 0));
            check.on("error", reject);
            check.on("finish", resolve);
            check.resume();
          });
          seen.add(digest);
        } catch (error) {
          problems.push((error as Error).message);
        }
      },
      onBytes,
    );
  } catch (error) {
    problems.push((error as Error).message);
  }
  if (list !== undefined)
    for (const item of list.content)
      if (!item.omitted && !seen.has(item.digest) && !problems.some((p) => p.startsWith(item.digest)))
        problems.push(`${item.digest}: listed but not in the bundle`);
      else if (seen.has(item.digest) && sizes.get(item.digest) !== item.size)
        problems.push(
          `${item.digest}: the bundle holds ${sizes.get(item.digest)} bytes, its content list says ${item.size}`,
        );
  return {
    images: list?.images ?? [],
    entries: count,
    bytes: files.size,
    omitted: list?.content.filter((c) => c.omitted).length ?? 0,
    problems,
  };
}
