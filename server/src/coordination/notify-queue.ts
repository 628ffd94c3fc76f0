import type { SharedEventQueue } from "../notifications/notifier.js";
import type { SharedLocks } from "./locks.js";
import { KEY_PREFIX, type SharedState } from "./shared-state.js";

const QUEUE = `${KEY_PREFIX}notify:`;
/** A replica killed while delivering frees the endpoint's turn this long after. */
const TURN_TTL_MS = 15_000;

/** Appends and keeps the newest `max`: the oldest are dropped past it, as in memory. */
const PUSH = `
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
return 1`;

/** The endpoints' event queues as Redis lists, delivered by one replica at a time per endpoint. */
export class RedisEventQueue implements SharedEventQueue {
  constructor(
    private readonly shared: SharedState,
    private readonly locks: SharedLocks,
  ) {}

  async push(endpoint: string, event: string, max: number): Promise<void> {
    await this.shared.eval(PUSH, [QUEUE + endpoint], [event, max]);
  }

  turn(endpoint: string) {
    return this.locks.tryAcquire(`notify:${endpoint}`, TURN_TTL_MS);
  }

  peek(endpoint: string, n: number): Promise<string[]> {
    return this.shared.call((redis) => redis.lrange(QUEUE + endpoint, 0, n - 1));
  }

  async drop(endpoint: string, n: number): Promise<void> {
    await this.shared.call((redis) => redis.ltrim(QUEUE + endpoint, n, -1));
  }
}
