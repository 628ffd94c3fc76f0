import { createHash } from "node:crypto";
import { readFileSync, statSync, unwatchFile, watchFile } from "node:fs";
import bcrypt from "bcryptjs";

/** A parsed htpasswd file: user → bcrypt hash. */
export type Credentials = ReadonlyMap<string, string>;

const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

/** A line of an htpasswd file that cannot be used; the message names the line and the user. */
export class HtpasswdError extends Error {
  override name = "HtpasswdError";
}

/**
 * Parses Apache htpasswd content. Only bcrypt entries (`htpasswd -B`: `$2y$`, `$2a$`, `$2b$`) are
 * accepted: MD5, SHA1 and crypt hashes are too weak to keep, so they are refused with the line.
 */
export function parseHtpasswd(content: string, source = "htpasswd"): Credentials {
  const users = new Map<string, string>();
  content.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new HtpasswdError(`${source}: line ${index + 1}: expected user:hash`);
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (!BCRYPT.test(hash)) {
      throw new HtpasswdError(
        `${source}: line ${index + 1}: user ${JSON.stringify(user)} does not have a bcrypt hash; only bcrypt is accepted (create entries with htpasswd -B)`,
      );
    }
    users.set(user, hash);
  });
  return users;
}

/**
 * bcryptjs hashes on the event loop (in slices between other callbacks): every hash running at
 * once adds its slice to each turn of the loop, so 100 parallel logins made every other request
 * wait for seconds. At most this many run at once; the rest wait in a bounded queue.
 */
const MAX_CONCURRENT_HASHES = 2;
/** Password checks that may wait for a turn; past this, a login is refused (429) at once. */
const MAX_WAITING_HASHES = 16;
/** How long a password check waits for a turn before it is refused (429). */
const MAX_HASH_WAIT_MS = 5_000;

/** No password check could run now: too many are running or waiting. The login may be retried. */
export class PasswordChecksBusy extends Error {
  override name = "PasswordChecksBusy";
}

/** A counting semaphore with a bounded queue and a bounded wait. */
class HashGate {
  private running = 0;
  private readonly waiting: { start: () => void; timer: NodeJS.Timeout }[] = [];

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= MAX_CONCURRENT_HASHES) {
      if (this.waiting.length >= MAX_WAITING_HASHES) throw new PasswordChecksBusy("password checks are busy");
      await new Promise<void>((resolve, reject) => {
        const entry = {
          start: resolve,
          timer: setTimeout(() => {
            this.waiting.splice(this.waiting.indexOf(entry), 1);
            reject(new PasswordChecksBusy("password checks are busy"));
          }, MAX_HASH_WAIT_MS),
        };
        this.waiting.push(entry);
      });
    } else {
      this.running++;
    }
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next === undefined) this.running--;
      else {
        // The slot passes to the next waiter as is.
        clearTimeout(next.timer);
        next.start();
      }
    }
  }
}

/** How long a successful verification is remembered, so a pull does not run bcrypt per request. */
const VERIFIED_TTL_MS = 60_000;
/** How often the file is checked for changes (a Kubernetes Secret update swaps it under us). */
const POLL_MS = 2_000;

/**
 * The users of an htpasswd file, reloaded when the file changes, with password checks that cost
 * the same for an unknown user as for a wrong password.
 */
export class HtpasswdUsers {
  private users: Credentials;
  private readonly verified = new Map<string, number>();
  private readonly pending = new Map<string, Promise<boolean>>();
  private readonly gate = new HashGate();
  /** Compared against when the user is unknown, so timing does not tell which users exist. */
  private decoy = "";
  private version: string;

  constructor(
    readonly path: string,
    private readonly onReload: (event: { users: number } | { error: string }) => void = () => {},
  ) {
    this.users = parseHtpasswd(readFileSync(path, "utf8"), path);
    this.version = fileVersion(path);
    this.refreshDecoy();
  }

  /** A decoy hash of the cost most users have, so checking it takes as long as a real one. */
  private refreshDecoy(): void {
    const costs = new Map<number, number>();
    for (const hash of this.users.values()) {
      const cost = Number(hash.slice(4, 6));
      costs.set(cost, (costs.get(cost) ?? 0) + 1);
    }
    const cost = [...costs].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 10;
    if (this.decoy === "" || Number(this.decoy.slice(4, 6)) !== cost) {
      this.decoy = bcrypt.hashSync("decoy-password-that-never-matches", cost);
    }
  }

  get size(): number {
    return this.users.size;
  }

  /** Changes whenever the users are reloaded: anything remembered about them is then stale. */
  get generation(): number {
    return this.reloads;
  }

  private reloads = 0;

  /** Watches the file; a change is loaded within about two seconds. A broken file keeps the old users. */
  watch(): () => void {
    const check = () => {
      let version: string;
      try {
        version = fileVersion(this.path);
      } catch (error) {
        this.onReload({ error: `${this.path}: ${(error as Error).message}` });
        return;
      }
      if (version === this.version) return;
      this.version = version;
      this.reload();
    };
    watchFile(this.path, { interval: POLL_MS, persistent: false }, check);
    return () => unwatchFile(this.path, check);
  }

  /** Reads the file again now. */
  reload(): void {
    try {
      this.users = parseHtpasswd(readFileSync(this.path, "utf8"), this.path);
      this.verified.clear();
      this.reloads++;
      this.refreshDecoy();
      this.onReload({ users: this.users.size });
    } catch (error) {
      this.onReload({ error: (error as Error).message });
    }
  }

  /** Whether `password` is `user`'s. */
  async verify(user: string, password: string): Promise<boolean> {
    const hash = this.users.get(user);
    const key = createHash("sha256")
      .update(`${user}\0${password}\0${hash ?? ""}`)
      .digest("base64");
    const until = this.verified.get(key);
    if (until !== undefined && until > Date.now()) return true;
    // Concurrent requests with the same credentials (a pull's parallel layer fetches) share one bcrypt run.
    let pending = this.pending.get(key);
    if (pending === undefined) {
      pending = this.gate
        .run(() => bcrypt.compare(password, hash ?? this.decoy))
        .then(
          (ok) => {
            this.pending.delete(key);
            if (ok && hash !== undefined) {
              if (this.verified.size > 10_000) this.verified.clear();
              this.verified.set(key, Date.now() + VERIFIED_TTL_MS);
              return true;
            }
            return false;
          },
          (error: unknown) => {
            this.pending.delete(key);
            throw error;
          },
        );
      this.pending.set(key, pending);
    }
    return pending;
  }
}

function fileVersion(path: string): string {
  const s = statSync(path);
  return `${s.ino}:${s.mtimeMs}:${s.size}`;
}
