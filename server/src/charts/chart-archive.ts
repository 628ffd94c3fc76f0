import { createGunzip } from "node:zlib";
import { Parser, type ReadEntry } from "tar";
import { parse as parseYaml } from "yaml";

/** What Chart.yaml says of a chart (Helm's chart metadata; other keys are kept as they are). */
export interface ChartMetadata {
  readonly name: string;
  readonly version: string;
  readonly apiVersion?: string;
  readonly appVersion?: string;
  readonly description?: string;
  readonly [key: string]: unknown;
}

/** A chart archive that cannot be stored; the message is one line for the uploader. */
export class ChartArchiveError extends Error {
  override name = "ChartArchiveError";
  constructor(
    message: string,
    /** True when the archive was refused for its size (or its expansion), not its content. */
    readonly tooLarge = false,
  ) {
    super(message);
  }
}

/** SemVer 2, as Helm requires of chart versions (an optional leading "v" is not allowed here). */
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

export function isSemver(version: string): boolean {
  return SEMVER.test(version);
}

/** Orders versions newest first (SemVer precedence; build metadata ignored). */
export function compareVersionsDescending(a: string, b: string): number {
  const parse = (v: string) => {
    const [core, pre] = v.split("+")[0]!.split(/-(.*)/s) as [string, string | undefined];
    return { core: core.split(".").map(Number), pre: pre?.split(".") };
  };
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < 3; i++) if (x.core[i] !== y.core[i]) return y.core[i]! - x.core[i]!;
  if (x.pre === undefined || y.pre === undefined)
    return (x.pre === undefined ? -1 : 0) + (y.pre === undefined ? 1 : 0);
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    const [p, q] = [x.pre[i], y.pre[i]];
    if (p === undefined || q === undefined) return p === undefined ? 1 : -1;
    if (p === q) continue;
    const [pn, qn] = [/^\d+$/.test(p), /^\d+$/.test(q)];
    if (pn && qn) return Number(q) - Number(p);
    if (pn !== qn) return pn ? 1 : -1;
    return p < q ? 1 : -1;
  }
  return 0;
}

const MAX_CHART_YAML_BYTES = 1024 * 1024;

/** How much a chart archive may expand while it is searched for Chart.yaml. */
export interface ChartArchiveLimits {
  /** Decompressed bytes read at most (Helm itself refuses charts over 100 MiB decompressed). */
  readonly maxExpandedBytes: number;
  /**
   * Decompressed bytes per compressed byte received, past the first MiB. Charts (YAML text and
   * tar padding) expand 5-50 times; a zip bomb of zeros about 1000 times.
   */
  readonly maxRatio: number;
}

export const DEFAULT_ARCHIVE_LIMITS: ChartArchiveLimits = {
  maxExpandedBytes: 100 * 1024 * 1024,
  maxRatio: 200,
};

/** Expansion allowed whatever the ratio: a tiny chart's tar padding expands hundreds of times. */
const RATIO_FREE_BYTES = 1024 * 1024;
/** zlib hands decompressed data over in pieces of this size, one thread-pool job each. */
const INFLATE_CHUNK = 16 * 1024;

/**
 * Finds and checks a packaged chart's `<name>/Chart.yaml` (see `chartMetadata`) while the archive's
 * bytes arrive: gunzip and tar run as streams in small pieces, nothing decompressed is kept but
 * Chart.yaml, and reading stops as soon as it has been read (`helm package` writes it first).
 * Past the limits, or on a damaged archive, it fails with a ChartArchiveError.
 */
export class ChartYamlReader {
  private readonly gunzip = createGunzip({ chunkSize: INFLATE_CHUNK });
  private readonly parser: Parser;
  private compressed = 0;
  private expanded = 0;
  private header = Buffer.alloc(0);
  private chartYaml: string | undefined;
  private outcome: { metadata: ChartMetadata } | { error: Error } | undefined;
  private waiting:
    { resolve: (m: ChartMetadata | undefined) => void; reject: (e: Error) => void } | undefined;

