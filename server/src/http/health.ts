import type { Context } from "koa";
import type { StorageDriver } from "../storage/driver.js";
import { ROOT } from "../storage/layout.js";
import { isNotFound } from "../storage/driver.js";

export interface HealthOptions {
  /** `health.storagedriver.enabled`: when false the storage check always passes. */
  readonly enabled: boolean;
  /** `health.storagedriver.interval`: the storage is probed at most this often. */
  readonly intervalMs: number;
  /** `health.storagedriver.threshold`: consecutive failed probes before the registry reports unhealthy. */
  readonly threshold: number;
}

const DEFAULT_HEALTH: HealthOptions = { enabled: true, intervalMs: 10_000, threshold: 3 };

/**
 * `/debug/health`: 200 `{}` while the storage driver answers, 503 with the failing check otherwise
 * (the reference registry's format and `health.storagedriver` semantics). Probes are spaced by the
 * interval, so liveness checks cost nothing.
 */
export class HealthCheck {
  private checkedAt = -Infinity;
  private failures = 0;
  private lastError: string | undefined;

  constructor(
    private readonly driver: StorageDriver,
    private readonly options: HealthOptions = DEFAULT_HEALTH,
  ) {}

  async check(): Promise<string | undefined> {
    if (!this.options.enabled) return undefined;
    const now = Date.now();
    if (now - this.checkedAt >= this.options.intervalMs) {
      this.checkedAt = now;
      try {
        await this.probe();
        this.failures = 0;
      } catch (e) {
        this.failures++;
        this.lastError = (e as Error).message;
      }
    }
    return this.failures >= this.options.threshold ? this.lastError : undefined;
  }

  /**
   * The storage root must be there and be a directory: `serve` created it, so its absence means
   * the volume is gone (unmounted, replaced), not that nothing was pushed. Below it, an empty
   * registry (no layout yet) is healthy; anything else the layout cannot be read for is not.
   */
  private async probe(): Promise<void> {
    const root = await this.driver.stat("/").catch((e: unknown) => {
      throw isNotFound(e) ? new Error("storage root is missing or not a directory") : e;
    });
    if (!root.isDir) throw new Error("storage root is missing or not a directory");
    await this.driver.stat(ROOT).catch((e: unknown) => {
      if (!isNotFound(e)) throw e;
    });
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
