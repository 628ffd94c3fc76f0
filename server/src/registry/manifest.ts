import { parseDigest, type Digest } from "./digest.js";
import { RegistryError } from "./errors.js";
import {
  INDEX_MEDIA_TYPES,
  MANIFEST_MEDIA_TYPES,
  MediaType,
  NON_DISTRIBUTABLE_LAYER_TYPES,
} from "./media-types.js";

export interface IndexEntry {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly platform?: { readonly os?: string; readonly architecture?: string; readonly variant?: string };
}

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly artifactType?: string;
  readonly annotations?: Record<string, string>;
  readonly urls?: string[];
}

/** What the registry needs to know of a manifest: what it references, and how it describes itself. */
export interface ParsedManifest {
  readonly mediaType: string;
  readonly isIndex: boolean;
  /** Blobs that must exist in the repository (config and distributable layers). */
  readonly blobs: readonly Digest[];
  /** Manifests an index references; they must exist in the repository. */
  readonly children: readonly Digest[];
  /** An index's entries with their platforms (for serving a client that cannot read indexes). */
  readonly entries?: readonly IndexEntry[];
  readonly subject?: Digest;
  readonly artifactType?: string;
  readonly configMediaType?: string;
  readonly annotations?: Record<string, string>;
}

const invalid = (message: string, detail?: unknown) => new RegistryError("MANIFEST_INVALID", message, detail);

/** Strips parameters (`; charset=…`) from a Content-Type. */
export function baseMediaType(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const base = contentType.split(";")[0]!.trim().toLowerCase();
  return base === "" ? undefined : base;
}

/**
 * Parses and validates a manifest's bytes. `contentType` is what the client declared; it must agree
 * with the body's own `mediaType` when both are present.
 */
export function parseManifest(bytes: Buffer, contentType?: string): ParsedManifest {
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw invalid("manifest is not valid JSON");
  }
  if (!isObject(body)) throw invalid("manifest must be a JSON object");
  const declared = baseMediaType(contentType);
  const inBody = body.mediaType;
  if (inBody !== undefined && typeof inBody !== "string") throw invalid("mediaType must be a string");
  if (
    body.schemaVersion === 1 ||
    declared === MediaType.DockerSchema1 ||
    declared === MediaType.DockerSchema1Signed
  ) {
    throw new RegistryError("MANIFEST_INVALID", "Docker schema 1 manifests are not supported");
  }
  if (body.schemaVersion !== 2) throw invalid("schemaVersion must be 2");

  let mediaType: string;
  if (inBody !== undefined) {
    if (declared !== undefined && MANIFEST_MEDIA_TYPES.includes(declared) && declared !== inBody) {
      throw invalid(`Content-Type ${declared} does not match the manifest's mediaType ${inBody}`);
    }
    mediaType = inBody;
  } else if (declared !== undefined && MANIFEST_MEDIA_TYPES.includes(declared)) {
    mediaType = declared;
  } else {
    mediaType = Array.isArray(body.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
  }
  if (!MANIFEST_MEDIA_TYPES.includes(mediaType))
    throw invalid(`unsupported manifest media type ${mediaType}`);

  const subject = body.subject === undefined ? undefined : parseDescriptor(body.subject, "subject");
  const artifactType = optionalString(body.artifactType, "artifactType");
  const annotations = parseAnnotations(body.annotations, "annotations");

  if (INDEX_MEDIA_TYPES.includes(mediaType)) {
    if (!Array.isArray(body.manifests)) throw invalid("an index must have a manifests array");
    const entries: IndexEntry[] = body.manifests.map((m, i) => {
      const descriptor = parseDescriptor(m, `manifests[${i}]`);
      const platform = isObject((m as Record<string, unknown>).platform)
        ? ((m as Record<string, unknown>).platform as IndexEntry["platform"])
        : undefined;
      return {
        digest: parseDigest(descriptor.digest),
        mediaType: descriptor.mediaType,
        ...(platform ? { platform } : {}),
      };
    });
    const children = entries.map((e) => e.digest);
    return {
      mediaType,
      isIndex: true,
      blobs: [],
      children,
      entries,
      subject: subject && parseDigest(subject.digest),
      artifactType,
      annotations,
    };
  }

  if (body.config === undefined) throw invalid("an image manifest must have a config descriptor");
  const config = parseDescriptor(body.config, "config");
  if (!Array.isArray(body.layers)) throw invalid("an image manifest must have a layers array");
  const layers = body.layers.map((l, i) => parseDescriptor(l, `layers[${i}]`));
  const blobs = [config, ...layers.filter((l) => !isForeign(l))].map((d) => parseDigest(d.digest));
  return {
    mediaType,
    isIndex: false,
    blobs,
    children: [],
    subject: subject && parseDigest(subject.digest),
    artifactType,
    configMediaType: config.mediaType,
    annotations,
  };
}

function isForeign(layer: Descriptor): boolean {
  return NON_DISTRIBUTABLE_LAYER_TYPES.includes(layer.mediaType) && (layer.urls?.length ?? 0) > 0;
}

function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw invalid(`${where} must be a descriptor object`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== "string" || mediaType === "") throw invalid(`${where}.mediaType must be a string`);
  if (typeof digest !== "string") throw invalid(`${where}.digest must be a string`);
  try {
    parseDigest(digest);
  } catch {
    throw invalid(`${where}.digest is not a valid digest`, { digest });
  }
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size must be a non-negative integer`);
  }
  const urls = value.urls;
  if (urls !== undefined && (!Array.isArray(urls) || urls.some((u) => typeof u !== "string"))) {
    throw invalid(`${where}.urls must be an array of strings`);
  }
  return { mediaType, digest, size, urls: urls as string[] | undefined };
}

function parseAnnotations(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value) || Object.values(value).some((v) => typeof v !== "string")) {
    throw invalid(`${where} must be a map of strings`);
  }
  return value as Record<string, string>;
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw invalid(`${where} must be a string`);
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
