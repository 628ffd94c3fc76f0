/**
 * One keep-alive HTTP/1.1 connection with a request/response API, small enough to cost the bench
 * little CPU (the client shares the machine with both servers): bodies in, status, headers and
 * body out, HEAD and chunked responses handled, a bounded wait per request. Used by the mixed
 * scenario, where fetch/undici would spend more CPU than the servers it measures.
 */
import { connect, type Socket } from "node:net";

export interface Reply {
  status: number;
  /** Lower-cased names. */
  headers: Map<string, string>;
  body: Buffer;
}

interface Head {
  status: number;
  headers: Map<string, string>;
  bodyStart: number;
  /** Body length, "chunked", or "close" (delimited by the connection closing). */
  length: number | "chunked" | "close";
}

const EMPTY = Buffer.alloc(0);

export class Http1 {
  private socket: Socket | undefined;
  private buffer: Buffer = EMPTY;
  private head: Head | undefined;
  private pending:
    | { resolve: (r: Reply) => void; reject: (e: Error) => void; isHead: boolean; timer: NodeJS.Timeout }
    | undefined;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly timeoutMs = 30_000,
  ) {}

  request(
    method: string,
    path: string,
    headers: Record<string, string> = {},
    body: Buffer | undefined = undefined,
  ): Promise<Reply> {
    if (this.pending) return Promise.reject(new Error("request while another is pending"));
    const socket = this.connection();
    let text = `${method} ${path} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\n`;
    for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
    if (body !== undefined || method === "POST" || method === "PUT" || method === "PATCH")
      text += `Content-Length: ${body?.length ?? 0}\r\n`;
    text += "\r\n";
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new Error(`${method} ${path}: no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending = { resolve, reject, isHead: method === "HEAD", timer };
      if (body !== undefined && body.length > 0 && body.length <= 256 * 1024)
        socket.write(Buffer.concat([Buffer.from(text, "latin1"), body]));
      else {
        socket.write(text, "latin1");
        if (body !== undefined && body.length > 0) socket.write(body);
      }
    });
  }

  /** Drops the connection (after an error, so the next request starts clean). */
  reset(): void {
    this.socket?.destroy();
    this.socket = undefined;
    this.buffer = EMPTY;
    this.head = undefined;
  }

  close(): void {
    this.reset();
  }

  private connection(): Socket {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    this.socket = socket;
    this.buffer = EMPTY;
    this.head = undefined;
    socket.on("data", (chunk: Buffer) => {
      if (socket !== this.socket) return;
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.parse(false);
    });
    socket.on("error", (error) => {
      if (socket === this.socket) this.fail(error);
    });
    socket.on("close", () => {
      if (socket !== this.socket) return;
      if (this.head?.length === "close") this.parse(true);
      this.fail(new Error("connection closed by the server"));
    });
    return socket;
  }

  private fail(error: Error): void {
    const pending = this.pending;
    this.pending = undefined;
    this.reset();
    if (pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
  }

  private parse(closed: boolean): void {
    if (!this.pending) return;
    if (this.head === undefined) {
      const end = this.buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const lines = this.buffer.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(lines[0]!.slice(9, 12));
      const headers = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      const noBody = this.pending.isHead || status === 204 || status === 304 || status < 200;
      const length = noBody
        ? 0
        : headers.has("content-length")
          ? Number(headers.get("content-length"))
          : headers.get("transfer-encoding")?.toLowerCase().includes("chunked")
            ? "chunked"
            : "close";
      this.head = { status, headers, bodyStart: end + 4, length };
    }
    const head = this.head;
    let body: Buffer | undefined;
    let consumed = 0;
    if (typeof head.length === "number") {
      consumed = head.bodyStart + head.length;
      if (this.buffer.length < consumed) return;
      body = this.buffer.subarray(head.bodyStart, consumed);
    } else if (head.length === "chunked") {
      const decoded = decodeChunked(this.buffer, head.bodyStart);
      if (decoded === undefined) return;
      [body, consumed] = decoded;
    } else {
      if (!closed) return;
      body = this.buffer.subarray(head.bodyStart);
      consumed = this.buffer.length;
    }
    const pending = this.pending;
    this.pending = undefined;
    clearTimeout(pending.timer);
    this.buffer = this.buffer.length > consumed ? this.buffer.subarray(consumed) : EMPTY;
    this.head = undefined;
    if (head.headers.get("connection")?.toLowerCase() === "close") this.reset();
    pending.resolve({ status: head.status, headers: head.headers, body });
  }
}

/** The body of a complete chunked message starting at `offset` and the bytes it spans, or undefined. */
function decodeChunked(buffer: Buffer, offset: number): [Buffer, number] | undefined {
  const parts: Buffer[] = [];
  for (;;) {
    const lineEnd = buffer.indexOf("\r\n", offset);
    if (lineEnd < 0) return undefined;
    const size = parseInt(buffer.subarray(offset, lineEnd).toString("latin1"), 16);
    if (size === 0) {
      // Trailers (none expected) end with an empty line.
      const end = buffer.indexOf("\r\n\r\n", lineEnd);
      if (end < 0) return undefined;
      return [Buffer.concat(parts), end + 4];
    }
    const next = lineEnd + 2 + size + 2;
    if (buffer.length < next) return undefined;
    parts.push(buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = next;
  }
}
