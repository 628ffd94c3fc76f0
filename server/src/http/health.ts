import type { Context } from "koa";
import type { StorageDriver } from "../storage/driver.js";
import { ROOT } from "../storage/layout.js";
import { isNotFound } from "../storage/driver.js";

/**
 * `/debug/health`: 200 `{}` while the storage driver answers, 503 with the failing check otherwise
 * (the reference registry's format). The result is cached briefly so probes cost nothing.
 */
export class HealthCheck {
  private last: { at: number; error: string | undefined } | undefined;

  constructor(
    private readonly driver: StorageDriver,
    private readonly cacheMs = 1000,
  ) {}

  async check(): Promise<string | undefined> {
    const now = Date.now();
    if (this.last !== undefined && now - this.last.at < this.cacheMs) return this.last.error;
    let error: string | undefined;
    try {
      await this.driver.stat(ROOT);
    } catch (e) {
      // An empty root (nothing pushed yet) is healthy; anything else is not.
      if (!isNotFound(e)) error = (e as Error).message;
    }
    this.last = { at: now, error };
    return error;
  }

  async respond(ctx: Context): Promise<void> {
    const error = await this.check();
    ctx.type = "application/json";
    if (error === undefined) {
      ctx.status = 200;
      ctx.body = "{}";
    } else {
      ctx.status = 503;
      ctx.body = { [`storagedriver_${this.driver.name}`]: error };
    }
  }
}
