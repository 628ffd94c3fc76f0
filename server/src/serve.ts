import cluster, { type Worker } from "node:cluster";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { availableParallelism } from "node:os";
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
import { StorageStats } from "./metrics/storage-stats.js";
import { Registry } from "./registry/registry.js";
import { FilesystemDriver } from "./storage/filesystem.js";
import { relayInvalidations, workerBus } from "./cluster-bus.js";

const CONFIG_ENV = "NEAM_REGISTRY_WORKER_CONFIG";

/** Features whose config keys are accepted but which this build cannot honour yet: refuse, never ignore. */
function refuseUnsupported(config: Config): void {
  if (config.auth?.htpasswd !== undefined) {
    throw new Error(
      "config: auth.htpasswd is not supported by this build yet; refusing to serve without the authentication it asks for",
    );
  }
  if (config.proxy !== undefined) {
    throw new Error("config: proxy (pull-through cache) is not supported by this build yet");
  }
}

/**
 * `serve`: the primary process prepares storage, serves metrics and health on the debug address,
 * and runs one worker per CPU on the public address (node:cluster shares the socket).
 */
export async function serve(config: Config): Promise<void> {
  if (cluster.isWorker) return runWorker(JSON.parse(process.env[CONFIG_ENV]!) as Config);
  refuseUnsupported(config);
  const logger = createLogger(config.log);
  const driver = new FilesystemDriver(config.storage.filesystem.rootdirectory);
  await driver.init();

  relayInvalidations();
  const workers = config.http.workers === 0 ? availableParallelism() : config.http.workers;
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

  const debug = await startDebugServer(config, driver, logger);
  await listening;
  logger.info(
    {
      addr: config.http.addr,
      debug: config.http.debug.addr,
      workers,
      root: driver.root,
      tls: config.http.tls !== undefined,
    },
    "registry listening",
  );

  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    debug.close();
    for (const worker of Object.values(cluster.workers ?? {})) worker?.disconnect();
    setTimeout(() => process.exit(0), 10_000).unref();
    cluster.on("exit", () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    });
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

async function runWorker(config: Config): Promise<void> {
  const logger = createLogger(config.log).child({ worker: cluster.worker?.id });
  const driver = new FilesystemDriver(config.storage.filesystem.rootdirectory);
  const registry = new Registry(driver, {
    deleteEnabled: config.storage.delete.enabled,
    maxManifestBytes: config.http.maxmanifestbytes,
    bus: workerBus(),
  });
  const metrics = new HttpMetrics();
  const app = createApp({
    registry,
    logger,
    metrics,
    health: new HealthCheck(driver),
    accessLog: !config.log.accesslog.disabled,
    maxManifestBytes: config.http.maxmanifestbytes,
    headers: config.http.headers,
  });
  const server = createServer(config, app.callback());
  // Long uploads must not be cut by Node's request timeout; idle sockets still are.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 75_000;
  server.setTimeout(10 * 60_000);
  const { host, port } = parseListenAddress(config.http.addr);
  server.listen(port, host);
  process.on("disconnect", () => server.close());
  // Constructing an AggregatorRegistry installs the listener that answers the primary's scrape.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([metrics.registry]);
}

function createServer(config: Config, handler: http.RequestListener): http.Server | https.Server {
  const tls = config.http.tls;
  if (tls === undefined) return http.createServer({ keepAlive: true }, handler);
  return https.createServer(
    {
      cert: readFileSync(tls.certificate),
      key: readFileSync(tls.key),
      ca: tls.clientcas?.map((path) => readFileSync(path)),
      requestCert: tls.clientcas !== undefined,
      rejectUnauthorized: tls.clientcas !== undefined,
      minVersion: tls.minimumtls === "tls1.3" ? "TLSv1.3" : "TLSv1.2",
      ...(tls.ciphersuites !== undefined ? { ciphers: tls.ciphersuites.join(":") } : {}),
    },
    handler,
  );
}

/** The debug listener (:5001): Prometheus metrics aggregated over workers, and health. */
async function startDebugServer(
  config: Config,
  driver: FilesystemDriver,
  logger: Logger,
): Promise<http.Server> {
  const aggregator = new AggregatorRegistry();
  const primaryRegistry = new PromRegistry();
  const stats = new StorageStats(driver, driver.root, primaryRegistry);
  const health = new HealthCheck(driver);
  const router = new Router();
  if (config.http.debug.prometheus.enabled) {
    router.get(config.http.debug.prometheus.path, async (ctx) => {
      await stats.refresh().catch((error: unknown) => logger.warn({ err: error }, "storage scan failed"));
      const workers = await aggregator.clusterMetrics();
      ctx.type = primaryRegistry.contentType;
      ctx.body = `${workers.trimEnd()}\n${await primaryRegistry.metrics()}`;
    });
  }
  router.get("/debug/health", (ctx) => health.respond(ctx));
  const app = new Koa();
  app.on("error", (error: unknown) => logger.error({ err: error }, "debug listener request failed"));
  app.use(router.routes()).use(router.allowedMethods());
  const server = http.createServer(app.callback());
  const { host, port } = parseListenAddress(config.http.debug.addr);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  logger.debug({ port: (server.address() as AddressInfo).port }, "debug listener up");
  return server;
}
