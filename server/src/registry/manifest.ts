import { parseDigest, type Digest } from "./digest.js";
import { isArraySpan, runs, scanObject, type Span } from "./json-scan.js";
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

/**
 * Array elements parsed by one JSON.parse: few enough (and few enough bytes) that what a run
 * builds dies in V8's young generation, many enough to spare the cost of a call per element.
 */
const RUN_LIMITS = { count: 256, bytes: 64 * 1024 };

const invalid = (message: string, detail?: unknown) => new RegistryError("MANIFEST_INVALID", message, detail);

/** Strips parameters (`; charset=…`) from a Content-Type. */
export function baseMediaType(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const base = contentType.split(";")[0]!.trim().toLowerCase();
  return base === "" ? undefined : base;
}

/**
 * A manifest checked whole, whose references are read from its bytes only when asked for: what a
 * push needs before it knows the references exist. An index within the size limit may list tens
 * of thousands of children; objects kept for each of them while a push is checked outlive V8's
 * young generation and pile up as garbage (issue 9 item 7), so nothing is kept per reference
 * until `parsed()`.
 */
export interface CheckedManifest {
  readonly mediaType: string;
  readonly isIndex: boolean;
  readonly subject?: Digest;
  /** The blobs, then the children, that must exist (as ParsedManifest's), read as iterated. */
  references(): Iterable<{ readonly digest: Digest; readonly manifest: boolean }>;
  /** Everything ParsedManifest says, built now. */
  parsed(): ParsedManifest;
}

/**
 * Parses and validates a manifest's bytes. `contentType` is what the client declared; it must agree
 * with the body's own `mediaType` when both are present.
 */
export function parseManifest(bytes: Buffer, contentType?: string): ParsedManifest {
  return checkManifest(bytes, contentType).parsed();
}

/**
 * Validates a manifest's bytes as parseManifest does, keeping nothing of each entry. The bytes
 * are scanned, not parsed whole: one JSON tree of tens of thousands of entries costs many times
 * its size (see json-scan.ts). Members are parsed when used; `manifests` and `layers` a run of
 * elements at a time, each piece small and short-lived.
 */
export function checkManifest(bytes: Buffer, contentType?: string): CheckedManifest {
  const steps = manifestChecks(bytes, contentType);
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
  }
}

/**
 * As checkManifest, letting other requests run between runs of entries: checking an index of
 * tens of thousands of entries takes tens of milliseconds, too long to hold the event loop.
 */
