/**
 * A small closed-loop HTTP/1.1 load generator: `connections` keep-alive sockets, each sending the
 * next request as soon as the previous response is complete, for `seconds`. Handles HEAD and
 * chunked responses (wrk does not handle HEAD). The same client measures both registries.
 */
import { connect, type Socket } from "node:net";

export interface LoadRequest {
  readonly method: "GET" | "HEAD";
  readonly path: string;
  readonly headers?: Record<string, string>;
}

export interface LoadResult {
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50ms: number;
  readonly p99ms: number;
  /** Status codes seen, with counts. */
  readonly statuses: Record<number, number>;
}

export async function runLoad(
  host: string,
  port: number,
  requests: readonly LoadRequest[],
  connections: number,
  seconds: number,
): Promise<LoadResult> {
  const encoded = requests.map((r) =>
    Buffer.from(
      `${r.method} ${r.path} HTTP/1.1\r\nHost: ${host}:${port}\r\n` +
        Object.entries(r.headers ?? {})
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join("") +
        "\r\n",
    ),
  );
  const latencies: number[] = [];
  const statuses: Record<number, number> = {};
  let errors = 0;
  let next = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;

  await Promise.all(
    Array.from(
      { length: connections },
      () =>
        new Promise<void>((resolve) => {
          const socket: Socket = connect({ host, port, noDelay: true });
          let buffer: Buffer = Buffer.alloc(0);
          let sentAt = 0;
          let isHead = false;
          const send = () => {
            if (performance.now() >= deadline) {
              socket.end();
              return resolve();
            }
            const index = next++ % encoded.length;
            isHead = requests[index]!.method === "HEAD";
            sentAt = performance.now();
            socket.write(encoded[index]!);
          };
          socket.on("connect", send);
          socket.on("error", () => {
            errors++;
            resolve();
          });
          socket.on("close", () => resolve());
          socket.on("data", (chunk: Buffer) => {
            buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
            const consumed = completeResponse(buffer, isHead);
            if (consumed === 0) return;
            const status = Number(buffer.subarray(9, 12).toString());
            statuses[status] = (statuses[status] ?? 0) + 1;
            latencies.push(performance.now() - sentAt);
            buffer = buffer.subarray(consumed);
            send();
          });
        }),
    ),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    requests: latencies.length,
    errors,
    seconds: elapsed,
    rps: latencies.length / elapsed,
    p50ms: at(0.5),
    p99ms: at(0.99),
    statuses,
  };
}

/** Bytes of `buffer` that make one complete response, or 0 when more are needed. */
function completeResponse(buffer: Buffer, isHead: boolean): number {
  const headerEnd = buffer.indexOf("\r\n\r\n");
  if (headerEnd < 0) return 0;
  const head = buffer.subarray(0, headerEnd).toString("latin1").toLowerCase();
  const bodyStart = headerEnd + 4;
  const status = Number(head.slice(9, 12));
  if (isHead || status === 204 || status === 304) return bodyStart;
  const length = /\r\ncontent-length:\s*(\d+)/.exec(head);
  if (length) {
    const end = bodyStart + Number(length[1]);
    return buffer.length >= end ? end : 0;
  }
  if (head.includes("\r\ntransfer-encoding: chunked")) {
    let offset = bodyStart;
    for (;;) {
      const lineEnd = buffer.indexOf("\r\n", offset);
      if (lineEnd < 0) return 0;
      const size = parseInt(buffer.subarray(offset, lineEnd).toString("latin1"), 16);
      const next = lineEnd + 2 + size + 2;
      if (buffer.length < next) return 0;
      if (size === 0) return next;
      offset = next;
    }
  }
  return bodyStart;
}
