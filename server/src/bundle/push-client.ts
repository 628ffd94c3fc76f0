/**
 * The distribution API calls an import makes against the site's registry: what it holds, uploads
 * streamed from the bundle (the registry verifies each digest before it links the blob), mounts,
 * and manifest PUTs. Credentials as every CLI command takes them (NEAM_REGISTRY_USERNAME/PASSWORD).
 */
import { readFileSync } from "node:fs";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import { Transform, type Readable } from "node:stream";
import { readLimited } from "../read-limited.js";
import type { AdminTarget } from "../cli/admin-client.js";
import { BundleError, type HaveList } from "./format.js";
import type { ImportStatus } from "./receive.js";

const MAX_ANSWER = 64 * 1024 * 1024;

export class PushClient {
  private readonly agent: http.Agent;
  private readonly base: URL;
  private readonly ca?: Buffer;
  /** Bytes of blob bodies sent (what a resumed import avoids sending again). */
  bytesSent = 0;

  constructor(private readonly target: AdminTarget) {
    this.base = new URL(target.url.replace(/\/+$/, "") + "/");
    this.ca = target.caFile === undefined ? undefined : readFileSync(target.caFile);
    this.agent =
      this.base.protocol === "https:"
        ? new https.Agent({ keepAlive: true })
        : new http.Agent({ keepAlive: true });
  }

  close(): void {
    this.agent.destroy();
  }

  async have(): Promise<HaveList> {
    const response = await this.expect("GET", "v2/_neam/have", [200]);
    return JSON.parse((await readLimited(response, MAX_ANSWER)).toString("utf8")) as HaveList;
  }

  /** Starts (or finds) a bundle import on the registry's admin endpoint; see bundle/receive.ts. */
  async openImport(parts: { digest: string; size: number }[]): Promise<ImportStatus> {
    const body = Buffer.from(JSON.stringify({ parts }));
    const response = await this.expect("POST", "v2/_neam/bundle/imports", [200], {
      body,
      headers: { "Content-Type": "application/json", "Content-Length": String(body.length) },
    });
    return JSON.parse((await readLimited(response, MAX_ANSWER)).toString("utf8")) as ImportStatus;
  }

  /** Streams one part (exactly `size` bytes) to an import; answers the import's status. */
  async sendPart(id: string, index: number, size: number, body: Readable): Promise<ImportStatus> {
    const counted = exactly(size, `part ${index}`, (n) => (this.bytesSent += n));
    body.on("error", (error: Error) => counted.destroy(error));
    body.pipe(counted);
    const response = await this.expect("PUT", `v2/_neam/bundle/imports/${id}/parts/${index}`, [200], {
      body: counted,
      headers: { "Content-Type": "application/octet-stream", "Content-Length": String(size) },
    });
    return JSON.parse((await readLimited(response, MAX_ANSWER)).toString("utf8")) as ImportStatus;
  }

  async commitImport(id: string): Promise<ImportStatus> {
    const response = await this.expect("POST", `v2/_neam/bundle/imports/${id}/commit`, [200]);
    return JSON.parse((await readLimited(response, MAX_ANSWER)).toString("utf8")) as ImportStatus;
  }

  async blobExists(repository: string, digest: string): Promise<boolean> {
    const response = await this.expect("HEAD", `v2/${repository}/blobs/${digest}`, [200, 404]);
    response.resume();
    return response.statusCode === 200;
  }

  /** A mount of a blob the registry holds in some repository (no `from`); false when it cannot. */
  async mount(repository: string, digest: string): Promise<boolean> {
    const response = await this.expect("POST", `v2/${repository}/blobs/uploads/?mount=${digest}`, [201, 202]);
    response.resume();
    if (response.statusCode === 201) return true;
    const location = response.headers.location;
    if (location) await this.expect("DELETE", this.resolve(location), [204, 404]).then((r) => r.resume());
    return false;
  }

