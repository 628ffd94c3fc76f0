import busboy from "busboy";
import type { Context } from "koa";
import { stringify } from "yaml";
import { ChartError, type ChartRepository } from "../charts/chart-repository.js";
import type { Registry } from "../registry/registry.js";
import type { RequestAuthorizer } from "./auth.js";
import { matcher, queryValue, type Matcher } from "./routes.js";
import { decodeComponent as decode } from "./url.js";
import { readLimited } from "../read-limited.js";

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
export function chartRoutes(charts: ChartRepository, registry: Registry, authz: RequestAuthorizer): Matcher {
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
      authz.requireSomeAccess(ctx);
      const found = await charts.archive(namespaceOf(ns), decode(file!));
      ctx.state.chart = { repository: found.repository, reference: decode(file!) };
      authz.require(ctx, "pull", found.repository);
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
      const archive = await readChart(ctx);
      const namespace = namespaceOf(ns);
      const force = queryValue(ctx, "force") !== undefined && queryValue(ctx, "force") !== "false";
      // The chart's name is in the archive: the push right is checked once it is known.
      const saved = await charts.save(namespace, archive, force, (repository) =>
        authz.require(ctx, "push", repository),
      );
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
    if (!(error instanceof ChartError)) throw error;
    ctx.status = error.status;
    ctx.body = { error: error.message };
  }
}

const chartTooLarge = (limit: number) => new ChartError(`a chart may be at most ${limit} bytes`, 400);

/** The packaged chart: the whole body, or the `chart` file of a multipart form (cm-push's way). */
async function readChart(ctx: Context): Promise<Buffer> {
  const declared = Number(ctx.get("Content-Length") || "0");
  if (declared > MAX_CHART_BYTES)
    throw new ChartError(`a chart may be at most ${MAX_CHART_BYTES} bytes`, 400);
  if (!ctx.is("multipart/form-data")) return readLimited(ctx.req, MAX_CHART_BYTES, chartTooLarge);
  return new Promise((resolve, reject) => {
    let chart: Promise<Buffer> | undefined;
    const form = busboy({ headers: ctx.req.headers, limits: { fileSize: MAX_CHART_BYTES, files: 2 } });
    form.on("file", (field, stream) => {
      if (field === "chart" && chart === undefined)
        chart = readLimited(stream, MAX_CHART_BYTES, chartTooLarge);
      else stream.resume(); // `prov` (provenance) is not kept
    });
    form.on("error", (error: unknown) =>
      reject(new ChartError(`bad multipart body: ${(error as Error).message}`, 400)),
    );
    form.on("close", () => {
      if (chart === undefined) reject(new ChartError('the form has no "chart" file', 400));
      else chart.then(resolve, reject);
    });
    ctx.req.pipe(form);
  });
}
