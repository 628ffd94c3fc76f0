import { readFileSync } from "node:fs";
import type http from "node:http";
import type https from "node:https";
import type { Duplex } from "node:stream";
import type { Socket } from "node:net";
import type { Logger } from "../log.js";

/** Descriptors kept for files (blobs being written or read, logs, the audit trail) per connection. */
const FILES_PER_CONNECTION = 1;
/** Descriptors the process needs besides its connections (listeners, logs, the libuv pool's files). */
const RESERVED_DESCRIPTORS = 64;

export interface ConnectionLimits {
  /** `http.maxconnections`: connections kept open at once (lowered to what the descriptor limit allows). */
  readonly maxConnections: number;
  /** `http.bodytimeout`: a request body that brings no byte for this long is cut off. */
  readonly bodyTimeoutMs?: number;
  /** The socket idle timeout outside request bodies (the server's own `setTimeout`). */
  readonly idleTimeoutMs: number;
  /**
   * Told the bytes a request brought when it ends unfinished (a client gone or cut off mid-body):
   * what the handler buffered of it is garbage now, to be given back.
   */
  readonly onAbandoned?: (bytesRead: number) => void;
}

/**
 * Guards one listener against clients that hold resources without using them:
 * - at most `maxConnections` sockets: a new connection closes the idlest one (no request in
 *   flight, quiet the longest), so idle keep-alives cannot take every descriptor and a real
 *   client still gets in; when every connection is busy the new one is answered 503;
 * - a request body that stalls for `bodyTimeoutMs` loses its socket, so whatever the handler
 *   buffered of it is freed;
 * - requests Node's parser refuses (bare CRLFs, garbage, CONNECT) get an HTTP answer (400, 405)
 *   instead of a silently closed socket, as every other bad request does.
 */
export function guardListener(
  server: http.Server | https.Server,
  limits: ConnectionLimits,
  logger: Logger,
): void {
  const tls = "setSecureContext" in server;
  /** Open sockets, the least recently active first (re-inserted on activity). */
  const sockets = new Map<Duplex, { busy: number; requests: number }>();
  /** A TLS socket's raw TCP socket, which is the one counted. */
  const mirror = new WeakMap<Duplex, Duplex>();
  let warned = false;

  const touch = (socket: Duplex) => {
    const state = sockets.get(socket);
    if (state === undefined) return undefined;
    sockets.delete(socket);
    sockets.set(socket, state);
    return state;
  };

  // The raw TCP socket, before TLS: counts against the cap even while its handshake is pending.
  server.on("connection", (socket: Socket) => {
    if (sockets.size >= limits.maxConnections && !evictIdlest()) {
      if (!warned) {
        warned = true;
        logger.warn(
          { max: limits.maxConnections },
          "every connection is busy; refusing new ones (http.maxconnections)",
        );
      }
      // Plain HTTP can still be told why; a TLS client gets its connection closed.
      if (tls) socket.destroy();
      else
        socket.end(
          rawResponse(503, "Service Unavailable", "too many connections; retry later\n", ["Retry-After: 1"]),
        );
      return;
    }
    warned = false;
    sockets.set(socket, { busy: 0, requests: 0 });
    socket.once("close", () => sockets.delete(socket));
    if (!tls) answerBareLines(socket, () => sockets.get(socket)?.requests ?? 0);
  });
  if (tls)
    server.on("secureConnection", (socket: Socket) => {
      // Requests arrive on the TLS socket; its raw socket is the one counted.
      const raw = (socket as Socket & { _parent?: Socket })._parent ?? socket;
      const state = sockets.get(raw);
      if (state === undefined) return;
      socket.on("close", () => sockets.delete(raw));
      answerBareLines(socket, () => state.requests);
      mirror.set(socket, raw);
    });
  const rawOf = (socket: Duplex) => mirror.get(socket) ?? socket;

  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const raw = rawOf(req.socket);
    const state = touch(raw);
    if (state !== undefined) {
      state.busy++;
      state.requests++;
    }
    const readBefore = (req.socket as Socket).bytesRead;
    res.once("close", () => {
      const after = touch(raw);
      if (after !== undefined) after.busy--;
      if (!req.complete || !res.writableFinished)
        limits.onAbandoned?.((req.socket as Socket).bytesRead - readBefore);
    });
    if (limits.bodyTimeoutMs !== undefined && hasBody(req)) {
      req.socket.setTimeout(limits.bodyTimeoutMs);
      const restore = () => {
        if (!req.socket.destroyed) req.socket.setTimeout(limits.idleTimeoutMs);
      };
      req.once("end", restore);
    }
  });

  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    // As Node's own handler: an answer only while no response has begun on this socket.
    const current = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (!socket.writable || current?.headersSent === true) {
      socket.destroy();
      return;
    }
    const [status, text] =
      error.code === "HPE_HEADER_OVERFLOW"
        ? [431, "Request Header Fields Too Large"]
        : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "Request Timeout"]
          : [400, "Bad Request"];
    socket.end(rawResponse(status, text, `${text.toLowerCase()}\n`));
  });

  // CONNECT is for proxies; a registry answers it as any other method it does not serve.
  server.on("connect", (_req: http.IncomingMessage, socket: Duplex) => {
    socket.end(
      rawResponse(405, "Method Not Allowed", "CONNECT is not supported\n", [
        "Allow: GET, HEAD, PUT, POST, PATCH, DELETE",
      ]),
    );
  });

  function evictIdlest(): boolean {
    for (const [socket, state] of sockets) {
      if (state.busy > 0) continue;
      sockets.delete(socket);
      socket.destroy();
      return true;
    }
    return false;
  }
}

/**
 * Node's parser skips empty lines before a request line, so a client that sends only CRLFs and
 * then closes its side would get no answer at all: answer it 400 before Node ends the socket.
 */
function answerBareLines(socket: Duplex, requests: () => number): void {
  socket.prependListener("end", () => {
    if (
      requests() === 0 &&
      (socket as Socket).bytesRead > 0 &&
      (socket as Socket).bytesWritten === 0 &&
      socket.writable
    )
      socket.write(rawResponse(400, "Bad Request", "bad request: no request line\n"));
  });
}

function hasBody(req: http.IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

function rawResponse(status: number, text: string, body: string, headers: string[] = []): string {
  return [
    `HTTP/1.1 ${status} ${text}`,
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
    ...headers,
    "",
    body,
  ].join("\r\n");
}

/**
 * The process's open-file limit (soft, hard). Node raises the soft limit to the hard one itself
 * as it starts (as `ulimit -n` would), so nothing is left to raise here: this reads what it came
 * to (Linux's /proc; Node has no getrlimit), undefined where that cannot be read.
 */
export function fileDescriptorLimit(): { soft: number; hard: number } | undefined {
  try {
    const line = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(
      readFileSync("/proc/self/limits", "utf8"),
    );
    if (line === null) return undefined;
    const value = (s: string) => (s === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(s));
    return { soft: value(line[1]!), hard: value(line[2]!) };
  } catch {
    return undefined;
  }
}

/**
 * `http.maxconnections`, lowered so that every connection can also hold a file open and the
 * process keeps descriptors for itself: past the limit, accept() fails and nothing is served.
 */
export function effectiveMaxConnections(configured: number, descriptors: number | undefined): number {
  if (descriptors === undefined) return configured;
  const fit = Math.floor((descriptors - RESERVED_DESCRIPTORS) / (1 + FILES_PER_CONNECTION));
  return Math.max(1, Math.min(configured, fit));
}
