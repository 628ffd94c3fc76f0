import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { digestOf, parseDigest, type Digest } from "../registry/digest.js";
import { MANIFEST_MEDIA_TYPES } from "../registry/media-types.js";
import { readLimited as readAtMost } from "../read-limited.js";

/** Where and how to reach one upstream registry. */
export interface UpstreamEndpoint {
  /** Base URL, `https://registry-1.docker.io`. */
  readonly url: string;
  readonly username?: string;
  readonly password?: string;
  /** PEM bundle of trusted CAs, replacing the system's. */
  readonly ca?: Buffer;
  /**
   * Token realms off the upstream's host that may receive the credentials (URLs, or origins):
   * a challenge naming any other realm gets no credentials.
   */
  readonly tokenRealms?: readonly string[];
}

export interface FetchedManifest {
  readonly bytes: Buffer;
  readonly mediaType: string;
  readonly digest: Digest;
}

/** An upstream answered something we cannot use; the message is one line with the URL and status. */
export class UpstreamError extends Error {
  override name = "UpstreamError";
  constructor(
    message: string,
    /** The upstream's HTTP status, when it answered. */
    readonly status?: number,
  ) {
    super(message);
  }
}

const MAX_REDIRECTS = 5;
/** An upstream silent this long (connecting, or between bytes) is given up on. */
const IDLE_TIMEOUT_MS = 30_000;

/**
 * A pull-only client of one upstream registry (the OCI distribution API): manifests and blob
 * streams, with the auth flows registries use — anonymous, Basic, and Docker token auth (a 401
 * with `WWW-Authenticate: Bearer realm=…` answered by fetching a token for the scope, with or
 * without credentials). Follows redirects (Docker Hub serves blobs from a CDN), dropping the
 * credentials when the redirect leaves the upstream's origin.
 */
export class UpstreamClient {
  /** Authorization headers by scope, with when they stop being valid. */
  private readonly authorizations = new Map<string, { header: string; until: number }>();

  constructor(
    readonly endpoint: UpstreamEndpoint,
    private readonly maxManifestBytes = 4 * 1024 * 1024,
  ) {}

  async manifest(repository: string, reference: string): Promise<FetchedManifest> {
    const response = await this.get(repository, `/v2/${repository}/manifests/${reference}`, {
      Accept: MANIFEST_MEDIA_TYPES.join(", "),
    });
    const bytes = await readLimited(response, this.maxManifestBytes);
    const mediaType = (response.headers["content-type"] ?? "").split(";")[0]!.trim();
    return { bytes, mediaType, digest: digestOf(bytes, "sha256") };
  }

