import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { dirname } from "node:path";

/** What happened, in the audit trail's words. */
export type AuditAction =
  | "push" // a manifest stored (by tag or digest)
  | "tag" // a tag set to a manifest
  | "upload" // a blob stored or mounted
  | "pull" // a manifest read (one per image pulled)
  | "delete" // a manifest, tag or blob deleted
  | "login-failure" // wrong credentials
  | "denied" // an authenticated caller without the right
  | "maintenance"; // an admin ran garbage collection or a sync

export interface AuditEvent {
  readonly time: string;
  readonly action: AuditAction;
  readonly user: string | null;
  readonly client: string;
  readonly method: string;
  readonly repository?: string;
  readonly reference?: string;
  readonly digest?: string;
  readonly status: number;
}

/**
 * The append-only audit trail: one JSON object per line, to a file (opened for append only) and/or
 * stdout. Never holds a password or token: events carry the user name and nothing else of the request.
 */
export class AuditLog {
  private readonly file: WriteStream | undefined;

  constructor(options: { file?: string; stdout?: boolean }) {
    if (options.file !== undefined) {
      mkdirSync(dirname(options.file), { recursive: true });
      this.file = createWriteStream(options.file, { flags: "a", mode: 0o640 });
    }
    this.stdout = options.stdout ?? false;
  }

  private readonly stdout: boolean;

  record(event: AuditEvent): void {
    const line = `${JSON.stringify({ audit: true, ...event })}\n`;
    this.file?.write(line);
    if (this.stdout) process.stdout.write(line);
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.file ? this.file.end(resolve) : resolve()));
  }
}
