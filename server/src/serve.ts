import { readFileSync } from "node:fs";
import cluster, { type Worker } from "node:cluster";
import http from "node:http";
import https from "node:https";
import { availableParallelism, hostname } from "node:os";
import type { AddressInfo } from "node:net";
import Koa from "koa";
import Router from "@koa/router";
import { AggregatorRegistry, Registry as PromRegistry } from "prom-client";
import { parseListenAddress } from "./config/load.js";
import type { Config } from "./config/schema.js";
import { createApp } from "./http/app.js";
import { HealthCheck } from "./http/health.js";
import { createLogger, type Logger } from "./log.js";
import { HttpMetrics } from "./metrics/http-metrics.js";
import { ObservedFilesystemDriver, StorageStats, sendToPrimary } from "./metrics/storage-stats.js";
import { Registry, type RegistryOptions } from "./registry/registry.js";
import { PullThroughRegistry } from "./proxy/pull-through.js";
import { expireCachedTags } from "./proxy/expiry.js";
import { UpstreamClient } from "./sync/upstream.js";
import { notifierFor } from "./notifications/notifier.js";
import { registerNotificationMetrics } from "./metrics/notification-metrics.js";
import { proxyMetrics } from "./metrics/proxy-metrics.js";
import { FilesystemDriver } from "./storage/filesystem.js";
import type { StorageDriver } from "./storage/driver.js";
import { openStorage, storageLocation } from "./storage/open.js";
import { relayInvalidations, workerBus } from "./cluster-bus.js";
import { parseDuration } from "./config/duration.js";
import { locationBaseFor } from "./http/location.js";
import { secureContextOptions, watchCertificates } from "./http/tls.js";
import { startUploadPurging } from "./maintenance/upload-purging.js";
import { HtpasswdUsers } from "./auth/htpasswd.js";
import { AuditLog } from "./audit/audit.js";
import { AccessPolicy } from "./auth/policy.js";
import { LoginLimiter } from "./auth/login-limiter.js";
import { BasicAuthorizer, BasicCredentials, BearerAuthorizer, type RequestAuthorizer } from "./http/auth.js";
import { tokenEndpoint } from "./http/token-endpoint.js";
import type { Context } from "koa";
import { localBus, type InvalidationBus } from "./registry/metadata-cache.js";
import { Maintenance } from "./maintenance/maintenance.js";
import { TaskStatusStore } from "./maintenance/status.js";
import { defaultTokenRealms, upstreamClients } from "./sync/upstreams.js";
import { registerMaintenanceMetrics } from "./metrics/maintenance-metrics.js";
import { registerCertificateMetrics } from "./metrics/certificate-metrics.js";
import { MemoryReleaser } from "./memory-release.js";
import { MirrorMap } from "./sync/mirror-map.js";
import { WatchedMirrorMap } from "./sync/mirror-source.js";
import { effectiveMaxConnections, fileDescriptorLimit, guardListener } from "./http/connections.js";
import { BufferBudget } from "./read-limited.js";
import type { SharedState } from "./coordination/shared-state.js";
import type { SharedLocks } from "./coordination/locks.js";

/** Sockets idle (no request, no body byte) this long are closed. */
const IDLE_TIMEOUT_MS = 10 * 60_000;
/** The debug listener serves probes and scrapes: a few connections are plenty. */
const DEBUG_MAX_CONNECTIONS = 64;

const CONFIG_ENV = "NEAM_REGISTRY_WORKER_CONFIG";

/**
 * The Redis coordination code, imported only when `redis` is configured: ioredis costs a
 * registry that runs alone about 20 MiB of RSS for nothing (the same holds for the S3 driver,
 * see openStorage, and the token code, see authorizerFor).
 */
async function connectShared(config: Config, logger: Logger): Promise<SharedState | undefined> {
  if (config.redis === undefined) return undefined;
  const { SharedState } = await import("./coordination/shared-state.js");
  return new SharedState(config.redis, logger);
}