  constructor(private readonly limits: ChartArchiveLimits = DEFAULT_ARCHIVE_LIMITS) {
    this.parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        const parts = entry.path.replace(/^\.\//, "").split("/");
        if (
          this.chartYaml === undefined &&
          parts.length === 2 &&
          parts[1] === "Chart.yaml" &&
          entry.size <= MAX_CHART_YAML_BYTES
        ) {
          const chunks: Buffer[] = [];
          entry.on("data", (chunk: Buffer) => chunks.push(chunk));
          entry.on("end", () => {
            this.chartYaml = Buffer.concat(chunks).toString("utf8");
            this.settle(() => ({ metadata: chartMetadata(this.chartYaml!) }));
          });
        } else {
          entry.resume();
        }
      },
    });
    this.parser.on("error", (error: unknown) => this.fail(damaged(error)));
    this.gunzip.on("data", (piece: Buffer) => {
      if (this.outcome !== undefined) return;
      this.expanded += piece.length;
      if (this.expanded > this.limits.maxExpandedBytes)
        return this.fail(
          new ChartArchiveError(
            `the chart expands to more than ${this.limits.maxExpandedBytes} bytes before its Chart.yaml`,
            true,
          ),
        );
      if (this.expanded > RATIO_FREE_BYTES && this.expanded > this.compressed * this.limits.maxRatio)
        return this.fail(
          new ChartArchiveError(
            `the chart expands more than ${this.limits.maxRatio} times (a compression bomb?)`,
            true,
          ),
        );
      this.parser.write(piece);
    });
    this.gunzip.on("error", (error: Error) => this.fail(damaged(error)));
  }

  /**
   * Feeds the next bytes of the archive. Resolves once they are decompressed and parsed: with the
   * metadata as soon as Chart.yaml has been read (then the rest need not be fed), else undefined.
   */
  write(chunk: Buffer): Promise<ChartMetadata | undefined> {
    if (this.outcome !== undefined) return this.result();
    if (this.header.length < 2) {
      this.header = Buffer.concat([this.header, chunk.subarray(0, 2)]);
      if (this.header.length >= 1 && this.header[0] !== 0x1f) return this.failNow();
      if (this.header.length >= 2 && this.header[1] !== 0x8b) return this.failNow();
    }
    this.compressed += chunk.length;
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.gunzip.write(chunk, (error) => {
        if (error === undefined || error === null) this.wake();
      });
    });
  }

  /** The archive is complete: the metadata, or why there is none. */
  async end(): Promise<ChartMetadata> {
    if (this.outcome === undefined) {
      if (this.header.length < 2) await this.failNow();
      await new Promise<void>((resolve) => {
        this.gunzip.once("end", resolve);
        this.gunzip.once("close", resolve);
        this.gunzip.end();
      });
      if (this.outcome === undefined) {
        await new Promise<void>((resolve) => {
          this.parser.once("end", resolve);
          this.parser.once("close", resolve);
          this.parser.end();
        });
      }
      if (this.outcome === undefined)
        this.outcome = { error: new ChartArchiveError("the archive has no <chart>/Chart.yaml") };
    }
    const metadata = await this.result();
    return metadata!;
  }

  /** Frees the decompressor (after a failure, or when the caller stops early). */
  destroy(): void {
    this.gunzip.destroy();
  }

  private failNow(): Promise<never> {
    this.fail(new ChartArchiveError("the chart is not a gzipped tar archive (helm package makes one)"));
    return this.result() as Promise<never>;
  }

  private fail(error: Error): void {
    this.settle(() => ({ error }));
  }

  private settle(outcome: () => { metadata: ChartMetadata } | { error: Error }): void {
    if (this.outcome !== undefined) return;
    try {
      this.outcome = outcome();
    } catch (error) {
      this.outcome = { error: error as Error };
    }
    // Nothing after Chart.yaml (or a failure) is decompressed.
    this.gunzip.destroy();
    this.wake();
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting !== undefined) this.result().then(waiting.resolve, waiting.reject);
  }

  private result(): Promise<ChartMetadata | undefined> {
    const outcome = this.outcome;
    if (outcome === undefined) return Promise.resolve(undefined);
    return "error" in outcome ? Promise.reject(outcome.error) : Promise.resolve(outcome.metadata);
  }
}

const damaged = (error: unknown) =>
  new ChartArchiveError(`the chart archive is damaged: ${(error as Error).message}`);

/** Reads the metadata of a whole packaged chart (`helm package`'s .tgz) already in memory. */
export async function readChartArchive(
  archive: Buffer,
  limits: ChartArchiveLimits = DEFAULT_ARCHIVE_LIMITS,
): Promise<ChartMetadata> {
  const reader = new ChartYamlReader(limits);
  try {
    for (let at = 0; at < archive.length; at += 64 * 1024) {
      const metadata = await reader.write(archive.subarray(at, at + 64 * 1024));
      if (metadata !== undefined) return metadata;
    }
    return await reader.end();
  } finally {
    reader.destroy();
  }
}

/** Checks what Helm requires of Chart.yaml: a name and a SemVer version. */
function chartMetadata(chartYaml: string): ChartMetadata {
  let metadata: unknown;
  try {
    metadata = parseYaml(chartYaml);
  } catch (error) {
    throw new ChartArchiveError(`Chart.yaml is not valid YAML: ${(error as Error).message.split("\n")[0]}`);
  }
  const { name, version } = (metadata ?? {}) as { name?: unknown; version?: unknown };
  if (typeof name !== "string" || !/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(name))
    throw new ChartArchiveError(
      "Chart.yaml: name must be lowercase letters, digits and . _ - (stored as a repository name)",
    );
  if (typeof version !== "string" || !isSemver(version))
    throw new ChartArchiveError(
      `Chart.yaml: version ${JSON.stringify(version)} is not SemVer 2 (such as 1.2.3)`,
    );
  return metadata as ChartMetadata;
}
