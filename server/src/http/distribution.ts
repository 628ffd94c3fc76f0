import type { Socket } from "node:net";
import type { Context } from "koa";
import { isDigest, parseDigest, type Digest } from "../registry/digest.js";
import { RegistryError, manifestUnknown } from "../registry/errors.js";
import { parseReference, type ManifestReference } from "../registry/manifests.js";
import { isValidTag, validateName } from "../registry/names.js";
import type { Page, Registry } from "../registry/registry.js";
import { MANIFEST_MEDIA_TYPES, MediaType } from "../registry/media-types.js";
import { badRequest, writeError } from "./errors.js";
import type { RequestAuthorizer } from "./auth.js";
import { decodeComponent as decode } from "./url.js";
import { parseChunkRange, parseRangeHeader } from "./range.js";
import { matcher, queryValue, type Matcher, type Route } from "./routes.js";
import { canSendfile, sendFile, streamFile } from "./sendfile.js";
import { SMALL_BLOB_BYTES } from "../registry/blobs.js";
import type { UploadBody } from "../registry/uploads.js";
import { BufferBudgetExhausted, readLimited, type BufferBudget } from "../read-limited.js";

/** What distribution handlers need besides the domain. */
export interface DistributionOptions {
  readonly maxManifestBytes: number;
  /**
   * What `Location` headers start with: `http.host` when configured, else the scheme and Host of
   * the request (as the reference registry does), or nothing with `http.relativeurls`.
   */
  readonly locationBase: (ctx: Context) => string;
  /** Who may do what; everything is open without auth. */
  readonly authz: RequestAuthorizer;
  /** The path the API is served under (`http.prefix`), for the `Link` headers; "" for the root. */
  readonly pathPrefix?: string;
  /** Told the size of each large blob streamed through JavaScript buffers (not sendfile). */
  readonly onBlobStreamed?: (bytes: number) => void;
  /** Request bytes held in memory across requests (`http.maxbufferedbytes`); unbounded when absent. */
  readonly bodyBudget?: BufferBudget;
}

const NAME = "(.+?)";

/**
 * Manifest bodies up to this size (declared by Content-Length) are handled as they come; real
 * image manifests and multi-arch indexes are a few KiB. Larger ones (up to `maxmanifestbytes`, 4
 * MiB by default: an artifact index may list tens of thousands of children) and bodies of no
 * declared length take a turn at the gate below.
 */
const SMALL_MANIFEST_BYTES = 256 * 1024;
/** Large manifests read and processed at once, per process (each with a buffer of the size limit). */
const LARGE_MANIFESTS_AT_ONCE = 2;
/** Large manifest pushes that may wait for a turn; past this, 503 at once (the client retries). */
const LARGE_MANIFESTS_WAITING = 64;
/** How long a large manifest push waits for its turn before it is answered 503. */
const LARGE_MANIFEST_WAIT_MS = 60_000;

/**
 * Turns at handling a large manifest: a counting semaphore with a bounded queue and a bounded wait
 * (a turn that cannot be had is BufferBudgetExhausted: 503, retry later, as when the body budget
 * runs out). Each turn lends one of `slots` body buffers of `bytes`, made on first use and reused:
 * a fresh buffer of a few MiB per push would outlive V8's young generation and pile up outside
 * the heap until a full collection (16 pushes of 4 MiB: +64 MiB and more).
 */
class LargeManifestTurns {
  private readonly free: Buffer[] = [];
  private made = 0;
  private readonly waiting: ((buffer: Buffer) => void)[] = [];

  constructor(
    private readonly slots: number,
    private readonly bytes: number,
    private readonly maxWaiting: number,
    private readonly maxWaitMs: number,
  ) {}

