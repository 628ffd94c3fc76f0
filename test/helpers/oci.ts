import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
export const LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";

export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export interface Blob {
  readonly data: Buffer;
  readonly digest: string;
  readonly size: number;
}

export function blob(data: Buffer | string = randomBytes(1024)): Blob {
  const bytes = Buffer.from(data);
  return { data: bytes, digest: sha256(bytes), size: bytes.length };
}

export interface Manifest {
  readonly bytes: Buffer;
  readonly digest: string;
  readonly mediaType: string;
  readonly blobs: Blob[];
}

/** An image manifest over a fresh config and `layers` random layers (blobs returned, not pushed). */
export function imageManifest(
  options: {
    layers?: number;
    subject?: { digest: string; size: number; mediaType: string };
    artifactType?: string;
    annotations?: Record<string, string>;
    configMediaType?: string;
  } = {},
): Manifest {
  const config = blob(
    JSON.stringify({ architecture: "amd64", os: "linux", rand: randomBytes(8).toString("hex") }),
  );
  const layers = Array.from({ length: options.layers ?? 1 }, () => blob());
  const body = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    ...(options.artifactType ? { artifactType: options.artifactType } : {}),
    config: { mediaType: options.configMediaType ?? OCI_CONFIG, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: LAYER, digest: l.digest, size: l.size })),
    ...(options.subject ? { subject: options.subject } : {}),
    ...(options.annotations ? { annotations: options.annotations } : {}),
  };
  const bytes = Buffer.from(JSON.stringify(body));
  return { bytes, digest: sha256(bytes), mediaType: OCI_MANIFEST, blobs: [config, ...layers] };
}

export function indexManifest(children: Manifest[]): Manifest {
  const body = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: children.map((c, i) => ({
      mediaType: c.mediaType,
      digest: c.digest,
      size: c.bytes.length,
      platform: { architecture: i % 2 ? "arm64" : "amd64", os: "linux" },
    })),
  };
  const bytes = Buffer.from(JSON.stringify(body));
  return { bytes, digest: sha256(bytes), mediaType: OCI_INDEX, blobs: [] };
}

/** A small client of the distribution API for tests; every call is a real HTTP request. */
export class Client {
  constructor(readonly base: string) {}

  /** `path` may be relative to the registry or an absolute URL (a `Location` the registry sent). */
  request(method: string, path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(new URL(path, this.base), { method, redirect: "manual", ...init });
  }

  /** A request whose path is sent exactly as given (fetch would normalise `..` and `%2e`). */
  raw(method: string, path: string): Promise<{ status: number; body: string }> {
    const url = new URL(this.base);
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: url.hostname, port: url.port, method, path }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.end();
    });
  }

  /** Single-POST upload; a registry that answers 202 (the reference) gets the POST-then-PUT flow. */
  async pushBlob(repo: string, b: Blob): Promise<Response> {
    let response = await this.request("POST", `/v2/${repo}/blobs/uploads/?digest=${b.digest}`, {
      body: b.data,
      headers: { "Content-Type": "application/octet-stream" },
    });
    if (response.status === 202) {
      const location = response.headers.get("Location")!;
      const separator = location.includes("?") ? "&" : "?";
      response = await fetch(new URL(`${location}${separator}digest=${b.digest}`, this.base), {
        method: "PUT",
        body: b.data,
        headers: { "Content-Type": "application/octet-stream" },
      });
    }
    if (response.status !== 201) throw new Error(`push blob: ${response.status} ${await response.text()}`);
    return response;
  }

  async pushManifest(repo: string, reference: string, m: Manifest, pushBlobs = true): Promise<Response> {
    if (pushBlobs) for (const b of m.blobs) await this.pushBlob(repo, b);
    return this.request("PUT", `/v2/${repo}/manifests/${reference}`, {
      body: m.bytes,
      headers: { "Content-Type": m.mediaType },
    });
  }

  async startUpload(repo: string): Promise<string> {
    const response = await this.request("POST", `/v2/${repo}/blobs/uploads/`, {
      headers: { "Content-Length": "0" },
    });
    if (response.status !== 202) throw new Error(`start upload: ${response.status}`);
    return response.headers.get("Location")!;
  }

  /** Sends `data` as the chunk at `offset` (202 asserted); the path and query of the next Location. */
  async patchChunk(location: string, offset: number, data: Buffer): Promise<string> {
    const response = await this.request("PATCH", location, {
      body: data,
      headers: {
        "Content-Type": "application/octet-stream",
        "Content-Range": `${offset}-${offset + data.length - 1}`,
      },
    });
    assert.equal(response.status, 202, await response.text());
    const url = new URL(response.headers.get("Location")!, this.base);
    return url.pathname + url.search;
  }
}

/** The path of a Location header, whether the registry sent it absolute or relative. */
export function locationPath(response: Response): string {
  const location = response.headers.get("Location");
  if (location === null) throw new Error(`no Location header (status ${response.status})`);
  return new URL(location, "http://placeholder").pathname;
}

export async function errorCode(response: Response): Promise<string | undefined> {
  const body = (await response.json()) as { errors?: { code: string }[] };
  return body.errors?.[0]?.code;
}

/** An `Authorization: Basic` header for `user:password`. */
export function basicAuth(user: string, password: string): { Authorization: string } {
  return { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` };
}

/** Checks that `reference` in `repo` serves `m` byte for byte, and every blob it references. */
export async function assertServed(
  client: Client,
  repo: string,
  reference: string,
  m: Manifest,
): Promise<void> {
  const response = await client.request("GET", `/v2/${repo}/manifests/${reference}`, {
    headers: { Accept: m.mediaType },
  });
  assert.equal(response.status, 200, `${repo}:${reference}`);
  assert.equal(sha256(Buffer.from(await response.arrayBuffer())), m.digest);
  for (const b of m.blobs) {
    const got = await client.request("GET", `/v2/${repo}/blobs/${b.digest}`);
    assert.equal(got.status, 200, `${repo} blob ${b.digest}`);
    assert.equal(sha256(Buffer.from(await got.arrayBuffer())), b.digest);
  }
}
