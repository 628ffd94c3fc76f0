/**
 * Brute-force protection: failed logins are counted per client address and per user name over a
 * window; past a limit, further attempts from that client or for that user are refused until the
 * window has passed, before any password is checked. An attempt is counted as a failure when it
 * starts (`reserve`), before the password is hashed, and given back when it succeeds: counting
 * after the hash let a burst of parallel guesses all run bcrypt before the first was counted.
 * Counts are per process here; with Redis configured they are shared by every replica
 * (coordination/login-store.ts), which falls back to these while Redis is unreachable.
 */
export interface LoginLimits {
  /** Failed logins from one client address within the window before it is blocked. */
  readonly clientFailures: number;
  /** Failed logins for one user name within the window before it is blocked. */
  readonly userFailures: number;
  readonly windowMs: number;
}

/** What the Basic credentials check asks of a limiter (this one, or the shared one in Redis). */
export interface LoginLimiting {
  reserve(client: string, user: string): number | Promise<number>;
  release(client: string, user: string): void | Promise<void>;
  succeeded(client: string, user: string): void | Promise<void>;
}

interface Counter {
  count: number;
  windowEnds: number;
}

export class LoginLimiter implements LoginLimiting {
  private readonly clients = new Map<string, Counter>();
  private readonly users = new Map<string, Counter>();

  constructor(readonly limits: LoginLimits) {}

  /** Seconds to wait before trying again, or 0 when the attempt may go ahead. */
  retryAfter(client: string, user: string, now = Date.now()): number {
    const blocked = [
      blockedUntil(this.clients.get(client), this.limits.clientFailures, now),
      blockedUntil(this.users.get(user), this.limits.userFailures, now),
    ];
    const until = Math.max(...blocked);
    return until > now ? Math.ceil((until - now) / 1000) : 0;
  }

  /**
   * Starts an attempt: seconds to wait when the client or user is blocked (nothing is counted),
   * otherwise 0 and the attempt is counted as failed until `succeeded` or `release` says otherwise.
   */
  reserve(client: string, user: string, now = Date.now()): number {
    const wait = this.retryAfter(client, user, now);
    if (wait === 0) this.failed(client, user, now);
    return wait;
  }

  /** Gives back a reserved attempt whose password was never checked. */
  release(client: string, user: string): void {
    this.unbump(this.clients, client);
    this.unbump(this.users, user);
  }

  failed(client: string, user: string, now = Date.now()): void {
    this.bump(this.clients, client, now);
    this.bump(this.users, user, now);
  }

  /** A reserved attempt succeeded: it was no failure, and the user's count starts again. */
  succeeded(client: string, user: string): void {
    this.unbump(this.clients, client);
    this.users.delete(user);
  }

  private unbump(map: Map<string, Counter>, key: string): void {
    const counter = map.get(key);
    if (counter !== undefined && counter.count > 0) counter.count--;
  }

  private bump(map: Map<string, Counter>, key: string, now: number): void {
    const counter = map.get(key);
    if (counter === undefined || counter.windowEnds <= now) {
      if (map.size >= 100_000) this.sweep(map, now);
      map.set(key, { count: 1, windowEnds: now + this.limits.windowMs });
    } else {
      counter.count++;
    }
  }

  private sweep(map: Map<string, Counter>, now: number): void {
    for (const [key, counter] of map) if (counter.windowEnds <= now) map.delete(key);
    if (map.size >= 100_000) map.clear();
  }
}

function blockedUntil(counter: Counter | undefined, limit: number, now: number): number {
  if (counter === undefined || counter.windowEnds <= now || counter.count < limit) return 0;
  return counter.windowEnds;
}
