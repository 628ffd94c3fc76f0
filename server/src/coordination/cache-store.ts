import type { SharedCacheStore } from "../registry/metadata-cache.js";
import { KEY_PREFIX, type SharedState } from "./shared-state.js";

const VALUE = `${KEY_PREFIX}cache:v:`;
const VERSION = `${KEY_PREFIX}cache:n:`;
/**
 * How long a key's version is kept after its last change: far longer than a storage read between
 * a miss and its `set` takes, and short enough that versions of dead tags do not pile up.
 */
const VERSION_TTL_MS = 3_600_000;

/** Stores the value only if the version is what the reader saw before it read storage. */
const SET_IF_VERSION = `
local current = redis.call('GET', KEYS[2]) or ''
if current ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1`;

/** Bumps each key's version and drops its value, in one step. */
const INVALIDATE = `
local n = #KEYS / 2
for i = 1, n do
  redis.call('DEL', KEYS[i])
  redis.call('INCR', KEYS[n + i])
  redis.call('PEXPIRE', KEYS[n + i], ARGV[1])
end
return n`;

/** The metadata cache of every replica, in Redis (see SharedCacheStore). */
export class RedisCacheStore implements SharedCacheStore {
  constructor(private readonly shared: SharedState) {}

  async get(key: string): Promise<{ value: string } | { version: string }> {
    const [value, version] = await this.shared.call((redis) => redis.mget(VALUE + key, VERSION + key));
    return value !== null && value !== undefined ? { value } : { version: version ?? "" };
  }

  async set(key: string, value: string, version: string, ttlMs: number): Promise<void> {
    await this.shared.eval(SET_IF_VERSION, [VALUE + key, VERSION + key], [value, version, ttlMs]);
  }

  async invalidate(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.shared.eval(
      INVALIDATE,
      [...keys.map((k) => VALUE + k), ...keys.map((k) => VERSION + k)],
      [VERSION_TTL_MS],
    );
  }
}
