import Koa, { type Context } from "koa";
import type { Logger } from "../log.js";
import type { HttpMetrics } from "../metrics/http-metrics.js";
import { RegistryError } from "../registry/errors.js";
import type { Registry } from "../registry/registry.js";
import { distributionRoutes } from "./distribution.js";
import { writeError, writeUnavailable } from "./errors.js";
import { BufferBudgetExhausted, type BufferBudget } from "../read-limited.js";
import { OPEN, type RequestAuthorizer } from "./auth.js";
import { decodeComponent } from "./url.js";
import type { AuditAction, AuditEvent, AuditLog } from "../audit/audit.js";
import type { Caller } from "../auth/policy.js";
import type { HealthCheck } from "./health.js";
import type { Maintenance } from "../maintenance/maintenance.js";
import { adminRoutes } from "./admin.js";
import { chartRoutes } from "./chartrepo.js";
import { ChartRepository } from "../charts/chart-repository.js";
import type { Notifier } from "../notifications/notifier.js";
import { notificationEvent } from "./notification-events.js";
import { mirroredPath } from "./mirror.js";
import { queryValue } from "./routes.js";
import type { MirrorMap } from "../sync/mirror-map.js";

export interface AppOptions {
  readonly registry: Registry;
  readonly logger: Logger;
  readonly metrics: HttpMetrics;
  readonly health: HealthCheck;
  readonly accessLog: boolean;
  readonly maxManifestBytes: number;
  /** Extra response headers from `http.headers`. */
  readonly headers?: Record<string, string[]>;
  /** See DistributionOptions.locationBase; relative Locations when absent. */
  readonly locationBase?: (ctx: Context) => string;
  /** The path everything is served under (`http.prefix`, normalised: "/nested/registry"); "" for none. */
  readonly pathPrefix?: string;
  /** See DistributionOptions.bodyBudget; charts take from it too. */
  readonly bodyBudget?: BufferBudget;
  /** See DistributionOptions.onBlobStreamed. */
  readonly onBlobStreamed?: (bytes: number) => void;
  /** Authentication and access policy; everything open when absent. */
  readonly authz?: RequestAuthorizer;
  /** `GET /token`, when the registry issues its own tokens. */
  readonly tokenEndpoint?: (ctx: Context) => Promise<void>;
  /** Where audit events go; none when absent. */
  readonly audit?: AuditLog;
  /** The maintenance API (garbage collection, sync); absent, its paths are unknown. */
  readonly maintenance?: Maintenance;
  /** Webhook notifications (`notifications.endpoints`), and this instance's `host:port` for them. */
  readonly notifications?: { readonly notifier: Notifier; readonly sourceAddr: string };
  /** Pulls by upstream name (`?ns=docker.io`, `/v2/docker.io/…`) resolved through this map. */
  readonly mirror?: { readonly current: MirrorMap };
}

