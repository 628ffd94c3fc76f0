import { randomUUID } from "node:crypto";
import type { Context } from "koa";
import type { Caller } from "../auth/policy.js";
import type { RegistryEvent } from "../notifications/notifier.js";
import { isDigest } from "../registry/digest.js";
import { decodeComponent } from "./url.js";

const BLOB_MEDIA_TYPE = "application/octet-stream";

/**
 * The notification a finished request makes, if any, in the reference registry's format: pushes
 * and pulls of manifests (with their media type and tag) and blobs (as application/octet-stream),
 * deletes, and cross-repository mounts. HEAD requests and failures make none.
 */
export function notificationEvent(
  ctx: Context,
  route: string,
  params: string[],
  source: { addr: string; instanceID: string },
): RegistryEvent | undefined {
  const { method, status } = ctx;
  const repository = params[0] === undefined ? undefined : decodeComponent(params[0]);
  if (repository === undefined) return undefined;
  const reference = params[1] === undefined ? undefined : decodeComponent(params[1]);
  const digest =
    ctx.response.get("Docker-Content-Digest") || (reference && isDigest(reference) ? reference : undefined);
  const tag = reference !== undefined && !isDigest(reference) ? reference : undefined;
  const url = (kind: string) =>
    digest ? `${ctx.protocol}://${ctx.host}/v2/${repository}/${kind}/${digest}` : undefined;

  let action: RegistryEvent["action"] | undefined;
  let target: Omit<RegistryEvent["target"], "repository"> | undefined;
  if (route === "manifest" && method === "PUT" && status === 201) {
    const size = Number(ctx.get("Content-Length")) || undefined;
    action = "push";
    target = {
      mediaType: ctx.get("Content-Type").split(";")[0]!.trim() || undefined,
      size,
      length: size,
      digest,
      url: url("manifests"),
      tag,
    };
  } else if (route === "manifest" && method === "GET" && status === 200) {
    action = "pull";
    target = {
      mediaType: ctx.response.type,
      size: ctx.response.length,
      length: ctx.response.length,
      digest,
      url: url("manifests"),
      tag,
    };
  } else if (route === "blob" && method === "GET" && (status === 200 || status === 206)) {
    action = "pull";
    target = {
      mediaType: BLOB_MEDIA_TYPE,
      size: ctx.response.length,
      length: ctx.response.length,
      digest,
      url: url("blobs"),
    };
  } else if ((route === "manifest" || route === "blob") && method === "DELETE" && status === 202) {
    action = "delete";
    target = { digest: tag === undefined ? digest : undefined, tag };
  } else if ((route === "upload" || route === "upload_start") && status === 201) {
    const from = typeof ctx.query.from === "string" ? ctx.query.from : undefined;
    const mounted = route === "upload_start" && typeof ctx.query.mount === "string";
    action = mounted ? "mount" : "push";
    target = {
      mediaType: BLOB_MEDIA_TYPE,
      digest,
      url: url("blobs"),
      ...(mounted && from ? { fromRepository: from } : {}),
    };
  }
  if (action === undefined || target === undefined) return undefined;

  const caller = ctx.state.caller as Caller | undefined;
  const socket = ctx.req.socket;
  return {
    id: randomUUID(),
    timestamp: new Date().toISOString(),
    action,
    target: { ...withoutUndefined(target), repository },
    request: {
      id: randomUUID(),
      addr: `${socket.remoteAddress ?? ""}:${socket.remotePort ?? ""}`,
      host: ctx.host,
      method,
      useragent: ctx.get("User-Agent"),
    },
    actor: caller?.kind === "user" ? { name: caller.name } : {},
    source,
  };
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined && v !== "")) as T;
}