  /** Runs `work` in a turn; `socket` (the waiting request's) is not timed out while it waits. */
  async run<T>(work: (buffer: Buffer) => Promise<T>, socket?: Socket): Promise<T> {
    let buffer = this.free.pop();
    if (buffer === undefined && this.made < this.slots) {
      this.made++;
      // One byte more than any body it holds: a body is then never a view spanning the whole
      // buffer, which is how the domain tells a borrowed buffer (that it copies) from its own.
      buffer = Buffer.allocUnsafe(this.bytes + 1);
    }
    if (buffer === undefined) {
      if (this.waiting.length >= this.maxWaiting) throw new BufferBudgetExhausted();
      // Its body is not read while it waits: http.bodytimeout would cut it off unanswered. The
      // wait has its own bound, past which the client is answered 503.
      const timeout = socket?.timeout ?? 0;
      socket?.setTimeout(0);
      buffer = await new Promise<Buffer>((resolve, reject) => {
        const start = (lent: Buffer) => {
          clearTimeout(timer);
          resolve(lent);
        };
        const timer = setTimeout(() => {
          this.waiting.splice(this.waiting.indexOf(start), 1);
          reject(new BufferBudgetExhausted());
        }, this.maxWaitMs);
        this.waiting.push(start);
      }).finally(() => {
        if (socket !== undefined && !socket.destroyed) socket.setTimeout(timeout);
      });
    }
    try {
      return await work(buffer);
    } finally {
      // The buffer passes straight to the next waiter, else back to the free list.
      const next = this.waiting.shift();
      if (next !== undefined) next(buffer);
      else this.free.push(buffer);
    }
  }
}

/**
 * The OCI Distribution API (`/v2/...`): parse, call the domain, answer. Routes are matched on the
 * raw path; each handler validates its parameters so malformed input is a 4xx, never a 500.
 */
