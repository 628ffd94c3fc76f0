import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly authorization?: string;
}

/**
 * A real HTTP(S) server on 127.0.0.1 (port 0, the port it got reported) that answers with `handle`
 * and records every request: an upstream registry, token service or redirect target that misbehaves
 * in a way a test needs.
 */
export async function startHttpServer(
  handle: (request: IncomingMessage, response: ServerResponse) => void | Promise<void>,
  /** Serve HTTPS with this certificate and key (PEM files). */
  tls?: { cert: string; key: string },
) {
  const requests: RecordedRequest[] = [];
  const listener = (request: IncomingMessage, response: ServerResponse) => {
    requests.push({
      method: request.method ?? "",
      url: request.url ?? "",
      ...(request.headers.authorization !== undefined
        ? { authorization: request.headers.authorization }
        : {}),
    });
    Promise.resolve(handle(request, response)).catch((error: unknown) => {
      response.statusCode = 500;
      response.end(String(error));
    });
  };
  const server = tls
    ? createTlsServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, listener)
    : createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    host: `127.0.0.1:${port}`,
    url: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