/**
 * `serve`. With `http.workers: 1` (the default) one process serves everything: one event loop
 * already answers many times the reference registry's request rate, and a single process keeps
 * memory below it. With more workers, node:cluster shares the public socket among worker
 * processes and the primary serves metrics (aggregated) and health on the debug address.
 */
export async function serve(config: Config): Promise<void> {
  if (cluster.isWorker) return runWorker(JSON.parse(process.env[CONFIG_ENV]!) as Config);
  const logger = createLogger(config.log);
  // Other replicas may share the storage (Redis configured): their temporary files are in use.
  // A filesystem's writes and deletes keep the storage gauges current (see StorageStats).
  const driver = await openStorage(config, {
    init: true,
    shared: config.redis !== undefined,
    filesystem: (root) => new ObservedFilesystemDriver(root),
  });
  const workers = config.http.workers === 0 ? availableParallelism() : config.http.workers;
  const stop =
    workers === 1
      ? await runSingle(config, driver, logger)
      : await runCluster(config, driver, logger, workers);
  const stopPurging = startUploadPurging(config, driver, logger);
  logger.info(
    {
      addr: config.http.addr,
      debug: config.http.debug.addr,
      workers,
      storage: storageLocation(driver),
      tls: config.http.tls !== undefined,
    },
    "registry listening",
  );
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    stopPurging();
    // In-flight requests get http.draintimeout to finish (10 s when unset).
    setTimeout(() => process.exit(0), parseDuration(config.http.draintimeout ?? "10s")).unref();
    void stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

/** Everything in this process. Returns what stops it gracefully. */
async function runSingle(
  config: Config,
  driver: StorageDriver,
  logger: Logger,
): Promise<() => Promise<void>> {
  const { server, metrics, audit, shared } = await startPublicServer(config, driver, logger, localBus);
  const debug = await startDebugServer(config, driver, logger, () => metrics.registry.metrics(), shared);
  return async () => {
    debug.close();
    await drain(server);
    // After the drain, so the requests that finished in it are in the trail; before exit, which
    // would drop what the file stream has not written yet.
    await audit?.close();
  };
}

async function runCluster(
  config: Config,
  driver: StorageDriver,
  logger: Logger,
  workers: number,
): Promise<() => Promise<void>> {
  relayInvalidations();
  let stopping = false;
  const fork = (): Worker => cluster.fork({ [CONFIG_ENV]: JSON.stringify(config) });
  cluster.on("exit", (worker, code, signal) => {
    if (stopping) return;
    logger.error({ pid: worker.process.pid, code, signal }, "worker exited; starting another");
    setTimeout(fork, 500).unref();
  });
  const listening = new Promise<void>((resolve) => {
    let count = 0;
    cluster.on("listening", () => {
      if (++count === workers) resolve();
    });
  });
  for (let i = 0; i < workers; i++) fork();
  const aggregator = new AggregatorRegistry();
  // The primary's own connection, for /debug/health to report Redis.
  const shared = await connectShared(config, logger);
  const debug = await startDebugServer(config, driver, logger, () => aggregator.clusterMetrics(), shared);
  await listening;
  return async () => {
    stopping = true;
    debug.close();
    const exited = new Promise<void>((resolve) =>
      cluster.on("exit", () => {
        if (Object.keys(cluster.workers ?? {}).length === 0) resolve();
      }),
    );
    for (const worker of Object.values(cluster.workers ?? {})) worker?.disconnect();
    await exited;
  };
}

async function runWorker(config: Config): Promise<void> {
  const logger = createLogger(config.log).child({ worker: cluster.worker?.id });
  const driver = await openStorage(config, {
    init: false,
    filesystem: (root) => new ObservedFilesystemDriver(root, sendToPrimary),
  });
  const { server, metrics, audit } = await startPublicServer(config, driver, logger, workerBus());
  process.on("disconnect", () => void drain(server).then(() => audit?.close()));
  // Constructing an AggregatorRegistry installs the listener that answers the primary's scrape.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([metrics.registry]);
}

/**
 * Stops accepting connections and resolves when the open ones are done. `close()` drops the
 * connections idle at that moment only; one whose request finishes during the drain would stay
 * open (keep-alive) until its client let go, holding the exit until the drain timeout.
 */
async function drain(server: http.Server | https.Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  const idle = setInterval(() => server.closeIdleConnections(), 100);
  await closed;
  clearInterval(idle);
}

/** The public listener (:5000) over `driver`. */
async function startPublicServer(
  config: Config,
  driver: StorageDriver,
  logger: Logger,
  bus: InvalidationBus,
) {
  const metrics = new HttpMetrics();
  const memory = new MemoryReleaser();
  // With Redis, replicas (and workers) share the cache, the GC guard, upload and maintenance
  // locks through it; the in-process bus has nothing left to relay.
  const shared = await connectShared(config, logger);
  if (shared !== undefined && !(await shared.connected(parseDuration(config.redis!.dialtimeout) + 1000)))
    logger.warn("redis not reachable at start; pulls are served, writes answer 503 until it is");
  const coordination =
    shared === undefined
      ? undefined
      : await Promise.all([
          import("./coordination/registry-state.js"),
          import("./coordination/notify-queue.js"),
        ]);
  const state = shared === undefined ? undefined : coordination![0].sharedRegistryState(shared, logger);
  const audit = config.audit === undefined ? undefined : new AuditLog(config.audit);
  const options: RegistryOptions = {
    onUploadBytes: (bytes) => {
      metrics.uploadBytes.inc(bytes);
      memory.transferred(bytes);
    },
    deleteEnabled: config.storage.delete.enabled,
    maxManifestBytes: config.http.maxmanifestbytes,
    bus: shared === undefined ? bus : localBus,
    readOnly: config.storage.maintenance?.readonly?.enabled ?? false,
    ...(state !== undefined ? { shared: state.registry } : {}),
    // Off unless `storage.redirect.disable: false` is written (see the schema).
    redirectBlobs: config.storage.redirect?.disable === false,
  };
  const registry =
    config.proxy === undefined
      ? new Registry(driver, options)
      : pullThrough(config, driver, options, logger, proxyMetrics(metrics.registry));
  const { authz, tokenEndpoint: token } = await authorizerFor(config, logger, shared);
  const notifier = notifierFor(
    config.notifications,
    parseDuration,
    logger,
    state === undefined ? undefined : new coordination![1].RedisEventQueue(shared!, state.locks),
  );
  if (notifier !== undefined) registerNotificationMetrics(notifier, metrics.registry);
  const maintenance = new Maintenance(registry, new TaskStatusStore(driver), logger, {
    gcUnavailable:
      config.http.workers === 1 || shared !== undefined
        ? undefined
        : "online garbage collection needs http.workers: 1 (with several workers, run `neam-registry gc --offline` while the registry is stopped or read-only)",
    upstreams: () => upstreamClients(config.sync.upstreams, config.http.maxmanifestbytes),
    ...(state !== undefined ? { lane: state.lane } : {}),
  });
  // Pulls by upstream name always resolve (an empty map: each name where it was pushed); with
  // `sync.manifest`, the names the sync manifest renames are found under their targets.
  const mirror =
    config.sync.manifest === undefined
      ? { current: new MirrorMap() }
      : new WatchedMirrorMap(config.sync.manifest, logger);
  const app = createApp({
    registry,
    logger,
    metrics,
    health: healthCheck(config, driver),
    accessLog: !config.log.accesslog.disabled,
    maxManifestBytes: config.http.maxmanifestbytes,
    headers: config.http.headers,
    locationBase: locationBaseFor(config.http),
    pathPrefix: config.http.prefix,
    onBlobStreamed: (bytes) => memory.transferred(bytes),
    authz,
    tokenEndpoint: token,
    audit,
    maintenance,
    mirror,
    bodyBudget: new BufferBudget(config.http.maxbufferedbytes),
    ...(notifier !== undefined
      ? {
          notifications: {
            notifier,
            sourceAddr: `${hostname()}:${parseListenAddress(config.http.addr).port}`,
          },
        }
      : {}),
  });
  const stopExpiry =
    config.proxy === undefined
      ? () => {}
      : startCacheExpiry(config, registry, maintenance, logger, state?.locks);
  const server = createServer(config, app.callback());
  server.on("close", () => {
    stopExpiry();
    if (mirror instanceof WatchedMirrorMap) mirror.close();
  });
  if (config.http.tls !== undefined) watchCertificates(server as https.Server, config.http.tls, logger);
  // Long uploads must not be cut by Node's request timeout; idle sockets still are.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 75_000;
  server.setTimeout(IDLE_TIMEOUT_MS);
  const descriptors = fileDescriptorLimit();
  const maxConnections = effectiveMaxConnections(config.http.maxconnections, descriptors?.soft);
  guardListener(
    server,
    {
      maxConnections,
      bodyTimeoutMs: parseDuration(config.http.bodytimeout),
      idleTimeoutMs: IDLE_TIMEOUT_MS,
      onAbandoned: (bytes) => memory.transferred(bytes),
    },
    logger,
  );
  (maxConnections < config.http.maxconnections ? logger.warn : logger.info).call(
    logger,
    {
      descriptors: descriptors?.soft,
      hardLimit: descriptors?.hard,
      maxconnections: maxConnections,
    },
    maxConnections < config.http.maxconnections
      ? "http.maxconnections lowered to fit the open-file limit (raise it with ulimit -n / the pod's limits)"
      : "connection limits",
  );
  const { host, port } = parseListenAddress(config.http.addr);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  // The bound port, which differs from the configured one when that is 0 (tests bind port 0).
  logger.info({ port: (server.address() as AddressInfo).port }, "public listener up");
  return { server, metrics, audit, shared };
}

/** The authorizer `auth` asks for (Bearer tokens, Basic against htpasswd, or none) and the token endpoint. */
async function authorizerFor(
  config: Config,
  logger: Logger,
  shared?: SharedState,
): Promise<{ authz?: RequestAuthorizer; tokenEndpoint?: (ctx: Context) => Promise<void> }> {
  const auth = config.auth;
  if (auth === undefined || (auth.htpasswd === undefined && auth.token === undefined)) return {};
  const policy = new AccessPolicy(auth.access);
  let credentials: BasicCredentials | undefined;
  if (auth.htpasswd !== undefined) {
    const users = new HtpasswdUsers(auth.htpasswd.path, (event) => {
      if ("error" in event)
        logger.error({ error: event.error }, "htpasswd reload failed; keeping the previous users");
      else logger.info({ users: event.users }, "htpasswd reloaded");
    });
    users.watch();
    const limiter = new LoginLimiter({
      clientFailures: auth.limits.clientfailures,
      userFailures: auth.limits.userfailures,
      windowMs: parseDuration(auth.limits.window),
    });
    credentials = new BasicCredentials(
      users,
      shared === undefined
        ? limiter
        : new (await import("./coordination/login-store.js")).SharedLoginLimiter(
            shared,
            limiter.limits,
            limiter,
          ),
    );
    if (config.http.tls === undefined)
      logger.warn("basic authentication without http.tls sends passwords in clear text");
  }
  const token = auth.token;
  if (token === undefined) return { authz: new BasicAuthorizer(credentials!, policy, auth.htpasswd!.realm) };
  // jose (JWT signing and verification) only for token auth.
  const { TokenIssuer, TokenVerifier } = await import("./auth/tokens.js");
  const issuer =
    token.signingkey === undefined
      ? undefined
      : new TokenIssuer(
          token.signingkey,
          token.issuer,
          token.service,
          parseDuration(token.expiration) / 1000,
        );
  const verifier = new TokenVerifier(token.issuer, token.service, {
    issuer,
    rootCertBundle: token.rootcertbundle,
    jwksFile: token.jwks,
  });
  return {
    authz: new BearerAuthorizer(verifier, policy, credentials, token.realm, token.service),
    tokenEndpoint: issuer === undefined ? undefined : tokenEndpoint(issuer, policy, credentials),
  };
}

/** The registry as a pull-through cache of `proxy.remoteurl`. */
function pullThrough(
  config: Config,
  driver: StorageDriver,
  options: RegistryOptions,
  logger: Logger,
  metrics: ReturnType<typeof proxyMetrics>,
): Registry {
  const proxy = config.proxy!;
  let lastWarning = 0;
  return new PullThroughRegistry(driver, options, {
    upstream: new UpstreamClient(
      {
        url: proxy.remoteurl,
        ...(proxy.username !== undefined
          ? {
              username: proxy.username,
              password:
                proxy.passwordfile !== undefined
                  ? readFileSync(proxy.passwordfile, "utf8").replace(/\r?\n$/, "")
                  : (proxy.password ?? ""),
            }
          : {}),
        tokenRealms: proxy.tokenrealms ?? defaultTokenRealms(new URL(proxy.remoteurl).hostname),
      },
      config.http.maxmanifestbytes,
    ),
    revalidateMs: parseDuration(proxy.revalidate),
    onLookup: metrics.onLookup,
    onUpstreamUnavailable: (error) => {
      metrics.onUpstreamError();
      // Once a minute at most: an unreachable upstream would otherwise log every pull.
      if (Date.now() - lastWarning < 60_000) return;
      lastWarning = Date.now();
      logger.warn(
        { upstream: proxy.remoteurl, err: error.message },
        "upstream unavailable; serving the cache",
      );
    },
  });
}

/**
 * `proxy.ttl`: every quarter of the ttl (an hour at most), tags not pulled within the ttl are
 * dropped and a collection frees their content. Content pulled only by digest expires a ttl after
 * it was fetched. Needs online GC, so one worker, or Redis to coordinate several.
 */
function startCacheExpiry(
  config: Config,
  registry: Registry,
  maintenance: Maintenance,
  logger: Logger,
  locks?: SharedLocks,
): () => void {
  const ttl = config.proxy!.ttl;
  if (ttl === "0") return () => {};
  if (config.http.workers !== 1 && config.redis === undefined) {
    logger.warn("proxy.ttl expiry needs http.workers: 1 (or redis); cached content is kept");
    return () => {};
  }
  const ttlMs = parseDuration(ttl);
  const collect = async (expired: number) => {
    const report = await maintenance.collectGarbage({
      deleteUntagged: true,
      dryRun: false,
      // Content fetched within the ttl (by digest, or for a tag still in use) stays.
      gracePeriodMs: ttlMs,
    });
    logger.info({ expired, freed: report.bytesFreed }, "expired cached images (proxy.ttl)");
  };
  // What an expired tag referenced may itself be younger than the ttl: a second pass one ttl
  // later frees it.
  let secondPassAt: number | undefined;
  const run = async () => {
    // Several replicas or workers: one expiry pass at a time; whoever finds it taken skips a turn.
    const lease =
      locks === undefined ? undefined : await locks.tryAcquire("proxy-expiry", 60_000).catch(() => undefined);
    if (locks !== undefined && lease === undefined) return;
    try {
      const expired = await expireCachedTags(registry, ttlMs);
      if (expired.length > 0) {
        await collect(expired.length);
        secondPassAt = Date.now() + ttlMs;
      } else if (secondPassAt !== undefined && Date.now() >= secondPassAt) {
        secondPassAt = undefined;
        await collect(0);
      }
    } catch (error) {
      logger.error({ err: error }, "cache expiry failed");
    } finally {
      await lease?.release();
    }
  };
  const timer = setInterval(run, Math.max(1000, Math.min(ttlMs / 4, 3_600_000))).unref();
  return () => clearInterval(timer);
}

function healthCheck(config: Config, driver: StorageDriver): HealthCheck {
  const storage = config.health?.storagedriver;
  return new HealthCheck(driver, {
    enabled: storage?.enabled ?? true,
    intervalMs: parseDuration(storage?.interval ?? "10s"),
    threshold: storage?.threshold ?? 3,
  });
}

function createServer(config: Config, handler: http.RequestListener): http.Server | https.Server {
  const tls = config.http.tls;
  if (tls === undefined) return http.createServer({ keepAlive: true }, handler);
  return https.createServer(
    {
      ...secureContextOptions(tls),
      requestCert: tls.clientcas !== undefined,
      rejectUnauthorized: tls.clientcas !== undefined,
      keepAlive: true,
    },
    handler,
  );
}

/** The debug listener (:5001): Prometheus metrics (request metrics from `requestMetrics`, storage gauges) and health. */
async function startDebugServer(
  config: Config,
  driver: StorageDriver,
  logger: Logger,
  requestMetrics: () => Promise<string>,
  shared?: SharedState,
): Promise<http.Server> {
  const primaryRegistry = new PromRegistry();
  // Walked in the background, then kept current by the writes of this process and the workers'
  // (filesystem storage; on S3, and for other replicas' writes, until the next walk): a scrape
  // never walks the store.
  const stats = new StorageStats(
    driver,
    driver instanceof FilesystemDriver ? driver.root : undefined,
    primaryRegistry,
    {
      error: (error) => logger.warn({ err: error }, "storage walk failed"),
      walked: (figures, seconds) => logger.info({ ...figures, seconds }, "storage walked"),
    },
    shared,
  );
  if (driver instanceof ObservedFilesystemDriver) driver.observe((change) => stats.apply(change));
  stats.receiveFromWorkers();
  stats.start();
  registerMaintenanceMetrics(new TaskStatusStore(driver), primaryRegistry);
  registerCertificateMetrics(config.http.tls, primaryRegistry);
  const health = healthCheck(config, driver);
  const router = new Router();
  if (config.http.debug.prometheus.enabled) {
    router.get(config.http.debug.prometheus.path, async (ctx) => {
      await stats.publish().catch((error: unknown) => logger.warn({ err: error }, "statfs failed"));
      const requests = await requestMetrics();
      ctx.type = primaryRegistry.contentType;
      ctx.body = `${requests.trimEnd()}\n${await primaryRegistry.metrics()}`;
    });
  }
  router.get("/debug/health", async (ctx) => {
    await health.respond(ctx);
    if (shared === undefined || ctx.status !== 200) return;
    // Redis down still serves pulls, so it fails the check only when asked (`?redis=required`,
    // a readiness probe at start); otherwise the body names the problem.
    const problem = await shared.problem();
    if (problem === undefined) return;
    ctx.body = { redis: problem };
    if (ctx.query.redis === "required") ctx.status = 503;
  });
  const app = new Koa();
  app.on("error", (error: unknown) => logger.error({ err: error }, "debug listener request failed"));
  app.use(router.routes()).use(router.allowedMethods());
  const server = http.createServer(app.callback());
  server.on("close", () => stats.stop());
  guardListener(server, { maxConnections: DEBUG_MAX_CONNECTIONS, idleTimeoutMs: IDLE_TIMEOUT_MS }, logger);
  const { host, port } = parseListenAddress(config.http.debug.addr);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  logger.info({ port: (server.address() as AddressInfo).port }, "debug listener up");
  return server;
}