export function distributionRoutes(registry: Registry, options: DistributionOptions): Matcher {
  const { authz } = options;
  const largeManifests = new LargeManifestTurns(
    LARGE_MANIFESTS_AT_ONCE,
    options.maxManifestBytes,
    LARGE_MANIFESTS_WAITING,
    LARGE_MANIFEST_WAIT_MS,
  );
  const routes: Route[] = [
    { name: "base", pattern: /^\/v2\/?$/, methods: { GET: base } },
    { name: "catalog", pattern: /^\/v2\/_catalog$/, methods: { GET: catalog } },
    { name: "tags", pattern: new RegExp(`^/v2/${NAME}/tags/list$`), methods: { GET: tags } },
    {
      name: "manifest",
      pattern: new RegExp(`^/v2/${NAME}/manifests/([^/]+)$`),
      methods: { GET: getManifest, HEAD: getManifest, PUT: putManifest, DELETE: deleteManifest },
    },
    {
      name: "upload_start",
      pattern: new RegExp(`^/v2/${NAME}/blobs/uploads/?$`),
      methods: { POST: startUpload },
    },
    {
      name: "upload",
      pattern: new RegExp(`^/v2/${NAME}/blobs/uploads/([^/]+)$`),
      methods: { GET: uploadStatus, PATCH: patchUpload, PUT: putUpload, DELETE: cancelUpload },
    },
    {
      name: "blob",
      pattern: new RegExp(`^/v2/${NAME}/blobs/([^/]+)$`),
      methods: { GET: getBlob, HEAD: getBlob, DELETE: deleteBlob },
    },
    {
      name: "referrers",
      pattern: new RegExp(`^/v2/${NAME}/referrers/([^/]+)$`),
      methods: { GET: referrers },
    },
  ];

  /**
   * The reference of a GET, HEAD or DELETE. A name that can be no tag (`.INVALID_MANIFEST_NAME`)
   * names no manifest: 404 MANIFEST_UNKNOWN, as the conformance suite and the reference registry
   * answer. Only PUT, which would create it, refuses it as invalid (400). A reference with a `:`
   * is a digest, and a malformed one stays 400 DIGEST_INVALID as on every other route.
   */
  function lookupReference(raw: string): ManifestReference {
    const reference = decode(raw);
    if (!isDigest(reference) && !isValidTag(reference)) throw manifestUnknown(reference.slice(0, 200));
    return parseReference(reference);
  }

  function base(ctx: Context) {
    authz.requireAuthenticated(ctx);
    ctx.type = "application/json";
    ctx.body = "{}";
  }

  async function catalog(ctx: Context) {
    authz.requireSomeAccess(ctx);
    const { n, last } = pagination(ctx);
    const page = await registry.listRepositories(n, last, (name) => authz.may(ctx, "pull", name));
    setNextLink(ctx, `${options.pathPrefix ?? ""}/v2/_catalog`, n, page);
    ctx.body = { repositories: page.items };
  }

  async function tags(ctx: Context, [rawName]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "pull", name);
    const { n, last } = pagination(ctx);
    const page = await registry.listTags(name, n, last);
    setNextLink(ctx, `${options.pathPrefix ?? ""}/v2/${name}/tags/list`, n, page);
    ctx.body = { name, tags: page.items };
  }

  async function getManifest(ctx: Context, [rawName, rawReference]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "pull", name);
    const manifest = await registry.getManifest(name, lookupReference(rawReference!), acceptedTypes(ctx));
    ctx.set("Docker-Content-Digest", manifest.digest.value);
    ctx.set("ETag", `"${manifest.digest.value}"`);
    ctx.type = manifest.parsed.mediaType;
    ctx.body = manifest.bytes;
  }

  async function putManifest(ctx: Context, [rawName, rawReference]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "push", name);
    const reference = parseReference(decode(rawReference!));
    // A large manifest is read into a reused buffer, and checked, two at a time: 16 indexes of 4
    // MiB pushed at once otherwise held hundreds of MiB (issue 9 item 7). The others wait unread,
    // their bytes in the kernel. The domain copies what it keeps of a borrowed buffer.
    const store = async (into?: Buffer) => {
      const bytes = await readBody(ctx, options.maxManifestBytes, options.bodyBudget, into);
      return registry.putManifest(name, reference, bytes, ctx.get("Content-Type") || undefined);
    };
    const declared = ctx.get("Content-Length");
    const large = declared === "" || !(Number(declared) <= SMALL_MANIFEST_BYTES);
    const result = await (large ? largeManifests.run(store, ctx.req.socket) : store());
    emptyResponse(ctx, 201);
    ctx.set("Location", `${options.locationBase(ctx)}/v2/${name}/manifests/${result.digest.value}`);
    ctx.set("Docker-Content-Digest", result.digest.value);
    if (result.subject !== undefined) ctx.set("OCI-Subject", result.subject.value);
  }

  async function deleteManifest(ctx: Context, [rawName, rawReference]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "delete", name);
    await registry.deleteManifest(name, lookupReference(rawReference!));
    accepted(ctx);
  }

  async function getBlob(ctx: Context, [rawName, rawDigest]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "pull", name);
    const digest = parseDigest(decode(rawDigest!));
    const size = await registry.statBlob(name, digest);
    ctx.set("Docker-Content-Digest", digest.value);
    ctx.set("ETag", `"${digest.value}"`);
    ctx.set("Accept-Ranges", "bytes");
    ctx.set("Cache-Control", "max-age=31536000");
    ctx.type = "application/octet-stream";
    const range = ctx.method === "GET" ? parseRangeHeader(ctx.get("Range") || undefined, size) : undefined;
    if (range === "unsatisfiable") {
      ctx.set("Content-Range", `bytes */${size}`);
      writeError(ctx, new RegistryError("RANGE_INVALID", "requested range not satisfiable", { size }));
      return;
    }
    if (ctx.method === "HEAD") {
      ctx.length = size;
      ctx.status = 200;
      return;
    }
    const redirect = await registry.blobRedirect(digest);
    if (redirect !== undefined) {
      // The client fetches from the store (with its Range header); the URL expires, so no caching.
      ctx.redirect(redirect);
      ctx.status = 307;
      ctx.remove("Cache-Control");
      return;
    }
    const start = range?.start ?? 0;
    const length = range === undefined ? size : range.end - range.start + 1;
    if (range !== undefined) {
      ctx.status = 206;
      ctx.set("Content-Range", `bytes ${range.start}-${range.end}/${size}`);
    }
    ctx.length = length;
    // Large blobs from a local file: over plain HTTP the addon copies it to the socket on the
    // thread pool; over TLS (or without the addon) it goes through two pooled buffers.
    const file = length > SMALL_BLOB_BYTES ? registry.blobFile(digest) : undefined;
    if (file !== undefined) {
      ctx.status = range === undefined ? 200 : 206;
      ctx.respond = false;
      const native = canSendfile(ctx.res);
      if (!native) ctx.res.once("close", () => options.onBlobStreamed?.(length));
      await (native ? sendFile : streamFile)(ctx.res, file, start, length).catch((error: unknown) => {
        // Headers are gone: nothing to answer; the connection is closed (client went away or stalled).
        (error as NodeJS.ErrnoException).code = "ECONNRESET";
        throw error;
      });
      return;
    }
    ctx.body =
      size === 0 ? Buffer.alloc(0) : await registry.readBlob(digest, size, start, start + length - 1);
    if (length > SMALL_BLOB_BYTES) ctx.res.once("close", () => options.onBlobStreamed?.(length));
  }

  async function deleteBlob(ctx: Context, [rawName, rawDigest]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "delete", name);
    await registry.deleteBlob(name, parseDigest(decode(rawDigest!)));
    accepted(ctx);
  }

  async function startUpload(ctx: Context, [rawName]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "push", name);
    const mount = queryValue(ctx, "mount");
    if (mount !== undefined) {
      const digest = parseDigest(mount);
      const fromValue = queryValue(ctx, "from");
      const from = fromValue === undefined ? undefined : repositoryName(fromValue);
      // Mount only what the caller could pull anyway; otherwise fall back to an upload (202).
      const readable = from === undefined ? authz.mayPullEverywhere(ctx) : authz.may(ctx, "pull", from);
      if (readable && (await registry.mountBlob(name, digest, from)) !== undefined) {
        blobCreated(ctx, options.locationBase(ctx), name, digest);
        return;
      }
    }
    const digestValue = queryValue(ctx, "digest");
    if (digestValue !== undefined) {
      const digest = parseDigest(digestValue);
      const result = await registry.putBlob(name, digest, await uploadBody(ctx, options.bodyBudget));
      blobCreated(ctx, options.locationBase(ctx), name, result.digest);
      return;
    }
    const session = await registry.startUpload(name);
    uploadAccepted(ctx, options.locationBase(ctx), name, session.id, session.size, 202);
  }

  async function uploadStatus(ctx: Context, [rawName, id]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "push", name);
    const status = await registry.uploadStatus(name, decode(id!));
    uploadAccepted(ctx, options.locationBase(ctx), name, status.id, status.size, 204);
  }

  async function patchUpload(ctx: Context, [rawName, rawId]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "push", name);
    const id = decode(rawId!);
    const range = chunkRange(ctx);
    // A small chunk is read whole and appended in one storage step (a large one streams).
    const status = await registry.appendUpload(name, id, await uploadBody(ctx, options.bodyBudget), range);
    uploadAccepted(ctx, options.locationBase(ctx), name, status.id, status.size, 202);
  }

  async function putUpload(ctx: Context, [rawName, rawId]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "push", name);
    const id = decode(rawId!);
    const digestValue = queryValue(ctx, "digest");
    if (digestValue === undefined)
      throw badRequest("DIGEST_INVALID", "the digest query parameter is required");
    const digest = parseDigest(digestValue);
    const range = chunkRange(ctx);
    const hasBody = Number(ctx.get("Content-Length") || "0") > 0 || ctx.get("Transfer-Encoding") !== "";
    const result = await registry.completeUpload(
      name,
      id,
      digest,
      hasBody ? { body: await uploadBody(ctx, options.bodyBudget), range } : undefined,
    );
    blobCreated(ctx, options.locationBase(ctx), name, result.digest);
  }

  async function cancelUpload(ctx: Context, [rawName, rawId]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "push", name);
    await registry.cancelUpload(name, decode(rawId!));
    emptyResponse(ctx, 204);
  }

  async function referrers(ctx: Context, [rawName, rawDigest]: string[]) {
    const name = repositoryName(rawName!);
    authz.require(ctx, "pull", name);
    const subject = parseDigest(decode(rawDigest!));
    const artifactType = queryValue(ctx, "artifactType");
    const manifests = await registry.referrers(name, subject, artifactType);
    if (artifactType !== undefined) ctx.set("OCI-Filters-Applied", "artifactType");
    ctx.type = MediaType.OciIndex;
    ctx.body = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests });
  }

  return matcher(routes);
}