  async upload(repository: string, digest: string, size: number, body: Readable): Promise<void> {
    // The body can fail (a damaged bundle) before the request exists: keep that, and never let
    // it flow anywhere but into the PUT.
    let failed: Error | undefined;
    body.on("error", (error: Error) => (failed ??= error));
    body.pause();
    const started = await this.expect("POST", `v2/${repository}/blobs/uploads/`, [202]);
    started.resume();
    if (failed !== undefined) throw failed;
    const location = started.headers.location;
    if (!location) throw new BundleError(`POST ${repository} upload: the registry gave no Location`);
    const url = new URL(this.resolve(location));
    url.searchParams.set("digest", digest);
    // Exactly `size` bytes go out: a bundle entry longer than its content list says would
    // otherwise be read by the registry as a further request on the same connection.
    const exact = exactly(size, digest, (n) => (this.bytesSent += n));
    body.on("error", (error: Error) => exact.destroy(error));
    body.pipe(exact);
    const done = await this.expect("PUT", url.href, [201], {
      body: exact,
      headers: { "Content-Type": "application/octet-stream", "Content-Length": String(size) },
    });
    done.resume();
  }

  async putManifest(repository: string, reference: string, mediaType: string, bytes: Buffer): Promise<void> {
    const response = await this.expect("PUT", `v2/${repository}/manifests/${reference}`, [201], {
      body: bytes,
      headers: { "Content-Type": mediaType, "Content-Length": String(bytes.length) },
    });
    response.resume();
  }

  private resolve(location: string): string {
    return new URL(location, this.base).href;
  }

  private expect(
    method: string,
    path: string,
    statuses: number[],
    send?: { body: Readable | Buffer; headers: Record<string, string> },
  ): Promise<IncomingMessage> {
    const url = new URL(path, this.base);
    const client = url.protocol === "https:" ? https : http;
    const headers: Record<string, string> = { ...send?.headers };
    if (this.target.username !== undefined)
      headers.Authorization = `Basic ${Buffer.from(`${this.target.username}:${this.target.password ?? ""}`).toString("base64")}`;
    return new Promise((resolve, reject) => {
      const request = client.request(
        url,
        { method, headers, agent: this.agent, ...(this.ca ? { ca: this.ca } : {}) },
        (response) => {
          const status = response.statusCode ?? 0;
          if (statuses.includes(status)) return resolve(response);
          readLimited(response, 64 * 1024).then((content) => {
            let detail = "";
            try {
              const error = (
                JSON.parse(content.toString("utf8")) as { errors?: { code?: string; message?: string }[] }
              ).errors?.[0];
              if (error) detail = ` ${error.code}: ${error.message}`;
            } catch {
              /* not the spec's error body */
            }
            reject(new BundleError(`${method} ${url.pathname}: ${status}${detail}`));
          }, reject);
        },
      );
      // Node then refuses to write more or fewer bytes than Content-Length says.
      (request as unknown as { strictContentLength: boolean }).strictContentLength = true;
      let bodyError: Error | undefined;
      request.on("error", (error) =>
        reject(
          bodyError instanceof BundleError
            ? bodyError
            : new BundleError(`cannot reach the registry at ${this.target.url}: ${error.message}`),
        ),
      );
      const body = send?.body;
      if (body === undefined || Buffer.isBuffer(body)) request.end(body);
      else if (body.destroyed || body.errored) {
        bodyError = body.errored ?? new BundleError("the upload's body ended before it was sent");
        request.destroy(bodyError);
      } else {
        body.on("error", (error) => {
          bodyError = error;
          request.destroy(error);
        });
        body.pipe(request);
      }
    });
  }
}

/** Passes exactly `size` bytes; more, or fewer by the end, is an error naming the digest. */
function exactly(size: number, digest: string, onBytes: (n: number) => void): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      onBytes(chunk.length);
      if (seen > size)
        return done(new BundleError(`${digest}: the bundle holds more than its ${size} bytes`));
      done(null, chunk);
    },
    flush(done) {
      done(
        seen === size ? null : new BundleError(`${digest}: the bundle holds ${seen} of its ${size} bytes`),
      );
    },
  });
}