export async function checkManifestYielding(bytes: Buffer, contentType?: string): Promise<CheckedManifest> {
  const steps = manifestChecks(bytes, contentType);
  for (let step = steps.next(); ; step = steps.next()) {
    if (step.done === true) return step.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Runs of array elements checked between two yields of manifestChecks. */
const RUNS_PER_STEP = 4;

/** checkManifest's work, yielding now and then while it checks the elements of long arrays. */
function* manifestChecks(bytes: Buffer, contentType?: string): Generator<void, CheckedManifest> {
  const members = scanObject(bytes);
  if (members === "not-json") throw invalid("manifest is not valid JSON");
  if (members === "not-object") throw invalid("manifest must be a JSON object");
  const member = (key: string): unknown => {
    const span = members.get(key);
    return span === undefined ? undefined : JSON.parse(bytes.toString("utf8", span.start, span.end));
  };
  /** An array member's span, or undefined when it is absent or no array. */
  const arrayMember = (key: string) => {
    const span = members.get(key);
    return span !== undefined && isArraySpan(bytes, span) ? span : undefined;
  };
  /** The elements of an array member with their descriptors, parsed a run at a time. */
  const elementsOf = function* (span: Span, where: string) {
    for (const run of runs(bytes, span, RUN_LIMITS)) {
      const values = JSON.parse(`[${bytes.toString("utf8", run.start, run.end)}]`) as unknown[];
      for (let k = 0; k < values.length; k++) {
        const value = values[k];
        yield { value, descriptor: parseDescriptor(value, where, run.first + k) };
      }
    }
  };
  /** Checks every element of an array member, dropping what it parsed; yields now and then. */
  const checkAll = function* (span: Span, where: string) {
    let count = 0;
    for (const run of runs(bytes, span, RUN_LIMITS)) {
      const values = JSON.parse(`[${bytes.toString("utf8", run.start, run.end)}]`) as unknown[];
      for (let k = 0; k < values.length; k++) parseDescriptor(values[k], where, run.first + k);
      if (++count % RUNS_PER_STEP === 0) yield;
    }
  };
  const schemaVersion = member("schemaVersion");
  const declared = baseMediaType(contentType);
  const inBody = member("mediaType");
  if (inBody !== undefined && typeof inBody !== "string") throw invalid("mediaType must be a string");
  if (
    schemaVersion === 1 ||
    declared === MediaType.DockerSchema1 ||
    declared === MediaType.DockerSchema1Signed
  ) {
    throw new RegistryError("MANIFEST_INVALID", "Docker schema 1 manifests are not supported");
  }
  if (schemaVersion !== 2) throw invalid("schemaVersion must be 2");

  let mediaType: string;
  if (inBody !== undefined) {
    if (declared !== undefined && MANIFEST_MEDIA_TYPES.includes(declared) && declared !== inBody) {
      throw invalid(`Content-Type ${declared} does not match the manifest's mediaType ${inBody}`);
    }
    mediaType = inBody;
  } else if (declared !== undefined && MANIFEST_MEDIA_TYPES.includes(declared)) {
    mediaType = declared;
  } else {
    mediaType = arrayMember("manifests") !== undefined ? MediaType.OciIndex : MediaType.OciManifest;
  }
  if (!MANIFEST_MEDIA_TYPES.includes(mediaType))
    throw invalid(`unsupported manifest media type ${mediaType}`);

  const subjectValue = member("subject");
  const subject =
    subjectValue === undefined ? undefined : parseDescriptor(subjectValue, "subject").parsedDigest;
  const artifactType = optionalString(member("artifactType"), "artifactType");
  const annotations = parseAnnotations(member("annotations"), "annotations");

  if (INDEX_MEDIA_TYPES.includes(mediaType)) {
    const manifests = arrayMember("manifests");
    if (manifests === undefined) throw invalid("an index must have a manifests array");
    // Every entry is checked now (and dropped): a push refused later is refused for what it
    // references, never for a malformed entry found after the first missing child.
    yield* checkAll(manifests, "manifests");
    return {
      mediaType,
      isIndex: true,
      subject,
      *references() {
        for (const { descriptor } of elementsOf(manifests, "manifests"))
          yield { digest: descriptor.parsedDigest, manifest: true };
      },
      parsed() {
        const children: Digest[] = [];
        const entries: IndexEntry[] = [];
        for (const { value, descriptor } of elementsOf(manifests, "manifests")) {
          const platform = (value as Record<string, unknown>).platform;
          children.push(descriptor.parsedDigest);
          entries.push(
            isObject(platform)
              ? {
                  digest: descriptor.parsedDigest,
                  mediaType: descriptor.mediaType,
                  platform: platform as IndexEntry["platform"],
                }
              : { digest: descriptor.parsedDigest, mediaType: descriptor.mediaType },
          );
        }
        return { mediaType, isIndex: true, blobs: [], children, entries, subject, artifactType, annotations };
      },
    };
  }

  const configValue = member("config");
  if (configValue === undefined) throw invalid("an image manifest must have a config descriptor");
  const config = parseDescriptor(configValue, "config");
  const layers = arrayMember("layers");
  if (layers === undefined) throw invalid("an image manifest must have a layers array");
  yield* checkAll(layers, "layers");
  const blobs = function* () {
    yield config.parsedDigest;
    for (const { descriptor } of elementsOf(layers, "layers"))
      if (!isForeign(descriptor)) yield descriptor.parsedDigest;
  };
  return {
    mediaType,
    isIndex: false,
    subject,
    *references() {
      for (const digest of blobs()) yield { digest, manifest: false };
    },
    parsed() {
      return {
        mediaType,
        isIndex: false,
        blobs: [...blobs()],
        children: [],
        subject,
        artifactType,
        configMediaType: config.mediaType,
        annotations,
      };
    },
  };
}

function isForeign(layer: Descriptor): boolean {
  return NON_DISTRIBUTABLE_LAYER_TYPES.includes(layer.mediaType) && (layer.urls?.length ?? 0) > 0;
}

/** A descriptor with its digest parsed (once: an index may hold tens of thousands of them). */
type ParsedDescriptor = Descriptor & { readonly parsedDigest: Digest };

/** `where` and `index` name the field in errors (`layers[3]`); the string is built only then. */
function parseDescriptor(value: unknown, where: string, index?: number): ParsedDescriptor {
  const at = () => (index === undefined ? where : `${where}[${index}]`);
  if (!isObject(value)) throw invalid(`${at()} must be a descriptor object`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== "string" || mediaType === "") throw invalid(`${at()}.mediaType must be a string`);
  if (typeof digest !== "string") throw invalid(`${at()}.digest must be a string`);
  let parsedDigest: Digest;
  try {
    parsedDigest = parseDigest(digest);
  } catch {
    throw invalid(`${at()}.digest is not a valid digest`, { digest: digest.slice(0, 200) });
  }
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${at()}.size must be a non-negative integer`);
  }
  const urls = value.urls;
  if (urls !== undefined && (!Array.isArray(urls) || urls.some((u) => typeof u !== "string"))) {
    throw invalid(`${at()}.urls must be an array of strings`);
  }
  return { mediaType, digest, size, urls: urls as string[] | undefined, parsedDigest };
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
