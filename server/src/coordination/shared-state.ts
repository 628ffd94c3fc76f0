import { readFileSync } from "node:fs";
import { createHash, randomUUID } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import type { RedisSettings } from "../config/schema.js";
import { parseDuration } from "../config/duration.js";
import type { Logger } from "../log.js";
import { RegistryError, unavailable } from "../registry/errors.js";

/** Every key this registry writes starts with this, so a Redis can be shared with other users. */
export const KEY_PREFIX = "neam-registry:";

/**
 * The connection to Redis that replicas (and the workers of one replica) share state through:
 * see cache-store.ts, guard.ts, locks.ts, login-store.ts and notify-queue.ts for what they keep
 * there. Commands never queue while Redis is unreachable: they fail at once, so a pull falls back
 * to storage and a write that needs coordination answers 503 UNAVAILABLE instead of hanging.
 */
export class SharedState {
  readonly redis: Redis;
  /** Told once per outage, and once when Redis is back. */
  private down = false;
  private readonly scripts = new Map<string, string>();

  constructor(
    settings: RedisSettings,
    private readonly logger: Logger,
  ) {
    this.redis = new Redis(redisOptions(settings));
    // ioredis reconnects by itself; without a listener an error event would be thrown.
    this.redis.on("error", (error: Error) => {
      if (!this.down)
        logger.error({ err: error.message }, "redis unreachable; writes answer 503 until it is back");
      this.down = true;
    });
    this.redis.on("ready", () => {
      if (this.down) logger.info("redis reachable again");
      this.down = false;
    });
  }

  /** Whether commands can be sent now (connected and authenticated). */
  get ready(): boolean {
    return this.redis.status === "ready";
  }

  /** Waits for the first connection (at most `timeoutMs`); `serve` starts anyway, degraded. */
  async connected(timeoutMs: number): Promise<boolean> {
    if (this.ready) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.redis.off("ready", onReady);
        resolve(false);
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.redis.once("ready", onReady);
    });
  }

  /** Throws UNAVAILABLE at once when Redis is not connected: checked before a write touches storage. */
  requireReady(): void {
    if (!this.ready) throw redisUnavailable();
  }

  /**
   * Runs `command`, turning a Redis failure (no connection, timeout, a server error) into the
   * UNAVAILABLE registry error the HTTP layer answers with 503.
   */
  async call<T>(command: (redis: Redis) => Promise<T>): Promise<T> {
    try {
      return await command(this.redis);
    } catch (error) {
      if (error instanceof RegistryError) throw error;
      throw redisUnavailable((error as Error).message);
    }
  }

  /** Runs a Lua script (by its SHA once Redis knows it) with `keys` and `args`. */
  eval(script: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    let sha = this.scripts.get(script);
    if (sha === undefined) {
      sha = createHash("sha1").update(script).digest("hex");
      this.scripts.set(script, sha);
    }
    return this.call(async (redis) => {
      try {
        return await redis.evalsha(sha, keys.length, ...keys, ...args);
      } catch (error) {
        if (!(error as Error).message.startsWith("NOSCRIPT")) throw error;
        return redis.eval(script, keys.length, ...keys, ...args);
      }
    });
  }

  /** For /debug/health: undefined when Redis answers PING, else why not. */
  async problem(): Promise<string | undefined> {
    if (!this.ready) return `not connected (${this.redis.status})`;
    try {
      await this.redis.ping();
      return undefined;
    } catch (error) {
      return (error as Error).message;
    }
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

export function redisUnavailable(detail?: string): RegistryError {
  return unavailable(
    `shared state (redis) is unavailable${detail !== undefined ? `: ${detail}` : ""}; pulls work, writes are refused until it is back`,
  );
}

/** A random token naming one holder of a lock (unique across replicas and restarts). */
export function holderToken(): string {
  return randomUUID();
}

function redisOptions(settings: RedisSettings): RedisOptions {
  const address = settings.addr ?? settings.addrs![0]!;
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  const tls = settings.tls;
  const tlsOn =
    tls !== undefined &&
    (tls.enabled === true ||
      (tls.enabled === undefined && (tls.certificate !== undefined || tls.rootcas !== undefined)));
  const password =
    settings.passwordfile !== undefined
      ? readFileSync(settings.passwordfile, "utf8").replace(/\r?\n$/, "")
      : settings.password;
  return {
    host,
    port: Number(address.slice(colon + 1)),
    db: settings.db,
    ...(settings.username !== undefined ? { username: settings.username } : {}),
    ...(password !== undefined && password !== "" ? { password } : {}),
    connectTimeout: parseDuration(settings.dialtimeout),
    // One bound for the whole round trip: ioredis has no separate write timeout.
    commandTimeout: Math.max(parseDuration(settings.readtimeout), parseDuration(settings.writetimeout)),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Reconnect quickly at first, then every 2 s, forever: Redis coming back must be noticed.
    retryStrategy: (times) => Math.min(times * 100, 2000),
    ...(tlsOn
      ? {
          tls: {
            ...(tls.certificate !== undefined ? { cert: readFileSync(tls.certificate) } : {}),
            ...(tls.key !== undefined ? { key: readFileSync(tls.key) } : {}),
            ...(tls.rootcas !== undefined ? { ca: tls.rootcas.map((f) => readFileSync(f)) } : {}),
            servername: host,
          },
        }
      : {}),
  };
}
