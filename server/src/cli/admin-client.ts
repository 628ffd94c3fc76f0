import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";

/** How the CLI reaches a running registry's admin API. */
export interface AdminTarget {
  /** `http(s)://host:port` of the registry. */
  readonly url: string;
  readonly username?: string;
  readonly password?: string;
  /** PEM file of the CA that signed the registry's certificate. */
  readonly caFile?: string;
}

/** Where the CLI finds credentials: never on the command line, where `ps` would show them. */
export const USERNAME_ENV = "NEAM_REGISTRY_USERNAME";
export const PASSWORD_ENV = "NEAM_REGISTRY_PASSWORD";

export class AdminRequestError extends Error {
  override name = "AdminRequestError";
}

/**
 * One admin API call; resolves with the parsed JSON answer. A non-2xx answer becomes one line with
 * the status and the registry's error message. No timeout: a collection or sync takes as long as
 * it takes, and the CronJob's activeDeadlineSeconds bounds it.
 */
export function adminRequest(
  target: AdminTarget,
  method: string,
  path: string,
  body?: { content: string; type: string },
): Promise<unknown> {
  const url = new URL(path, target.url);
  const client = url.protocol === "https:" ? https : http;
  const headers: Record<string, string> = { Accept: "application/json" };
  if (target.username !== undefined) {
    headers.Authorization = `Basic ${Buffer.from(`${target.username}:${target.password ?? ""}`).toString("base64")}`;
  }
  if (body !== undefined) {
    headers["Content-Type"] = body.type;
    headers["Content-Length"] = String(Buffer.byteLength(body.content));
  }
  const ca = target.caFile === undefined ? undefined : readFileSync(target.caFile);
  return new Promise((resolve, reject) => {
    const request = client.request(url, { method, headers, ...(ca ? { ca } : {}) }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("error", reject);
      response.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let parsed: unknown;
        try {
          parsed = text === "" ? undefined : JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        const status = response.statusCode ?? 0;
        if (status >= 200 && status < 300) return resolve(parsed);
        const error = (parsed as { errors?: { code?: string; message?: string }[] } | undefined)?.errors?.[0];
        reject(
          new AdminRequestError(
            `${method} ${url.pathname}: ${status}${error ? ` ${error.code}: ${error.message}` : ""}`,
          ),
        );
      });
    });
    request.on("error", (error) =>
      reject(new AdminRequestError(`cannot reach the registry at ${target.url}: ${error.message}`)),
    );
    request.end(body?.content);
  });
}