/** The registry's public listener (:5000): the distribution API and the health endpoint. */
export function createApp(options: AppOptions): Koa {
  const { registry, logger, metrics, health } = options;
  const app = new Koa({ proxy: false });
  app.silent = true;
  const authz = options.authz ?? OPEN;
  const prefix = options.pathPrefix ?? "";
  const match = distributionRoutes(registry, {
    maxManifestBytes: options.maxManifestBytes,
    locationBase: options.locationBase ?? (() => prefix),
    pathPrefix: prefix,
    authz,
    onBlobStreamed: options.onBlobStreamed,
    bodyBudget: options.bodyBudget,
  });
  const admin =
    options.maintenance === undefined ? undefined : adminRoutes(options.maintenance, authz, registry);
  const charts = chartRoutes(new ChartRepository(registry), registry, authz, options.bodyBudget);
  const extraHeaders = Object.entries(options.headers ?? {});

  app.use(async (ctx: Context) => {
    const started = process.hrtime.bigint();
    metrics.inFlight.inc();
    let routeName = "unknown";
    let params: string[] = [];
    try {
      ctx.set("Docker-Distribution-API-Version", "registry/2.0");
      for (const [header, values] of extraHeaders) ctx.set(header, values);
      const routed = routedPath(ctx.path, prefix);
      const path =
        options.mirror !== undefined && routed.startsWith("/v2/")
          ? mirroredPath(routed, ctx.method, queryValue(ctx, "ns"), options.mirror.current)
          : routed;
      if (path === "/debug/health") {
        routeName = "health";
        await health.respond(ctx);
      } else if (path === "/token" && options.tokenEndpoint !== undefined) {
        routeName = "token";
        await options.tokenEndpoint(ctx);
      } else if (path === "/v2" || path.startsWith("/v2/") || path.startsWith("/chartrepo/")) {
        const found = path.startsWith("/chartrepo/")
          ? charts(path, ctx.method)
          : (admin?.(path, ctx.method) ?? match(path, ctx.method));
        if (found === undefined) {
          writeError(ctx, new RegistryError("NAME_UNKNOWN", "unknown endpoint"), 404);
        } else {
          routeName = found.route.name;
          params = found.params;
          if (found.handler === undefined) {
            ctx.set("Allow", Object.keys(found.route.methods).join(", "));
            writeError(ctx, new RegistryError("UNSUPPORTED", `method ${ctx.method} not allowed`));
          } else {
            await authz.identify(ctx);
            await found.handler(ctx, found.params);
          }
        }
      } else {
        ctx.status = 404;
        ctx.type = "text/plain";
        ctx.body = "404 page not found\n";
      }
    } catch (error) {
      if (error instanceof RegistryError) {
        writeError(ctx, error);
        if (error.code === "UNAUTHORIZED") {
          // The token endpoint itself asks for Basic credentials; the registry for whatever it uses.
          const challenge = routeName === "token" ? 'Basic realm="token"' : authz.challengeFor(error);
          if (challenge !== undefined) ctx.set("WWW-Authenticate", challenge);
        }
        const retryAfter = (error.detail as { retryAfter?: number } | undefined)?.retryAfter;
        if (error.code === "TOOMANYREQUESTS" && retryAfter !== undefined)
          ctx.set("Retry-After", String(retryAfter));
      } else if (error instanceof BufferBudgetExhausted) {
        writeUnavailable(ctx, error.message, 1);
      } else if (isClientAbort(error)) {
        // Nobody reads this answer; the status is for metrics and logs (a null body would make it 204).
        ctx.status = 400;
        ctx.body = "";
        logger.debug({ path: ctx.path, err: (error as Error).message }, "client went away");
      } else {
        logger.error({ err: error, method: ctx.method, path: ctx.path }, "request failed");
        ctx.status = 500;
        ctx.type = "application/json";
        ctx.body = { errors: [{ code: "UNKNOWN", message: "internal server error" }] };
      }
      // An unread request body would otherwise be taken for the next request on this connection.
      if (!ctx.req.complete) ctx.set("Connection", "close");
    } finally {
      metrics.inFlight.dec();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const method = ctx.method;
      const length = ctx.response.length;
      metrics.record(method, routeName, ctx.status, seconds, typeof length === "number" ? length : undefined);
      if (options.audit !== undefined) {
        const event = auditEvent(ctx, routeName, params);
        if (event !== undefined) options.audit.record(event);
      }
      if (options.notifications !== undefined) {
        const { notifier, sourceAddr } = options.notifications;
        const event = notificationEvent(ctx, routeName, params, {
          addr: sourceAddr,
          instanceID: notifier.instanceId,
        });
        if (event !== undefined) notifier.publish(event);
      }
      if (options.accessLog) {
        logger.info(
          {
            method,
            path: ctx.path,
            status: ctx.status,
            route: routeName,
            ms: Math.round(seconds * 1e4) / 10,
            remote: ctx.ip,
          },
          "request",
        );
      }
    }
  });
  return app;
}

/** The audit event a finished request makes, if it is one the trail keeps. */
function auditEvent(ctx: Context, route: string, params: string[]): AuditEvent | undefined {
  const { method, status } = ctx;
  let action: AuditAction | undefined;
  if (status === 401 && ctx.get("Authorization") !== "") action = "login-failure";
  else if (status === 403) action = "denied";
  else if (route === "manifest" && method === "PUT" && status === 201) action = "push";
  else if (route === "manifest" && method === "GET" && status === 200) action = "pull";
  else if ((route === "manifest" || route === "blob") && method === "DELETE" && status === 202)
    action = "delete";
  else if ((route === "upload" || route === "upload_start") && status === 201) action = "upload";
  else if (route.startsWith("admin_") && (method === "POST" || route === "admin_backup"))
    action = "maintenance";
  else if (route === "chartrepo_charts" && method === "POST" && status === 201) action = "push";
  else if (route === "chartrepo_download" && method === "GET" && status === 200) action = "pull";
  else if (route === "chartrepo_version" && method === "DELETE" && status === 200) action = "delete";
  if (action === undefined) return undefined;

  // Chart handlers name what they touched (the chart's repository is only known from its archive).
  const chart = ctx.state.chart as { repository: string; reference: string } | undefined;
  const reference =
    chart?.reference ??
    ((route === "manifest" || route === "blob") && params[1] !== undefined
      ? decodeComponent(params[1])
      : undefined);
  const digest =
    ctx.response.get("Docker-Content-Digest") || (reference?.includes(":") ? reference : undefined);
  const caller = ctx.state.caller as Caller | undefined;
  return {
    time: new Date().toISOString(),
    action,
    user: caller?.kind === "user" ? caller.name : null,
    client: ctx.ip,
    method,
    ...(chart !== undefined
      ? { repository: chart.repository }
      : params[0] !== undefined && !route.startsWith("chartrepo_")
        ? { repository: decodeComponent(params[0]) }
        : {}),
    ...(reference !== undefined ? { reference } : {}),
    ...(digest ? { digest } : {}),
    status,
  };
}

function isClientAbort(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "ECONNRESET" || code === "ERR_STREAM_PREMATURE_CLOSE" || code === "ECONNABORTED";
}

/**
 * The request's path as the routes see it: below `http.prefix` (a path outside it routes
 * nowhere). The health endpoint answers at the root as well, for probes that know no prefix.
 */
function routedPath(path: string, prefix: string): string {
  if (prefix === "" || path === "/debug/health") return path;
  if (path === prefix) return "/";
  return path.startsWith(`${prefix}/`) ? path.slice(prefix.length) : "";
}
