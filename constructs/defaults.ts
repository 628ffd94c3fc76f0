/**
 * The registry image the constructs run unless told otherwise — the one place its default
 * reference is written (the package's name and version; a release bumps both together).
 */
export const DEFAULT_IMAGE = { repository: "neam-registry", tag: "0.1.0" } as const;
