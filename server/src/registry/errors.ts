/**
 * Typed domain errors. Each carries one of the OCI Distribution error codes; the HTTP layer maps
 * codes to statuses in one place (http/errors.ts). Domain code never chooses an HTTP status.
 */
export const ERROR_CODES = [
  "BLOB_UNKNOWN",
  "BLOB_UPLOAD_INVALID",
  "BLOB_UPLOAD_UNKNOWN",
  "DIGEST_INVALID",
  "MANIFEST_BLOB_UNKNOWN",
  "MANIFEST_INVALID",
  "MANIFEST_UNKNOWN",
  "NAME_INVALID",
  "NAME_UNKNOWN",
  "SIZE_INVALID",
  "UNAUTHORIZED",
  "DENIED",
  "UNSUPPORTED",
  "TOOMANYREQUESTS",
  /** The reference's code (503): a shared service the request needs (Redis) is unreachable. */
  "UNAVAILABLE",
  /** Not an OCI code: a range the upload or blob cannot satisfy (answered 416). */
  "RANGE_INVALID",
  /** Not an OCI code: a malformed `n` or `last` of a paginated list (answered 400). */
  "PAGINATION_INVALID",
  /** Not an OCI code: a manifest above the configured size limit (answered 413). */
  "MANIFEST_TOO_LARGE",
  /** Not an OCI code: a malformed query parameter or body of an admin request (answered 400). */
  "PARAMETER_INVALID",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class RegistryError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly detail?: unknown,
  ) {
    super(message);
    this.name = "RegistryError";
  }
}

export const blobUnknown = (digest: string) =>
  new RegistryError("BLOB_UNKNOWN", "blob unknown to registry", { digest });
export const manifestUnknown = (reference: string) =>
  new RegistryError("MANIFEST_UNKNOWN", "manifest unknown", { reference });
export const nameUnknown = (name: string) =>
  new RegistryError("NAME_UNKNOWN", "repository name not known to registry", { name });
export const uploadUnknown = (id: string) =>
  new RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", { id });
export const unsupported = (message: string) => new RegistryError("UNSUPPORTED", message);
export const unavailable = (message: string) => new RegistryError("UNAVAILABLE", message);
