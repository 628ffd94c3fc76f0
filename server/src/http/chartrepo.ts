import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import busboy from "busboy";
import type { Context } from "koa";
import { stringify } from "yaml";
import { ChartArchiveError, ChartYamlReader, type ChartMetadata } from "../charts/chart-archive.js";
import { ChartError, type ChartRepository } from "../charts/chart-repository.js";
import type { Registry } from "../registry/registry.js";
import type { RequestAuthorizer } from "./auth.js";
import { matcher, queryValue, type Matcher } from "./routes.js";
import { decodeComponent as decode } from "./url.js";
import { BufferBudgetExhausted, type BufferBudget } from "../read-limited.js";

/** The chart namespace of `/chartrepo` itself (the guide's `helm repo add … /chartrepo`). */
export const DEFAULT_CHART_NAMESPACE = "charts";
/** Packaged charts are small; a larger upload is refused before it is read whole. */
const MAX_CHART_BYTES = 32 * 1024 * 1024;

const NS = "(?:/([a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*))?";

/**
 * The ChartMuseum API, as Helm (`helm repo add`, `helm install`) and the cm-push plugin use it:
 * `/chartrepo[/<namespace>]/index.yaml`, `…/charts/<name>-<version>.tgz`, and
 * `…/api/charts[/<name>[/<version>]]` to list, upload (raw body or multipart `chart`) and delete.
 * Charts live in the registry as OCI artifacts in `<namespace>/<name>`.
 */
export function chartRoutes(
  charts: ChartRepository,
  registry: Registry,
  authz: RequestAuthorizer,
  /** Request bytes held in memory across requests (`http.maxbufferedbytes`). */
  budget?: BufferBudget,
): Matcher {
  const namespaceOf = (raw: string | undefined) => (raw === undefined ? DEFAULT_CHART_NAMESPACE : raw);

  return matcher([
    {
      name: "chartrepo_index",
      pattern: new RegExp(`^/chartrepo${NS}/index\\.yaml$`),
      methods: { GET: index },
    },
    {
      name: "chartrepo_download",
      pattern: new RegExp(`^/chartrepo${NS}/charts/([^/]+\\.tgz)$`),
      methods: { GET: download, HEAD: download },
    },
    {
      name: "chartrepo_charts",
      pattern: new RegExp(`^/chartrepo${NS}/api/charts$`),
      methods: { GET: listCharts, POST: upload },
    },
    {
      name: "chartrepo_chart",
      pattern: new RegExp(`^/chartrepo${NS}/api/charts/([^/]+)$`),
      methods: { GET: chartVersions },
    },
    {
      name: "chartrepo_version",
      pattern: new RegExp(`^/chartrepo${NS}/api/charts/([^/]+)/([^/]+)$`),
      methods: { GET: chartVersion, HEAD: chartVersion, DELETE: deleteVersion },
    },
  ]);

  async function index(ctx: Context, [ns]: string[]) {
    await answer(ctx, async () => {
      authz.requireSomeAccess(ctx);
      const file = await charts.index(namespaceOf(ns), (repository) => authz.may(ctx, "pull", repository));
      ctx.type = "application/x-yaml";
      ctx.body = stringify(file);
    });
  }

  async function download(ctx: Context, [ns, file]: string[]) {
    await answer(ctx, async () => {
      const namespace = namespaceOf(ns);
      // Only charts the caller may pull are looked for, so a refusal says nothing of what exists.
      const candidates = charts.archiveCandidates(namespace, decode(file!));
      if (candidates.length > 0 && !candidates.some((c) => authz.may(ctx, "pull", c.repository)))
        authz.require(ctx, "pull", candidates[0]!.repository);
      authz.requireSomeAccess(ctx);
      const found = await charts.archive(namespace, decode(file!), (repository) =>
        authz.may(ctx, "pull", repository),
      );
      ctx.state.chart = { repository: found.repository, reference: decode(file!) };
      const size = await registry.statBlob(found.repository, found.digest);
      ctx.type = "application/x-tar";
      ctx.length = size;
      if (ctx.method === "HEAD") {
        ctx.status = 200;
        return;
      }
      ctx.body = await registry.readBlob(found.digest, size);
    });
  }

  async function listCharts(ctx: Context, [ns]: string[]) {
    await answer(ctx, async () => {
      authz.requireSomeAccess(ctx);
      const file = await charts.index(namespaceOf(ns), (repository) => authz.may(ctx, "pull", repository));
      ctx.body = file.entries;
    });
  }

  async function chartVersions(ctx: Context, [ns, name]: string[]) {
    await answer(ctx, async () => {
      authz.require(ctx, "pull", `${namespaceOf(ns)}/${decode(name!)}`);
      ctx.body = await charts.versions(namespaceOf(ns), decode(name!));
    });
  }

  async function chartVersion(ctx: Context, [ns, name, version]: string[]) {
    await answer(ctx, async () => {
      authz.require(ctx, "pull", `${namespaceOf(ns)}/${decode(name!)}`);
      ctx.body = await charts.version(namespaceOf(ns), decode(name!), decode(version!));
    });
  }

  async function deleteVersion(ctx: Context, [ns, name, version]: string[]) {
    await answer(ctx, async () => {
      authz.require(ctx, "delete", `${namespaceOf(ns)}/${decode(name!)}`);
      ctx.state.chart = { repository: `${namespaceOf(ns)}/${decode(name!)}`, reference: decode(version!) };
      await charts.delete(namespaceOf(ns), decode(name!), decode(version!));
      ctx.body = { deleted: true };
    });
  }

  async function upload(ctx: Context, [ns]: string[]) {
    await answer(ctx, async () => {
      // Nobody's upload is read before they have shown credentials (when the registry asks for any).
      authz.requireAuthenticated(ctx);
      const namespace = namespaceOf(ns);
      const force = queryValue(ctx, "force") !== undefined && queryValue(ctx, "force") !== "false";
      // The chart's name is in its Chart.yaml, the archive's first entry: the push right is
      // checked as soon as that is read, before the rest of the body is kept.
      const chart = await receiveChart(ctx, budget, (metadata) =>
        authz.require(ctx, "push", charts.repositoryOf(namespace, metadata.name)),
      );
      const saved = await charts.save(namespace, chart, force);
      ctx.state.chart = { repository: `${namespace}/${saved.name}`, reference: saved.version };
      ctx.status = 201;
      ctx.body = { saved: true, name: saved.name, version: saved.version };
    });
  }
}

