import { readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import bcrypt from "bcryptjs";
import { parseHtpasswd } from "./htpasswd.js";

/** A user-management request that cannot be carried out; the message is the one-line reason. */
export class UserAdminError extends Error {
  override name = "UserAdminError";
}

const USER = /^[^:\s]+$/;

/**
 * Edits an htpasswd file the way Apache's `htpasswd -B` does (bcrypt, `$2y$`), so either tool can
 * read what the other wrote. Every change replaces the file atomically, keeping its mode.
 */
export class HtpasswdFile {
  constructor(readonly path: string) {}

  list(): string[] {
    return [...this.read().keys()];
  }

  add(user: string, password: string, cost = 10): void {
    const users = this.read(true);
    if (users.has(user))
      throw new UserAdminError(`user ${JSON.stringify(user)} already exists in ${this.path}; use update`);
    users.set(user, hash(checkUser(user), checkPassword(password), cost));
    this.write(users);
  }

  update(user: string, password: string, cost = 10): void {
    const users = this.read();
    if (!users.has(user))
      throw new UserAdminError(`user ${JSON.stringify(user)} is not in ${this.path}; use add`);
    users.set(user, hash(user, checkPassword(password), cost));
    this.write(users);
  }

  remove(user: string): void {
    const users = this.read();
    if (!users.delete(user)) throw new UserAdminError(`user ${JSON.stringify(user)} is not in ${this.path}`);
    this.write(users);
  }

  private read(missingIsEmpty = false): Map<string, string> {
    let content: string;
    try {
      content = readFileSync(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT" && missingIsEmpty) return new Map();
      throw new UserAdminError(`cannot read ${this.path}: ${(error as Error).message}`);
    }
    return new Map(parseHtpasswd(content, this.path));
  }

  private write(users: Map<string, string>): void {
    let mode = 0o600;
    try {
      mode = statSync(this.path).mode & 0o777;
    } catch {
      /* a new file */
    }
    const tmp = join(dirname(this.path), `.${randomBytes(6).toString("hex")}.tmp`);
    writeFileSync(tmp, [...users].map(([u, h]) => `${u}:${h}\n`).join(""), { mode });
    renameSync(tmp, this.path);
  }
}

function checkUser(user: string): string {
  if (!USER.test(user))
    throw new UserAdminError(`invalid user name ${JSON.stringify(user)}: no colon or white space`);
  return user;
}

function checkPassword(password: string): string {
  if (password.length === 0) throw new UserAdminError("the password is empty");
  if (Buffer.byteLength(password) > 72)
    throw new UserAdminError("the password is longer than bcrypt's 72 bytes");
  return password;
}

function hash(_user: string, password: string, cost: number): string {
  if (!Number.isInteger(cost) || cost < 4 || cost > 17)
    throw new UserAdminError(`bcrypt cost must be 4 to 17, not ${cost}`);
  // Apache writes $2y$; it is the same algorithm as bcryptjs's $2b$.
  return bcrypt.hashSync(password, cost).replace(/^\$2b\$/, "$2y$");
}