/**
 * The manifest media types an Accept header allows; undefined when it allows anything (no header,
 * a wildcard, or no manifest type named at all, as with `application/json`).
 */
function acceptedTypes(ctx: Context): ReadonlySet<string> | undefined {
  const header = ctx.get("Accept");
  if (header === "") return undefined;
  const types = header
    .split(",")
    .map((part) => part.split(";")[0]!.trim().toLowerCase())
    .filter((type) => type !== "");
  if (types.some((type) => type === "*/*" || type === "application/*")) return undefined;
  const manifestTypes = types.filter((type) => MANIFEST_MEDIA_TYPES.includes(type));
  return manifestTypes.length === 0 ? undefined : new Set(manifestTypes);
}

function repositoryName(raw: string): string {
  return validateName(decode(raw));
}

function pagination(ctx: Context): { n: number | undefined; last: string | undefined } {
  const nValue = queryValue(ctx, "n");
  let n: number | undefined;
  if (nValue !== undefined) {
    if (!/^\d{1,9}$/.test(nValue)) {
      throw new RegistryError("PAGINATION_INVALID", "n must be a non-negative integer", {
        n: nValue.slice(0, 20),
      });
    }
    n = Number(nValue);
  }
  return { n, last: queryValue(ctx, "last") };
}

function setNextLink(ctx: Context, path: string, n: number | undefined, page: Page) {
  if (!page.more || n === undefined) return;
  const last = page.items.at(-1)!;
  ctx.set("Link", `<${path}?n=${n}&last=${encodeURIComponent(last)}>; rel="next"`);
}