/** ChartMuseum's error shape (`{"error": "…"}`) for chart errors; registry errors go to the app. */
async function answer(ctx: Context, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    if (error instanceof BufferBudgetExhausted) {
      ctx.status = 503;
      ctx.set("Retry-After", "1");
      ctx.body = { error: error.message };
      return;
    }
    if (!(error instanceof ChartError)) throw error;
    ctx.status = error.status;
    ctx.body = { error: error.message };
  }
}

const chartTooLarge = () => new ChartError(`a chart may be at most ${MAX_CHART_BYTES} bytes`, 413);

/**
 * Receives a packaged chart (the whole body, or the `chart` file of cm-push's multipart form):
 * keeps its compressed bytes (at most MAX_CHART_BYTES, taken from the shared budget) and reads
 * its Chart.yaml as they arrive, telling `onMetadata` (which may refuse) as soon as it is read.
 * A refused upload's remaining body is read and dropped up to the size limit, so the client
 * sees the answer rather than a reset connection.
 */
async function receiveChart(
  ctx: Context,
  budget: BufferBudget | undefined,
  onMetadata: (metadata: ChartMetadata) => void,
): Promise<{ archive: Buffer; metadata: ChartMetadata }> {
  const declared = Number(ctx.get("Content-Length") || "0");
  if (declared > MAX_CHART_BYTES) throw chartTooLarge();
  const reader = new ChartYamlReader();
  let chunks: Buffer[] = [];
  let total = 0;
  let taken = 0;
  let metadata: ChartMetadata | undefined;
  let refusal: unknown;
  const drop = () => {
    chunks = [];
    budget?.give(taken);
    taken = 0;
    reader.destroy();
  };
  try {
    for await (const chunk of chartBody(ctx)) {
      total += chunk.length;
      if (total > MAX_CHART_BYTES) throw refusal ?? chartTooLarge();
      if (refusal !== undefined) continue;
      try {
        if (budget !== undefined) {
          if (!budget.tryTake(chunk.length)) throw new BufferBudgetExhausted();
          taken += chunk.length;
        }
        chunks.push(chunk);
        if (metadata === undefined) {
          metadata = await reader.write(chunk);
          if (metadata !== undefined) onMetadata(metadata);
        }
      } catch (error) {
        refusal = error;
        drop();
      }
    }
    if (refusal !== undefined) throw refusal;
    if (metadata === undefined) {
      metadata = await reader.end();
      onMetadata(metadata);
    }
    return { archive: Buffer.concat(chunks, total), metadata };
  } catch (error) {
    if (error instanceof ChartArchiveError) throw new ChartError(error.message, error.tooLarge ? 413 : 400);
    throw error;
  } finally {
    drop();
  }
}

/** The chart's bytes: the body itself, or the `chart` file of a multipart form (cm-push's way). */
async function* chartBody(ctx: Context): AsyncGenerator<Buffer> {
  if (!ctx.is("multipart/form-data")) {
    yield* ctx.req as AsyncIterable<Buffer>;
    return;
  }
  let chart: Readable | undefined;
  const form = busboy({ headers: ctx.req.headers, limits: { fileSize: MAX_CHART_BYTES + 1, files: 2 } });
  const file = new Promise<Readable>((resolve, reject) => {
    form.on("file", (field, stream) => {
      if (field === "chart" && chart === undefined) resolve((chart = stream));
      else stream.resume(); // `prov` (provenance) is not kept
    });
    form.on("error", (error: unknown) => {
      const failure = new ChartError(`bad multipart body: ${(error as Error).message}`, 400);
      reject(failure);
      chart?.destroy(failure);
    });
    form.on("close", () => reject(new ChartError('the form has no "chart" file', 400)));
  });
  // A client gone mid-form must end the chart's stream too, or its bytes would wait forever.
  pipeline(ctx.req, form).catch((error: unknown) => chart?.destroy(error as Error));
  yield* await file;
}
