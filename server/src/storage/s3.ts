import { randomBytes } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { PassThrough, Readable, Writable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type GetObjectCommandOutput,
  type ObjectCannedACL,
  type ServerSideEncryption,
  type StorageClass,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import type { Config } from "../config/schema.js";
import { ConfigError } from "../config/load.js";
import {
  PathNotFoundError,
  SourceSizeError,
  type ContentWrite,
  type FileInfo,
  type StorageDriver,
} from "./driver.js";
import {
  MIN_PART,
  PENDING_LIMIT,
  decodePending,
  encodePending,
  isPending,
  pendingSize,
  type Part,
  type Pending,
} from "./s3-pending.js";

export type S3Options = NonNullable<Config["storage"]["s3"]>;

/** Where content on its way in lives: under the root, outside the reference layout. */
const SCRATCH = "/.neam-tmp";
/** Scratch objects older than this when a driver starts were left by a crash (a move takes seconds). */
const SCRATCH_MAX_AGE_MS = 60 * 60_000;
/** The largest range one UploadPartCopy may copy. */
const MAX_PART = 5 * 1024 * 1024 * 1024;
/** S3's limit on the parts of one object. */
const MAX_PARTS = 10_000;
/** Part uploads of one append writer in flight while it buffers the next part. */
const APPEND_PARALLEL = 2;
/** Parts lib-storage uploads at once for a replacing writer. */
const REPLACE_PARALLEL = 4;
/** Keys DeleteObjects takes per request. */
const DELETE_BATCH = 1000;
/** Directories remembered as existing (see `knownDirs`); past this the memory is cleared. */
const KNOWN_DIRS_LIMIT = 20_000;
/** How long a presigned blob URL is valid (the reference's 20 minutes). */
const REDIRECT_SECONDS = 20 * 60;
/** Sockets to the S3 endpoint: one per concurrent request (64 pulling clients and their uploads). */
const MAX_SOCKETS = 256;

/** The metadata key (x-amz-meta-neam-version) that makes every write's version unique. */
const VERSION_META = "neam-version";

/**
 * The S3 driver: logical paths as keys `<rootdirectory>/docker/registry/v2/…` in one bucket, as
 * the reference registry's `s3` driver lays them out, so a bucket written by one is served by the
 * other.
 *
 * Small files are one PutObject each (S3 replaces objects atomically). A directory is a key
 * prefix; the few filesystem rules the registry relies on (no file where a directory is, and the
 * reverse) are checked before each small write.
 *
 * Appends (the chunks of an upload, across requests and restarts) go to one multipart upload kept
 * open between writers: parts of `chunksize` bytes as they fill, the rest (the tail, under 5 MiB,
 * S3's smallest part but the last) kept in the object itself with the list of parts written so
 * far — see s3-pending.ts. Its size is known from one HEAD. Reading it, or moving it into place,
 * first completes the multipart upload, so the object becomes the plain concatenation. Nothing is
 * buffered beyond a part or two per writer, nothing is copied to local disk.
 */
export class S3Driver implements StorageDriver {
  readonly name = "s3";
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly prefix: string;
  /** Bytes of each part an append or a replacing write sends (`chunksize`). */
  readonly partSize: number;
  /**
   * Directories (logical paths) known to exist, so that a small write checks only the new
   * directories above it for a file in the way. Ancestors of a known directory are known too.
   */
  private readonly knownDirs = new Set<string>();
  /** Append writers of this process not yet settled, by key (see `writer`). */
  private readonly appending = new Map<string, Promise<void>>();

  constructor(private readonly options: S3Options) {
    // The SDK warns once that releases from 2027 need Node 22; it changes nothing here.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    this.bucket = options.bucket;
    this.prefix = options.rootdirectory.replace(/^\/+|\/+$/g, "");
    this.partSize = options.chunksize;
    const agent = { keepAlive: true, maxSockets: MAX_SOCKETS };
    this.client = new S3Client({
      region: options.region,
      endpoint: endpointOf(options),
      tls: options.secure,
      forcePathStyle: options.forcepathstyle,
      useAccelerateEndpoint: options.accelerate,
      useDualstackEndpoint: options.usedualstack,
      ...(options.accesskey !== undefined && options.secretkey !== undefined
        ? {
            credentials: {
              accessKeyId: options.accesskey,
              secretAccessKey: options.secretkey,
              sessionToken: options.sessiontoken,
            },
          }
        : {}),
      // Checksums only where S3 requires them: Ceph RGW and other S3-compatible stores reject
      // the streaming checksum trailers the SDK otherwise sends.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: {
        httpAgent: new http.Agent(agent),
        httpsAgent: new https.Agent({ ...agent, rejectUnauthorized: !options.skipverify }),
        connectionTimeout: 10_000,
        requestTimeout: 120_000,
      },
    });
  }

  /**
   * Checks that the bucket answers with these credentials (a ConfigError naming the key that is
   * wrong, in one line), then clears what a crash left in the scratch area.
   */
  async init(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      throw new ConfigError(this.describeBucketError(error));
    }
    const cutoff = new Date(Date.now() - SCRATCH_MAX_AGE_MS);
    for await (const object of this.listAll(this.dirPrefix(SCRATCH))) {
      if ((object.LastModified ?? cutoff) < cutoff) await this.deleteKeys([object.Key!]);
    }
  }

  private describeBucketError(error: unknown): string {
    const status = statusOf(error);
    const where = `bucket ${JSON.stringify(this.bucket)} at ${endpointOf(this.options) ?? `region ${this.options.region}`}`;
    if (status === 404) return `storage.s3.bucket: ${where} does not exist`;
    if (status === 403 || status === 401)
      return `storage.s3.accesskey: access to ${where} denied (check accesskey/secretkey or the AWS credentials)`;
    if (status === 301 || status === 400)
      return `storage.s3.region: ${where} answered ${status}: ${messageOf(error)}`;
    return `storage.s3.regionendpoint: ${where} cannot be reached: ${messageOf(error)}`;
  }

  // --- paths ---------------------------------------------------------------------------------

  private key(path: string): string {
    checkPath(path);
    const rel = path.replace(/\/+/g, "/").replace(/\/$/, "").slice(1);
    return this.prefix === "" ? rel : rel === "" ? this.prefix : `${this.prefix}/${rel}`;
  }

  /** The key prefix of a directory's children. */
  private dirPrefix(path: string): string {
    const key = this.key(path);
    return key === "" ? "" : `${key}/`;
  }

  // --- small files ---------------------------------------------------------------------------

  async getContent(path: string): Promise<Buffer> {
    const response = await this.get(path);
    return Buffer.from(await response.Body!.transformToByteArray());
  }

  async putContent(path: string, content: Uint8Array | string): Promise<void> {
    await this.checkPlace(path);
    const body = typeof content === "string" ? Buffer.from(content) : content;
    await this.client.send(
      new PutObjectCommand({ ...this.writeParams(this.key(path)), Body: body, ContentLength: body.length }),
    );
    this.rememberParent(path);
  }

  async putContents(files: readonly ContentWrite[]): Promise<void> {
    // In order, each acknowledged (durable) before the next starts; a failure stops there.
    for (const file of files) {
      if (file.remove === true) {
        await this.delete(file.path);
      } else if (file.source !== undefined) {
        if (file.size !== undefined && (await this.stat(file.source)).size !== file.size)
          throw new SourceSizeError(file.source);
        await this.move(file.source, file.path);
      } else {
        await this.putContent(file.path, file.content);
      }
    }
  }

  /**
   * Refuses a write the filesystem would refuse: a file above `path` (ENOTDIR) or a directory at
   * it (EISDIR). Directories already known skip their check.
   */
  private async checkPlace(path: string): Promise<void> {
    const key = this.key(path);
    const checks: Promise<void>[] = [];
    for (let dir = parentOf(path); dir !== "/" && !this.knownDirs.has(dir); dir = parentOf(dir)) {
      const ancestor = dir;
      checks.push(
        this.headObject(this.key(ancestor)).then((found) => {
          if (found !== undefined) throw new Error(`ENOTDIR: ${ancestor} is a file, cannot write ${path}`);
        }),
      );
    }
    checks.push(
      this.firstUnder(`${key}/`).then((child) => {
        if (child !== undefined) throw new Error(`EISDIR: ${path} is a directory`);
      }),
    );
    const results = await Promise.allSettled(checks);
    const failed = results.find((r) => r.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  }

  private rememberParent(path: string): void {
    this.knownDirs.delete(path);
    if (this.knownDirs.size >= KNOWN_DIRS_LIMIT) this.knownDirs.clear();
    for (let dir = parentOf(path); dir !== "/" && !this.knownDirs.has(dir); dir = parentOf(dir)) {
      this.knownDirs.add(dir);
    }
  }

  private forgetTree(path: string): void {
    for (const dir of this.knownDirs) {
      if (dir === path || dir.startsWith(`${path}/`)) this.knownDirs.delete(dir);
    }
  }

  private writeParams(key: string) {
    const { encrypt, keyid, storageclass, objectacl } = this.options;
    return {
      Bucket: this.bucket,
      Key: key,
      Metadata: { [VERSION_META]: randomBytes(8).toString("hex") },
      ContentType: "application/octet-stream",
      ...(storageclass === "NONE" ? {} : { StorageClass: storageclass as StorageClass }),
      ACL: objectacl as ObjectCannedACL,
      ...(encrypt
        ? {
            ServerSideEncryption: (keyid === undefined ? "AES256" : "aws:kms") as ServerSideEncryption,
            ...(keyid === undefined ? {} : { SSEKMSKeyId: keyid }),
          }
        : {}),
    };
  }

  // --- reading -------------------------------------------------------------------------------

  /**
   * GetObject of the plain content: an object still being appended to is completed first (its
   * stored form is not its content).
   */
  private async get(path: string, range?: string): Promise<GetObjectCommandOutput> {
    const key = this.key(path);
    for (let attempt = 0; ; attempt++) {
      let response: GetObjectCommandOutput;
      try {
        response = await this.client.send(
          new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range }),
        );
      } catch (error) {
        // A range past the stored form of a pending file may be within its content.
        if (statusOf(error) !== 416 || !isPending((await this.headObject(key))?.Metadata)) {
          throw mapError(error, path);
        }
        response = { Metadata: { "neam-append": "1" }, $metadata: {} };
      }
      if (!isPending(response.Metadata)) return response;
      (response.Body as Readable | undefined)?.destroy();
      if (attempt > 2) throw new Error(`s3: ${path} stays in an unfinished append`);
      await this.complete(path);
    }
  }

  async reader(path: string, offset = 0, end?: number): Promise<Readable> {
    if (end !== undefined && end < offset) return Readable.from([]);
    const range = offset === 0 && end === undefined ? undefined : `bytes=${offset}-${end ?? ""}`;
    try {
      return (await this.get(path, range)).Body as Readable;
    } catch (error) {
      // A start at or past the end reads nothing, as a file read there does.
      if (statusOf(error) === 416) return Readable.from([]);
      throw error;
    }
  }

  async stat(path: string): Promise<FileInfo> {
    const key = this.key(path);
    if (key === this.prefix) {
      // The root: the bucket itself (no object or prefix need exist in an empty registry).
      try {
        await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      } catch (error) {
        if (statusOf(error) === 404) throw new PathNotFoundError(path);
        throw error;
      }
      return { path, size: 0, modTime: new Date(0), isDir: true, version: "bucket" };
    }
    const head = await this.headObject(key);
    if (head !== undefined) {
      const meta = head.Metadata;
      const pending = isPending(meta);
      return {
        path,
        size: pending ? pendingSize(meta!) : (head.ContentLength ?? 0),
        modTime: head.LastModified ?? new Date(0),
        isDir: false,
        version: `${head.ETag ?? ""}:${meta?.[VERSION_META] ?? head.LastModified?.getTime() ?? ""}`,
      };
    }
    const child = await this.firstUnder(`${key}/`);
    if (child === undefined) throw new PathNotFoundError(path);
    return {
      path,
      size: 0,
      modTime: child.LastModified ?? new Date(0),
      isDir: true,
      version: `dir:${child.Key}`,
    };
  }

  async list(path: string): Promise<string[]> {
    const prefix = this.dirPrefix(path);
    const names = new Set<string>();
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          Delimiter: "/",
          ContinuationToken: token,
        }),
      );
      for (const p of page.CommonPrefixes ?? []) names.add(p.Prefix!.slice(prefix.length, -1));
      for (const o of page.Contents ?? []) names.add(o.Key!.slice(prefix.length));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    names.delete("");
    if (names.size === 0) throw new PathNotFoundError(path);
    return [...names];
  }

  private async headObject(key: string) {
    try {
      return await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw error;
    }
  }

  private async firstUnder(prefix: string) {
    const page = await this.client.send(
      new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, MaxKeys: 1 }),
    );
    return page.Contents?.[0];
  }

  private async *listAll(prefix: string) {
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      yield* page.Contents ?? [];
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  private async *listUploads(prefix: string) {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({
          Bucket: this.bucket,
          Prefix: prefix,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
      yield* page.Uploads ?? [];
      if (!page.IsTruncated) return;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  // --- writing streams -----------------------------------------------------------------------

  async writer(path: string, append: boolean): Promise<Writable> {
    const key = this.key(path);
    if (!append) return this.replacingWriter(path, key);
    // A writer of this file that failed may still have parts on the wire, numbered as this one
    // would number its own: wait until they have landed or failed before starting.
    while (this.appending.has(key)) await this.appending.get(key);
    let settled!: () => void;
    this.appending.set(
      key,
      new Promise<void>((resolve) => (settled = resolve)).finally(() => this.appending.delete(key)),
    );
    try {
      return new AppendWriter(this, path, key, await this.appendStart(path, key), settled);
    } catch (error) {
      settled();
      throw error;
    }
  }

  /** A writer that replaces the object when it closes: lib-storage's managed upload. */
  private replacingWriter(path: string, key: string): Writable {
    const body = new PassThrough();
    const upload = new Upload({
      client: this.client,
      params: { ...this.writeParams(key), Body: body },
      partSize: this.partSize,
      queueSize: REPLACE_PARALLEL,
      leavePartsOnError: false,
    });
    const done = upload.done();
    let finished = false;
    const writer = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (body.write(chunk)) callback();
        else body.once("drain", () => callback());
      },
      final: (callback) => {
        body.end();
        done.then(
          () => {
            finished = true;
            this.rememberParent(path);
            callback();
          },
          (error: unknown) => callback(error as Error),
        );
      },
      destroy(error, callback) {
        if (!finished) {
          body.destroy();
          void upload.abort().catch(() => {});
        }
        callback(error);
      },
    });
    // A failed upload stops reading its body: fail the writer rather than wait for a drain.
    done.catch((error: unknown) => writer.destroy(error as Error));
    return writer;
  }

  /** Where an append to `key` starts: the parts and tail to continue from. */
  private async appendStart(path: string, key: string): Promise<AppendStart> {
    let response: GetObjectCommandOutput;
    try {
      // One request: the metadata, and the bytes when they are few enough to carry over.
      response = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=0-${PENDING_LIMIT - 1}` }),
      );
    } catch (error) {
      const status = statusOf(error);
      // Nothing yet (404), or an empty object (no byte 0 to range over).
      if (status === 404 || status === 416) return { parts: [], tail: [], created: false };
      throw error;
    }
    const body = response.Body as Readable;
    const size = totalSize(response);
    if (isPending(response.Metadata)) {
      const pending = decodePending(Buffer.from(await response.Body!.transformToByteArray()), path);
      return { upload: pending.upload, parts: pending.parts, tail: [pending.tail], created: false };
    }
    if (size < MIN_PART) {
      return { parts: [], tail: [Buffer.from(await response.Body!.transformToByteArray())], created: false };
    }
    body.destroy();
    // A plain object too large to rewrite: it becomes the first parts of a new upload, copied
    // inside the store.
    const upload = await this.createUpload(key);
    try {
      const parts: Part[] = [];
      const count = Math.ceil(size / MAX_PART);
      const step = Math.ceil(size / count);
      for (let offset = 0, n = 1; offset < size; offset += step, n++) {
        const last = Math.min(size, offset + step) - 1;
        const copied = await this.client.send(
          new UploadPartCopyCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: upload,
            PartNumber: n,
            CopySource: copySource(this.bucket, key),
            CopySourceRange: `bytes=${offset}-${last}`,
            CopySourceIfMatch: response.ETag,
          }),
        );
        parts.push({ etag: copied.CopyPartResult!.ETag!, size: last - offset + 1 });
      }
      return { upload, parts, tail: [], created: true };
    } catch (error) {
      await this.abortUpload(key, upload);
      throw error;
    }
  }

  async createUpload(key: string): Promise<string> {
    const { Bucket, Key, Metadata, ContentType, StorageClass, ACL, ...sse } = this.writeParams(key);
    const created = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket, Key, Metadata, ContentType, StorageClass, ACL, ...sse }),
    );
    return created.UploadId!;
  }

  async uploadPart(key: string, upload: string, number: number, body: Buffer): Promise<Part> {
    const result = await this.client.send(
      new UploadPartCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: upload,
        PartNumber: number,
        Body: body,
        ContentLength: body.length,
      }),
    );
    return { etag: result.ETag!, size: body.length };
  }

  async abortUpload(key: string, upload: string): Promise<void> {
    await this.client
      .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: upload }))
      .catch(() => {});
  }

  /** Replaces the object with plain content (an append that never reached a part). */
  async putPlain(path: string, key: string, content: Buffer): Promise<void> {
    await this.client.send(
      new PutObjectCommand({ ...this.writeParams(key), Body: content, ContentLength: content.length }),
    );
    this.rememberParent(path);
  }

  /** Records an append's progress: the parts written so far and the tail, in the object itself. */
  async putPending(path: string, key: string, pending: Pending): Promise<void> {
    const { body, metadata } = encodePending(pending);
    const params = this.writeParams(key);
    await this.client.send(
      new PutObjectCommand({
        ...params,
        Metadata: { ...params.Metadata, ...metadata },
        Body: body,
        ContentLength: body.length,
      }),
    );
    this.rememberParent(path);
  }

  /**
   * Turns an object still being appended to into its plain content: the tail becomes the last
   * part and the multipart upload is completed (which replaces the object atomically). S3 checks
   * every part's ETag against the recorded list, so parts overwritten by an interrupted or rival
   * writer fail the completion instead of corrupting the content.
   */
  private async complete(path: string): Promise<void> {
    const key = this.key(path);
    let pending: Pending;
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!isPending(response.Metadata)) {
        (response.Body as Readable).destroy();
        return;
      }
      pending = decodePending(Buffer.from(await response.Body!.transformToByteArray()), path);
    } catch (error) {
      throw mapError(error, path);
    }
    let uploaded: Map<number, Part>;
    try {
      uploaded = await this.listParts(key, pending.upload);
    } catch (error) {
      // Completed meanwhile by another reader: the object is plain now.
      if (!isPending((await this.headObject(key))?.Metadata)) return;
      throw new Error(`s3: cannot complete the appended data of ${path}: ${messageOf(error)}`);
    }
    pending.parts.forEach((part, i) => {
      if (bareETag(uploaded.get(i + 1)?.etag) !== bareETag(part.etag)) {
        throw new Error(`s3: the appended data of ${path} lost part ${i + 1} (overwritten or missing)`);
      }
    });
    const recorded = pending.parts.length;
    const extra = [...uploaded.keys()].filter((n) => n > recorded).sort((a, b) => a - b);
    if (extra.length === 0) {
      const parts = [...pending.parts];
      if (pending.tail.length > 0 || parts.length === 0) {
        parts.push(await this.uploadPart(key, pending.upload, parts.length + 1, pending.tail));
      }
      await this.completeUpload(
        path,
        key,
        pending.upload,
        parts.map((p, i) => [i + 1, p.etag]),
      );
      return;
    }
    // Parts an interrupted writer sent and never recorded. AWS drops parts a completion leaves
    // out; Ceph RGW refuses such a completion. So: complete with every part (all are whole parts
    // of at least 5 MiB), then cut the object back to the recorded parts and the tail by a copy
    // inside the store.
    const numbers = [...Array.from({ length: recorded }, (_, i) => i + 1), ...extra];
    if (numbers.slice(0, -1).some((n) => uploaded.get(n)!.size < MIN_PART)) {
      throw new Error(`s3: the appended data of ${path} has a short part left by an interrupted writer`);
    }
    await this.completeUpload(
      path,
      key,
      pending.upload,
      numbers.map((n) => [n, uploaded.get(n)!.etag]),
    );
    const size = pending.parts.reduce((sum, p) => sum + p.size, 0);
    const upload = await this.createUpload(key);
    try {
      const parts = await this.copyParts(key, key, upload, size, undefined);
      if (pending.tail.length > 0) {
        const tail = await this.uploadPart(key, upload, parts.length + 1, pending.tail);
        parts.push({ PartNumber: parts.length + 1, ETag: tail.etag });
      }
      await this.completeUpload(
        path,
        key,
        upload,
        parts.map((p) => [p.PartNumber, p.ETag]),
      );
    } catch (error) {
      await this.abortUpload(key, upload);
      throw error;
    }
  }

  private async completeUpload(
    path: string,
    key: string,
    upload: string,
    parts: readonly (readonly [number, string])[],
  ): Promise<void> {
    try {
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: upload,
          MultipartUpload: { Parts: parts.map(([PartNumber, ETag]) => ({ PartNumber, ETag })) },
        }),
      );
    } catch (error) {
      throw new Error(`s3: cannot complete the appended data of ${path}: ${messageOf(error)}`);
    }
  }

  /** Every part uploaded so far to a multipart upload, by number. */
  private async listParts(key: string, upload: string): Promise<Map<number, Part>> {
    const parts = new Map<number, Part>();
    let marker: string | undefined;
    for (;;) {
      const page = await this.client.send(
        new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: upload, PartNumberMarker: marker }),
      );
      for (const p of page.Parts ?? []) parts.set(p.PartNumber!, { etag: p.ETag!, size: p.Size! });
      if (!page.IsTruncated) return parts;
      marker = page.NextPartNumberMarker;
    }
  }

  /**
   * Copies bytes 0..size-1 of `from` into `upload` (for `to`) as parts of at most
   * `multipartcopychunksize` (more when that would exceed S3's 10,000 parts), several at once.
   */
  private async copyParts(
    from: string,
    to: string,
    upload: string,
    size: number,
    etag: string | undefined,
  ): Promise<{ PartNumber: number; ETag: string }[]> {
    const chunk = Math.max(this.options.multipartcopychunksize, Math.ceil(size / MAX_PARTS));
    const ranges: { n: number; start: number; end: number }[] = [];
    for (let start = 0, n = 1; start < size; start += chunk, n++) {
      ranges.push({ n, start, end: Math.min(size, start + chunk) - 1 });
    }
    // The last range must not be a short part followed by more (the tail): fold it into the one before.
    if (ranges.length > 1 && ranges.at(-1)!.end - ranges.at(-1)!.start + 1 < MIN_PART) {
      const last = ranges.pop()!;
      ranges.at(-1)!.end = last.end;
    }
    const parts: { PartNumber: number; ETag: string }[] = [];
    let next = 0;
    const worker = async () => {
      while (next < ranges.length) {
        const { n, start, end } = ranges[next++]!;
        const copied = await this.client.send(
          new UploadPartCopyCommand({
            Bucket: this.bucket,
            Key: to,
            UploadId: upload,
            PartNumber: n,
            CopySource: copySource(this.bucket, from),
            CopySourceRange: `bytes=${start}-${end}`,
            CopySourceIfMatch: etag,
          }),
        );
        parts.push({ PartNumber: n, ETag: copied.CopyPartResult!.ETag! });
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(this.options.multipartcopymaxconcurrency, ranges.length) }, worker),
    );
    return parts.sort((a, b) => a.PartNumber - b.PartNumber);
  }

  // --- moving and deleting -------------------------------------------------------------------

  async move(source: string, dest: string): Promise<void> {
    const from = this.key(source);
    const to = this.key(dest);
    let head = await this.headObject(from);
    if (head === undefined) throw new PathNotFoundError(source);
    if (isPending(head.Metadata)) {
      await this.complete(source);
      head = await this.headObject(from);
      if (head === undefined) throw new PathNotFoundError(source);
    }
    const size = head.ContentLength ?? 0;
    if (size <= this.options.multipartcopythresholdsize) {
      await this.client.send(
        new CopyObjectCommand({
          ...this.writeParams(to),
          CopySource: copySource(this.bucket, from),
          CopySourceIfMatch: head.ETag,
          MetadataDirective: "REPLACE",
        }),
      );
    } else {
      await this.multipartCopy(from, to, size, head.ETag);
    }
    this.rememberParent(dest);
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: from }));
  }

  /** Copies a large object in ranges of `multipartcopychunksize`, several at once. */
  private async multipartCopy(
    from: string,
    to: string,
    size: number,
    etag: string | undefined,
  ): Promise<void> {
    const upload = await this.createUpload(to);
    try {
      const parts = await this.copyParts(from, to, upload, size, etag);
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: to,
          UploadId: upload,
          MultipartUpload: { Parts: parts },
        }),
      );
    } catch (error) {
      await this.abortUpload(to, upload);
      throw error;
    }
  }

  async delete(path: string): Promise<void> {
    const key = this.key(path);
    const prefix = this.dirPrefix(path);
    this.forgetTree(path);
    // The objects first, then multipart uploads of appends in the tree: an object that names an
    // aborted upload would be a file that cannot be read.
    const keys = key === this.prefix ? [] : [key];
    for await (const object of this.listAll(prefix)) {
      keys.push(object.Key!);
      if (keys.length >= DELETE_BATCH) await this.deleteKeys(keys.splice(0));
    }
    await this.deleteKeys(keys);
    for await (const upload of this.listUploads(key)) {
      if (upload.Key === key || upload.Key!.startsWith(prefix))
        await this.abortUpload(upload.Key!, upload.UploadId!);
    }
  }

  private async deleteKeys(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    if (keys.length === 1) {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: keys[0] }));
      return;
    }
    const result = await this.client.send(
      new DeleteObjectsCommand({
        Bucket: this.bucket,
        Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
      }),
    );
    const failed = (result.Errors ?? []).filter((e) => e.Code !== "NoSuchKey");
    if (failed.length > 0) {
      throw new Error(`s3: cannot delete ${failed[0]!.Key}: ${failed[0]!.Code} ${failed[0]!.Message ?? ""}`);
    }
  }

  scratchPath(): string {
    return `${SCRATCH}/${randomBytes(12).toString("hex")}`;
  }

  /**
   * Removes what interrupted writes left behind, older than `before`: multipart uploads no object
   * refers to any more (a crashed push or move; an upload session's own is removed with it) and
   * scratch objects. Says what it removed (or, on a dry run, would).
   */
  async purgeAbandoned(before: Date, dryRun = false): Promise<string[]> {
    const removed: string[] = [];
    for await (const upload of this.listUploads(this.prefix === "" ? "" : `${this.prefix}/`)) {
      if ((upload.Initiated ?? before) >= before) continue;
      removed.push(`multipart upload ${upload.Key!}`);
      if (!dryRun) await this.abortUpload(upload.Key!, upload.UploadId!);
    }
    for await (const object of this.listAll(this.dirPrefix(SCRATCH))) {
      if ((object.LastModified ?? before) >= before) continue;
      removed.push(object.Key!);
      if (!dryRun) await this.deleteKeys([object.Key!]);
    }
    return removed;
  }

  /** A presigned GET of the file, for clients redirected to the store. */
  async redirectURL(path: string): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.key(path) }), {
      expiresIn: REDIRECT_SECONDS,
    });
  }

  /** The S3 client and its sockets are released. */
  close(): void {
    this.client.destroy();
  }
}

/** What an append continues from; `created` when the writer started the multipart upload itself. */
interface AppendStart {
  readonly upload?: string;
  readonly parts: readonly Part[];
  readonly tail: Buffer[];
  readonly created: boolean;
}

/**
 * The stream an append writes to: full parts go up as they fill (a couple in flight), and on
 * close what remains is recorded as the new tail. Until the close succeeds, the object still says
 * what it said before; parts uploaded by a writer that failed are overwritten by the next.
 */
class AppendWriter extends Writable {
  private upload: string | undefined;
  private readonly parts: Part[];
  /** Part uploads not yet awaited, oldest first (the writer waits for the oldest to go on). */
  private readonly uploading: Promise<void>[] = [];
  /** The flush of full parts, and the final one, under way if any. */
  private flushing: Promise<void> | undefined;
  private finishing: Promise<void> | undefined;
  /** Part uploads not yet settled, awaited or not. */
  private readonly inFlight = new Set<Promise<void>>();
  private chunks: Buffer[];
  private buffered: number;
  private wrote = false;
  private readonly created: boolean;
  /** Set once the append is recorded. */
  private done = false;

  constructor(
    private readonly driver: S3Driver,
    private readonly path: string,
    private readonly key: string,
    start: AppendStart,
    /** Called once nothing of this writer is in flight any more. */
    private readonly settled: () => void,
  ) {
    super({ highWaterMark: 1024 * 1024 });
    this.upload = start.upload;
    this.parts = [...start.parts];
    this.chunks = [...start.tail];
    this.buffered = start.tail.reduce((n, b) => n + b.length, 0);
    this.created = start.created;
    this.wrote = start.created;
  }

  private get partSize(): number {
    return this.driver.partSize;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.wrote = true;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered < this.partSize) return callback();
    this.flushing = this.flushFull();
    this.flushing.then(() => callback(), callback);
  }

  /** Sends every full part buffered, holding the writer back while too many are in flight. */
  private async flushFull(): Promise<void> {
    while (this.buffered >= this.partSize) {
      const all = Buffer.concat(this.chunks, this.buffered);
      const part = all.subarray(0, this.partSize);
      this.chunks = all.length > this.partSize ? [all.subarray(this.partSize)] : [];
      this.buffered -= part.length;
      await this.send(part);
      if (this.uploading.length >= APPEND_PARALLEL) await this.uploading.shift();
    }
  }

  private async send(body: Buffer): Promise<void> {
    // Destroyed while a flush was under way: send nothing more (see _destroy).
    if (this.destroyed) throw new Error(`s3: append to ${this.path} cancelled`);
    this.upload ??= await this.driver.createUpload(this.key);
    const index = this.parts.length;
    if (index >= MAX_PARTS) throw new Error(`s3: ${this.path} would need more than ${MAX_PARTS} parts`);
    this.parts.push({ etag: "", size: body.length });
    const sent = this.driver.uploadPart(this.key, this.upload, index + 1, body).then((part) => {
      this.parts[index] = part;
    });
    // Awaited in order later; a failure is also seen there.
    sent.catch(() => {});
    this.uploading.push(sent);
    this.inFlight.add(sent);
    void sent.finally(() => this.inFlight.delete(sent)).catch(() => {});
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.finishing = this.finish();
    this.finishing.then(
      () => {
        this.done = true;
        this.settled();
        callback();
      },
      (error: Error) => callback(error),
    );
  }

  private async finish(): Promise<void> {
    const rest = Buffer.concat(this.chunks, this.buffered);
    if (this.upload === undefined) {
      // Never reached a whole part: the object stays plain, rewritten with what it now holds.
      if (this.wrote || !(await this.exists())) await this.driver.putPlain(this.path, this.key, rest);
      return;
    }
    let tail = rest;
    if (rest.length >= MIN_PART) {
      await this.send(rest);
      tail = Buffer.alloc(0);
    }
    await Promise.all(this.uploading.splice(0));
    if (!this.wrote) return;
    await this.driver.putPending(this.path, this.key, { upload: this.upload, parts: this.parts, tail });
  }

  private async exists(): Promise<boolean> {
    try {
      await this.driver.stat(this.path);
      return true;
    } catch {
      return false;
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.done) {
      callback(error);
      return;
    }
    // Parts on the wire are let finish, not cancelled: a cancelled request may still land at
    // the store after its cancellation, over a part the next writer sent under the same number.
    void Promise.allSettled([this.flushing, this.finishing])
      .then(() => Promise.allSettled([...this.inFlight]))
      .then(async () => {
        // An upload this writer began and never recorded is nobody's: drop it now rather than at
        // the next purge. One the object already names stays (its recorded parts are still good).
        if (this.created && this.upload !== undefined) await this.driver.abortUpload(this.key, this.upload);
        this.settled();
      });
    callback(error);
  }
}

function endpointOf(options: S3Options): string | undefined {
  const endpoint = options.regionendpoint;
  if (endpoint === undefined) return undefined;
  return /^https?:\/\//.test(endpoint) ? endpoint : `${options.secure ? "https" : "http"}://${endpoint}`;
}

function checkPath(path: string): void {
  if (!path.startsWith("/") || path.includes("\0") || path.split("/").some((p) => p === ".." || p === ".")) {
    throw new Error(`invalid storage path ${JSON.stringify(path)}`);
  }
}

function parentOf(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  const slash = trimmed.lastIndexOf("/");
  return slash <= 0 ? "/" : trimmed.slice(0, slash);
}

function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

/** The whole object's size from a (possibly ranged) GetObject. */
function totalSize(response: GetObjectCommandOutput): number {
  const total = /\/(\d+)$/.exec(response.ContentRange ?? "");
  return total !== null ? Number(total[1]) : (response.ContentLength ?? 0);
}

/** An ETag without its quotes (UploadPartCopy gives it bare where ListParts quotes it). */
function bareETag(etag: string | undefined): string | undefined {
  return etag?.replace(/^"|"$/g, "");
}

function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

function messageOf(error: unknown): string {
  const e = error as { name?: string; message?: string; code?: string };
  const text = e.message !== undefined && e.message !== "" && e.message !== "UnknownError" ? e.message : "";
  return [e.name ?? e.code, text].filter((s) => s !== undefined && s !== "").join(": ") || String(error);
}

function mapError(error: unknown, path: string): unknown {
  if (statusOf(error) === 404) return new PathNotFoundError(path);
  return error;
}
