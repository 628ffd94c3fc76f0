import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer as createHttpServer, request as httpRequest, type Server } from "node:http";
import { createServer as createHttpsServer, request as httpsRequest } from "node:https";

export interface TokenRealm {
  /** The URL to configure as `auth.token.realm`. */
  readonly url: string;
  /** Where `GET /token` is forwarded: the registry's base URL, once it has started. */
  forwardTo(base: string): void;
  close(): Promise<void>;
}

type TlsFiles = { cert: string; key: string; ca: string };

/**
 * The token realm of a registry that is not started yet. The realm is part of the registry's
 * config, but the registry's port is only known once it has bound one; picking a free port first
 * and binding it later races with the other test files. So the realm is bound first (port 0) and
 * named in the config, and forwards `GET /token?…` with the client's Authorization header to the
 * registry's own `/token`, answering with what the registry said. It runs in a child process:
 * tests drive skopeo and ctr synchronously, which would block a realm served by the test process.
 * With `tls`, it serves HTTPS with that certificate and trusts `ca` towards the registry.
 */
export async function tokenRealm(tls?: TlsFiles): Promise<TokenRealm> {
  const child = fork(new URL(import.meta.url).pathname, ["--serve-realm", JSON.stringify(tls ?? null)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (message) => resolve((message as { port: number }).port));
    child.once("exit", (code) => reject(new Error(`the token realm exited (${code})`)));
  });
  return {
    url: `${tls ? "https" : "http"}://127.0.0.1:${port}/token`,
    forwardTo(base) {
      child.send({ target: base });
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** The realm process: serves until killed or until its parent goes away. */
async function serveRealm(tls: TlsFiles | null): Promise<void> {
  let target: string | undefined;
  process.on("message", (message) => {
    target = (message as { target: string }).target;
  });
  process.on("disconnect", () => process.exit(0));
  const handler = (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => {
    if (target === undefined || req.method !== "GET" || !req.url?.startsWith("/token")) {
      res.writeHead(target === undefined ? 503 : 404).end();
      return;
    }
    const url = new URL(req.url, target);
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const forwarded = send(
      url,
      {
        method: "GET",
        headers: req.headers.authorization ? { Authorization: req.headers.authorization } : {},
        ...(tls ? { ca: readFileSync(tls.ca) } : {}),
        agent: false,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, {
          "Content-Type": answer.headers["content-type"] ?? "application/json",
          ...(answer.headers["www-authenticate"]
            ? { "WWW-Authenticate": answer.headers["www-authenticate"] }
            : {}),
        });
        answer.pipe(res);
      },
    );
    forwarded.on("error", () => res.writeHead(502).end());
    forwarded.end();
  };
  const server: Server = tls
    ? createHttpsServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, handler)
    : createHttpServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  process.send!({ port: (server.address() as { port: number }).port });
}

if (process.argv[2] === "--serve-realm") await serveRealm(JSON.parse(process.argv[3]!) as TlsFiles | null);
