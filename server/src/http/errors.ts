import type { Context } from "koa";
import { RegistryError, type ErrorCode } from "../registry/errors.js";

/** The one place where a domain error code becomes an HTTP status and a wire code. */
const STATUS: Record<ErrorCode, { status: number; wire?: string }> = {
  BLOB_UNKNOWN: { status: 404 },
  BLOB_UPLOAD_INVALID: { status: 400 },
  BLOB_UPLOAD_UNKNOWN: { status: 404 },
  DIGEST_INVALID: { status: 400 },
  MANIFEST_BLOB_UNKNOWN: { status: 400 },
  MANIFEST_INVALID: { status: 400 },
  MANIFEST_UNKNOWN: { status: 404 },
  NAME_INVALID: { status: 400 },
  NAME_UNKNOWN: { status: 404 },
  SIZE_INVALID: { status: 400 },
  UNAUTHORIZED: { status: 401 },
  DENIED: { status: 403 },
  UNSUPPORTED: { status: 405 },
  TOOMANYREQUESTS: { status: 429 },
  UNAVAILABLE: { status: 503 },
  RANGE_INVALID: { status: 416, wire: "BLOB_UPLOAD_INVALID" },
  MANIFEST_TOO_LARGE: { status: 413, wire: "MANIFEST_INVALID" },
  PAGINATION_INVALID: { status: 400, wire: "UNSUPPORTED" },
  PARAMETER_INVALID: { status: 400, wire: "UNSUPPORTED" },
};

/** Writes the spec's error body `{"errors":[{code,message,detail}]}` with the code's status. */
export function writeError(ctx: Context, error: RegistryError, status?: number): void {
  const mapping = STATUS[error.code];
  ctx.status = status ?? mapping.status;
  // A shared service is down for a moment: clients and load balancers retry.
  if (error.code === "UNAVAILABLE") ctx.set("Retry-After", "1");
  ctx.type = "application/json";
  ctx.body = {
    errors: [
      {
        code: mapping.wire ?? error.code,
        message: error.message,
        ...(error.detail !== undefined ? { detail: error.detail } : {}),
      },
    ],
  };
}

/** A request the HTTP layer itself rejects (bad query, bad header) before reaching the domain. */
export function badRequest(code: ErrorCode, message: string, detail?: unknown): RegistryError {
  return new RegistryError(code, message, detail);
}

/**
 * 503 with the reference registry's UNAVAILABLE code: the server is short of a shared resource
 * (memory for request bodies), not the request wrong; clients and load balancers retry after
 * `Retry-After`.
 */
export function writeUnavailable(ctx: Context, message: string, retryAfterSeconds: number): void {
  ctx.status = 503;
  ctx.type = "application/json";
  ctx.set("Retry-After", String(retryAfterSeconds));
  ctx.body = { errors: [{ code: "UNAVAILABLE", message }] };
}
