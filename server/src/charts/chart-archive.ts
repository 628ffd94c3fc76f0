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

/**
 * Reads the chart's `<name>/Chart.yaml` out of a packaged chart (`helm package`'s .tgz) and
 * checks what Helm requires of it: a name and a SemVer version.
 */
export async function readChartArchive(archive: Buffer): Promise<ChartMetadata> {
  if (archive.length < 2 || archive[0] !== 0x1f || archive[1] !== 0x8b)
    throw new ChartArchiveError("the chart is not a gzipped tar archive (helm package makes one)");
  let chartYaml: string | undefined;
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        const parts = entry.path.replace(/^\.\//, "").split("/");
        if (
          chartYaml === undefined &&
          parts.length === 2 &&
          parts[1] === "Chart.yaml" &&
          entry.size <= MAX_CHART_YAML_BYTES
        ) {
          const chunks: Buffer[] = [];
          entry.on("data", (chunk: Buffer) => chunks.push(chunk));
          entry.on("end", () => (chartYaml = Buffer.concat(chunks).toString("utf8")));
        } else {
          entry.resume();
        }
      },
    });
    parser.on("error", (error: unknown) =>
      reject(new ChartArchiveError(`the chart archive is damaged: ${(error as Error).message}`)),
    );
    parser.on("end", () => resolve());
    parser.end(archive);
  });
  if (chartYaml === undefined) throw new ChartArchiveError("the archive has no <chart>/Chart.yaml");
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