  /**
   * The digest a tag names upstream, by HEAD (which registries such as Docker Hub do not count
   * against pull limits). Undefined when the upstream does not say.
   */
  async manifestDigest(repository: string, reference: string): Promise<Digest | undefined> {
    const response = await this.get(
      repository,
      `/v2/${repository}/manifests/${reference}`,
      { Accept: MANIFEST_MEDIA_TYPES.join(", ") },
      "HEAD",
    );
    response.resume();
    const header = response.headers["docker-content-digest"];
    try {
      return typeof header === "string" ? parseDigest(header) : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Whether the upstream's `repository` holds the blob, by HEAD: true on 2xx, false on 404;
   * anything else (unreachable, denied) is an UpstreamError.
   */
  async hasBlob(repository: string, digest: Digest): Promise<boolean> {
    try {
      const response = await this.get(repository, `/v2/${repository}/blobs/${digest.value}`, {}, "HEAD");
      response.resume();
      return true;
    } catch (error) {
      if (error instanceof UpstreamError && error.status === 404) return false;
      throw error;
    }
  }

  /** The blob's bytes as a stream; the caller verifies them against the digest. */
  async blob(repository: string, digest: Digest): Promise<Readable> {
    return this.get(repository, `/v2/${repository}/blobs/${digest.value}`, {});
  }

  /** Every tag of a repository, following the `Link` pages. */
  async tags(repository: string): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = `/v2/${repository}/tags/list`;
    for (let page = 0; path !== undefined && page < 1000; page++) {
      const response = await this.get(repository, path, { Accept: "application/json" });
      const body = JSON.parse((await readLimited(response, 16 * 1024 * 1024)).toString("utf8")) as {
        tags?: string[] | null;
      };
      tags.push(...(body.tags ?? []));
      const link = /<([^>]+)>;\s*rel="?next"?/.exec(String(response.headers.link ?? ""));
      path = link?.[1];
    }
    return tags;
  }

  /**
   * The manifests that refer to `digest` (signatures, SBOMs, attestations): the OCI 1.1 referrers
   * API, or, where the upstream has none (registry:2), the tag schema's `sha256-<hex>…` tags.
   */
  async referrers(
    repository: string,
    digest: Digest,
  ): Promise<{ digest: string; mediaType: string; size: number }[]> {
    try {
      const response = await this.get(repository, `/v2/${repository}/referrers/${digest.value}`, {
        Accept: "application/vnd.oci.image.index.v1+json",
      });
      const index = JSON.parse((await readLimited(response, this.maxManifestBytes)).toString("utf8")) as {
        manifests?: { digest: string; mediaType: string; size: number }[];
      };
      return (index.manifests ?? []).map(({ digest, mediaType, size }) => ({ digest, mediaType, size }));
    } catch (error) {
      if (!(error instanceof UpstreamError) || (error.status !== 404 && error.status !== 400)) throw error;
    }
    const prefix = `${digest.algorithm}-${digest.hex}`;
    const found: { digest: string; mediaType: string; size: number }[] = [];
    for (const tag of (await this.tags(repository)).filter((t) => t.startsWith(prefix))) {
      const manifest = await this.manifest(repository, tag);
      found.push({
        digest: manifest.digest.value,
        mediaType: manifest.mediaType,
        size: manifest.bytes.length,
      });
    }
    return found;
  }

  private async get(
    repository: string,
    path: string,
    headers: Record<string, string>,
    method: "GET" | "HEAD" = "GET",
  ): Promise<IncomingMessage> {
    const scope = `repository:${repository}:pull`;
    const url = new URL(path, this.endpoint.url);
    let response = await this.send(url, { ...headers, ...this.cachedAuthorization(scope) }, method);
    if (response.statusCode === 401) {
      const challenge = String(response.headers["www-authenticate"] ?? "");
      response.resume();
      const header = await this.authorize(challenge, scope, url);
      response = await this.send(url, { ...headers, Authorization: header }, method);
    }
    const status = response.statusCode ?? 0;
    if (status >= 200 && status < 300) return response;
    const body = (await readLimited(response, 64 * 1024).catch(() => Buffer.alloc(0))).toString("utf8");
    let detail = "";
    try {
      const error = (JSON.parse(body) as { errors?: { code?: string; message?: string }[] }).errors?.[0];
      if (error) detail = ` ${error.code ?? ""}: ${error.message ?? ""}`;
    } catch {
      /* not the spec's error body */
    }
    throw new UpstreamError(`${method} ${redact(url)}: ${status}${detail}`, status);
  }

  private cachedAuthorization(scope: string): Record<string, string> {
    const cached = this.authorizations.get(scope);
    if (cached !== undefined && cached.until > Date.now()) return { Authorization: cached.header };
    if (cached === undefined && this.endpoint.username !== undefined && this.basicFirst)
      return { Authorization: this.basic() };
    return {};
  }

  /** Set once the upstream has asked for Basic: then every request sends it without a round trip. */
  private basicFirst = false;

  private basic(): string {
    const { username = "", password = "" } = this.endpoint;
    return `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
  }

  /** Answers a 401's challenge: Basic credentials, or a token from the realm it names. */
  private async authorize(challenge: string, scope: string, url: URL): Promise<string> {
    const scheme = challenge.split(/\s+/, 1)[0]!.toLowerCase();
    if (scheme === "basic") {
      if (this.endpoint.username === undefined)
        throw new UpstreamError(
          `GET ${redact(url)}: 401: the upstream asks for credentials (sync.upstreams)`,
        );
      this.basicFirst = true;
      return this.basic();
    }
    if (scheme !== "bearer")
      throw new UpstreamError(
        `GET ${redact(url)}: 401 with an unknown challenge: ${challenge.slice(0, 200)}`,
      );
    const params = Object.fromEntries(
      [...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!.toLowerCase(), m[2]!]),
    );
    if (params.realm === undefined)
      throw new UpstreamError(`GET ${redact(url)}: 401: bearer challenge without realm`);
    let tokenUrl: URL;
    try {
      tokenUrl = new URL(params.realm);
    } catch {
      throw new UpstreamError(`GET ${redact(url)}: 401: bearer challenge with an invalid realm`);
    }
    if (tokenUrl.protocol !== "https:" && tokenUrl.protocol !== "http:")
      throw new UpstreamError(`GET ${redact(url)}: 401: bearer realm ${redact(tokenUrl)} is not HTTP(S)`);
    const credentials = this.endpoint.username !== undefined;
    // The challenge comes from whoever answers as the upstream: credentials go only where the
    // config says they may, never in clear text unless the upstream itself is plain HTTP.
    if (credentials) this.checkRealm(tokenUrl, url);
    if (params.service !== undefined) tokenUrl.searchParams.set("service", params.service);
    tokenUrl.searchParams.set("scope", params.scope ?? scope);
    const response = await this.send(tokenUrl, credentials ? { Authorization: this.basic() } : {});
    const body = await readLimited(response, 1024 * 1024);
    if (response.statusCode !== 200)
      throw new UpstreamError(`GET ${redact(tokenUrl, false)}: ${response.statusCode} (token request)`);
    const parsed = JSON.parse(body.toString("utf8")) as {
      token?: string;
      access_token?: string;
      expires_in?: number;
    };
    const token = parsed.token ?? parsed.access_token;
    if (token === undefined) throw new UpstreamError(`${redact(tokenUrl, false)}: no token in the answer`);
    const header = `Bearer ${token}`;
    // Renew a little early; the spec's default lifetime is 60 s.
    const seconds = Math.max(10, (parsed.expires_in ?? 60) - 10);
    this.authorizations.set(scope, { header, until: Date.now() + seconds * 1000 });
    return header;
  }

  /** Throws unless the upstream's credentials may be sent to the token realm `realm`. */
  private checkRealm(realm: URL, upstream: URL): void {
    const base = new URL(this.endpoint.url);
    const listed = (this.endpoint.tokenRealms ?? []).some((entry) => {
      const allowed = new URL(entry);
      return (
        allowed.origin === realm.origin && (allowed.pathname === "/" || allowed.pathname === realm.pathname)
      );
    });
    // The same origin, not only the same host name: another port is another server.
    if (!listed && realm.origin !== base.origin)
      throw new UpstreamError(
        `GET ${redact(upstream)}: 401: the token realm ${redact(realm, false)} is not the upstream's own ` +
          "server; its credentials are sent there only if its tokenrealms lists it",
      );
    if (realm.protocol === "http:" && base.protocol !== "http:")
      throw new UpstreamError(
        `GET ${redact(upstream)}: 401: the token realm ${redact(realm, false)} is plain HTTP; ` +
          "credentials of an HTTPS upstream are not sent in clear text",
      );
  }