function chunkRange(ctx: Context) {
  const range = parseChunkRange(ctx.get("Content-Range") || undefined);
  if (range === "invalid") throw new RegistryError("RANGE_INVALID", "malformed Content-Range");
  const length = ctx.get("Content-Length");
  if (range !== undefined && length !== "" && Number(length) !== range.end - range.start + 1) {
    throw new RegistryError("RANGE_INVALID", "Content-Length does not match Content-Range");
  }
  return range;
}

/** A response with a status and no body (Koa would turn a null body into 204). */
function emptyResponse(ctx: Context, status: number) {
  ctx.status = status;
  if (status !== 204) {
    ctx.body = "";
    ctx.remove("Content-Type");
  }
}

function accepted(ctx: Context) {
  emptyResponse(ctx, 202);
}

function blobCreated(ctx: Context, base: string, name: string, digest: Digest) {
  emptyResponse(ctx, 201);
  ctx.set("Location", `${base}/v2/${name}/blobs/${digest.value}`);
  ctx.set("Docker-Content-Digest", digest.value);
}

function uploadAccepted(ctx: Context, base: string, name: string, id: string, size: number, status: number) {
  emptyResponse(ctx, status);
  ctx.set("Location", `${base}/v2/${name}/blobs/uploads/${id}`);
  ctx.set("Range", `0-${size > 0 ? size - 1 : 0}`);
  ctx.set("Docker-Upload-UUID", id);
}

/**
 * Blob bodies of a declared length up to this are read whole and stored in one write (no scratch
 * file, no stream plumbing): most blobs of an image (configs, signatures, small layers) are.
 */
const WHOLE_BODY_BYTES = 1024 * 1024;

/**
 * A blob upload's body: already read when small and of a declared length, else the stream. When
 * the memory budget is spent, a small body streams through a scratch file like a large one:
 * slower, but never refused.
 */
async function uploadBody(ctx: Context, budget: BufferBudget | undefined): Promise<UploadBody> {
  const declared = ctx.get("Content-Length");
  if (declared === "" || ctx.get("Transfer-Encoding") !== "") return ctx.req;
  const length = Number(declared);
  if (!(length <= WHOLE_BODY_BYTES)) return ctx.req;
  if (budget === undefined) return readLimited(ctx.req, length);
  if (!budget.tryTake(length)) return ctx.req;
  try {
    return await readLimited(ctx.req, length);
  } finally {
    budget.give(length);
  }
}

/** The most of an oversized body read and discarded so the client sees the 413 instead of a reset. */
const DRAIN_LIMIT = 64 * 1024 * 1024;

/**
 * Reads a small body whole; past `limit` bytes it answers 413, past the shared budget 503 (in both
 * cases reading and dropping a moderate excess first, so the client sees the answer). With `into`
 * (at least `limit` bytes), each chunk is copied there as it arrives, so that none outlives the
 * young generation, and the body returned is a view of `into`.
 */
async function readBody(
  ctx: Context,
  limit: number,
  budget: BufferBudget | undefined,
  into?: Buffer,
): Promise<Buffer> {
  const tooLarge = () => new RegistryError("MANIFEST_TOO_LARGE", `manifest exceeds ${limit} bytes`);
  const declared = Number(ctx.get("Content-Length") || "0");
  if (declared > DRAIN_LIMIT) throw tooLarge();
  let chunks: Buffer[] = [];
  let total = 0;
  let taken = 0;
  let refusal: Error | undefined;
  try {
    for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > DRAIN_LIMIT) throw refusal ?? tooLarge();
      if (total > limit) refusal ??= tooLarge();
      if (refusal === undefined && budget !== undefined && !budget.tryTake(chunk.length))
        refusal = new BufferBudgetExhausted();
      if (refusal !== undefined) {
        chunks = [];
        budget?.give(taken);
        taken = 0;
        continue;
      }
      if (budget !== undefined) taken += chunk.length;
      if (into !== undefined) chunk.copy(into, total - chunk.length);
      else chunks.push(chunk);
    }
    if (refusal !== undefined) throw refusal;
    return into !== undefined ? into.subarray(0, total) : Buffer.concat(chunks, total);
  } finally {
    budget?.give(taken);
  }
}
