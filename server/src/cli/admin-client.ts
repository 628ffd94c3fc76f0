import { createWriteStream, readFileSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import http, { type IncomingMessage } from "node:http";
import { pipeline } from "node:stream/promises";
import { readLimited } from "../read-limited.js";

/** A GC or sync report lists what it did; far below this. */
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;
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

/** The registry at `url`, with the credentials from the environment (as the CronJobs set them). */
export function adminTarget(url: string, caFile: string | undefined): AdminTarget {
  return { url, username: process.env[USERNAME_ENV], password: process.env[PASSWORD_ENV], caFile };
}

export class AdminRequestError extends Error {
  override name = "AdminRequestError";
}

/**
 * One admin API call; resolves with the parsed JSON answer. A non-2xx answer becomes one line with
 * the status and the registry's error message. No timeout: a collection or sync takes as long as
 * it takes, and the CronJob's activeDeadlineSeconds bounds it.
 */
export async function adminRequest(
  target: AdminTarget,
  method: string,
  path: string,
  body?: { content: string; type: string },
): Promise<unknown> {
  const response = await send(target, method, path, body);
  const text = (await readLimited(response, MAX_ANSWER_BYTES)).toString("utf8");
  try {
    return text === "" ? undefined : JSON.parse(text);
  } catch {
    throw new AdminRequestError(`${method} ${path}: the registry's answer is not JSON`);
  }
}

/** Streams a GET's answer (a backup) into `file`, through a temporary name: a cut download leaves no file. */
export async function adminDownload(target: AdminTarget, path: string, file: string): Promise<number> {
  const response = await send(target, "GET", path);
  const partial = `${file}.partial`;
  let bytes = 0;
  response.on("data", (chunk: Buffer) => (bytes += chunk.length));
  try {
    await pipeline(response, createWriteStream(partial, { flush: true }));
    if (!response.complete)
      throw new AdminRequestError(`GET ${path}: the registry closed the connection early`);
    await rename(partial, file);
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
  return bytes;
}

/** Sends the request; resolves with a 2xx response, rejects with the registry's error in one line. */
function send(
  target: AdminTarget,
  method: string,
  path: string,
  body?: { content: string; type: string },
): Promise<IncomingMessage> {
  // The registry may be served under a path (`http.prefix`): the API path goes below it.
  const url = new URL(`${target.url.replace(/\/+$/, "")}${path}`);
  const client = url.protocol === "https:" ? https : http;
  const headers: Record<string, string> = {};
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
      const status = response.statusCode ?? 0;
      if (status >= 200 && status < 300) return resolve(response);
      readLimited(response, MAX_ANSWER_BYTES).then((content) => {
        let error: { code?: string; message?: string } | undefined;
        try {
          error = (JSON.parse(content.toString("utf8")) as { errors?: { code?: string; message?: string }[] })
            .errors?.[0];
        } catch {
          /* not the spec's error body */
        }
        reject(
          new AdminRequestError(
            `${method} ${url.pathname}: ${status}${error ? ` ${error.code}: ${error.message}` : ""}`,
          ),
        );
      }, reject);
    });
    request.on("error", (error) =>
      reject(new AdminRequestError(`cannot reach the registry at ${target.url}: ${error.message}`)),
    );
    request.end(body?.content);
  });
}