  private async send(
    url: URL,
    headers: Record<string, string>,
    method: "GET" | "HEAD" = "GET",
    redirects = 0,
  ): Promise<IncomingMessage> {
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const client = url.protocol === "https:" ? https : http;
      const request = client.request(
        url,
        { method, headers, timeout: IDLE_TIMEOUT_MS, ...(this.endpoint.ca ? { ca: this.endpoint.ca } : {}) },
        resolve,
      );
      request.on("timeout", () => request.destroy(new Error("no answer in time")));
      request.on("error", (error) =>
        reject(new UpstreamError(`${method} ${redact(url, false)}: ${error.message}`)),
      );
      request.end();
    });
    const status = response.statusCode ?? 0;
    const location = response.headers.location;
    if ([301, 302, 303, 307, 308].includes(status) && location !== undefined) {
      response.resume();
      if (redirects >= MAX_REDIRECTS)
        throw new UpstreamError(`GET ${redact(url, false)}: too many redirects`);
      const next = new URL(location, url);
      const { Authorization: _dropped, ...rest } = headers;
      return this.send(next, next.origin === url.origin ? headers : rest, method, redirects + 1);
    }
    return response;
  }
}

/**
 * A URL as error texts show it: never its user or password (a redirect or a realm may carry
 * them); with its query only when `query` (a token realm's may carry secrets).
 */
export function redact(url: URL | string, query = true): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "(invalid URL)";
  }
  return `${parsed.origin}${parsed.pathname}${query ? parsed.search : ""}`;
}

function readLimited(stream: IncomingMessage, limit: number): Promise<Buffer> {
  return readAtMost(stream, limit, (n) => new UpstreamError(`answer larger than ${n} bytes`));
}
