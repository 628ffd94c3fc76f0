import type { LoginLimiter, LoginLimiting, LoginLimits } from "../auth/login-limiter.js";
import { KEY_PREFIX, type SharedState } from "./shared-state.js";

const CLIENT = `${KEY_PREFIX}login:client:`;
const USER = `${KEY_PREFIX}login:user:`;

/**
 * KEYS client, user; ARGV client limit, user limit, window (ms). Milliseconds to wait when either
 * is blocked (nothing counted), else 0 with the attempt counted as failed; a counter's window
 * starts at its first failure, as in LoginLimiter.
 */
const RESERVE = `
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
local u = tonumber(redis.call('GET', KEYS[2]) or '0')
local wait = 0
if c >= tonumber(ARGV[1]) then wait = math.max(wait, redis.call('PTTL', KEYS[1])) end
if u >= tonumber(ARGV[2]) then wait = math.max(wait, redis.call('PTTL', KEYS[2])) end
if c >= tonumber(ARGV[1]) or u >= tonumber(ARGV[2]) then return math.max(wait, 1) end
for i = 1, 2 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
return 0`;

/** KEYS…: takes one back from each counter that has one. */
const UNBUMP = `
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 0`;

/**
 * Login limits shared by every replica: the counters of LoginLimiter in Redis, so a guesser
 * spreading attempts over replicas meets the same limit. While Redis is unreachable the
 * process's own counters apply (the limit per replica), rather than refusing every login.
 */
export class SharedLoginLimiter implements LoginLimiting {
  constructor(
    private readonly shared: SharedState,
    private readonly limits: LoginLimits,
    private readonly local: LoginLimiter,
  ) {}

  async reserve(client: string, user: string): Promise<number> {
    if (!this.shared.ready) return this.local.reserve(client, user);
    try {
      const waitMs = (await this.shared.eval(
        RESERVE,
        [CLIENT + client, USER + user],
        [this.limits.clientFailures, this.limits.userFailures, this.limits.windowMs],
      )) as number;
      return waitMs > 0 ? Math.ceil(waitMs / 1000) : 0;
    } catch {
      return this.local.reserve(client, user);
    }
  }

  async release(client: string, user: string): Promise<void> {
    this.local.release(client, user);
    await this.shared.eval(UNBUMP, [CLIENT + client, USER + user], []).catch(() => {});
  }

  async succeeded(client: string, user: string): Promise<void> {
    this.local.succeeded(client, user);
    await this.shared.eval(UNBUMP, [CLIENT + client], []).catch(() => {});
    await this.shared.call((redis) => redis.del(USER + user)).catch(() => {});
  }
}
