import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { ConfigSchema, EMBEDDED_DEFAULT, type Config } from "./schema.js";

/** A configuration that cannot be used; the message is one line naming the key. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Where warnings about the configuration go: one line each (stderr unless the caller says). */
export type ConfigWarn = (line: string) => void;

const warnOnStderr: ConfigWarn = (line) => process.stderr.write(`neam-registry: warning: ${line}\n`);

/** Reads, overrides from the environment, and validates. */
export function loadConfig(
  path: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  warn: ConfigWarn = warnOnStderr,
): Config {
  let raw: unknown;
  if (path === undefined) {
    raw = structuredClone(EMBEDDED_DEFAULT);
  } else {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      throw new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
    }
    try {
      raw = parseYaml(text) ?? {};
    } catch (error) {
      throw new ConfigError(
        `config file ${path} is not valid YAML: ${(error as Error).message.split("\n")[0]}`,
      );
    }
  }
  return validateConfig(applyEnvironment(raw, env, warn));
}

export function validateConfig(raw: unknown): Config {
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(describe(result.error));
  return result.data;
}

function describe(error: z.ZodError): string {
  // An unknown key explains the other failures of its section better than they do themselves.
  const issue = error.issues.find((i) => i.code === "unrecognized_keys") ?? error.issues[0]!;
  const at = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((k) => (at === "" ? k : `${at}.${k}`));
    return `config: unknown key ${keys.map((k) => JSON.stringify(k)).join(", ")}`;
  }
  return `config: ${at === "" ? "(root)" : at}: ${issue.message}`;
}

/**
 * Applies `REGISTRY_<SECTION>_<KEY>` variables as the reference registry does: the variable
 * names a path of config keys joined by `_`, and its value (parsed as YAML) replaces that key.
 */
export function applyEnvironment(raw: unknown, env: NodeJS.ProcessEnv, warn: ConfigWarn = () => {}): unknown {
  const config = isRecord(raw) ? raw : {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("REGISTRY_") || value === undefined) continue;
    const path = resolveEnvPath(name.slice("REGISTRY_".length).toLowerCase().split("_"), ConfigSchema);
    if (path === undefined) {
      // A misspelt override would otherwise be ignored without a word; what Kubernetes injects
      // for a Service named `registry…` is not ours and passes silently.
      if (!KUBERNETES_SERVICE_VARIABLE.test(name)) warn(unknownVariable(name));
      continue;
    }
    let target = config;
    for (const key of path.slice(0, -1)) {
      if (!isRecord(target[key])) target[key] = {};
      target = target[key] as Record<string, unknown>;
    }
    target[path.at(-1)!] = parseScalar(value);
  }
  return config;
}

/**
 * The service links Kubernetes sets for a Service named `registry` (or `registry-…`):
 * `REGISTRY_SERVICE_HOST`, `REGISTRY_SERVICE_PORT[_<port name>]`, `REGISTRY_PORT`,
 * `REGISTRY_PORT_5000_TCP[_PROTO|_PORT|_ADDR]`.
 */
const KUBERNETES_SERVICE_VARIABLE =
  /^REGISTRY_(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)$/;

function unknownVariable(name: string): string {
  let nearest: string | undefined;
  let best = Infinity;
  for (const candidate of environmentVariables(ConfigSchema, "REGISTRY")) {
    const distance = editDistance(name, candidate);
    if (distance < best) [nearest, best] = [candidate, distance];
  }
  // Only a near miss is worth naming; a far one would mislead.
  const hint =
    nearest !== undefined && best <= Math.max(2, Math.floor(name.length / 5))
      ? `; did you mean ${nearest}?`
      : "";
  return `environment variable ${name} names no config key and is ignored${hint}`;
}

/** Every `REGISTRY_…` name that sets a key of the schema (sections and leaves). */
function environmentVariables(schema: z.ZodType, prefix: string): string[] {
  const shape = objectShape(schema);
  if (shape === undefined) return [];
  return Object.entries(shape).flatMap(([key, child]) => {
    const name = `${prefix}_${key.toUpperCase()}`;
    return [name, ...environmentVariables(child, name)];
  });
}

/** Levenshtein distance. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    previous = current;
  }
  return previous[b.length]!;
}

function parseScalar(value: string): unknown {
  try {
    return parseYaml(value);
  } catch {
    return value;
  }
}

/** Matches env-name segments against the schema's keys; keys may themselves contain `_`. */
function resolveEnvPath(segments: string[], schema: z.ZodType): string[] | undefined {
  const shape = objectShape(schema);
  if (shape === undefined) return segments.length === 0 ? [] : undefined;
  for (let take = segments.length; take >= 1; take--) {
    const key = segments.slice(0, take).join("_");
    const child = shape[key];
    if (child === undefined) continue;
    if (take === segments.length) return [key];
    const rest = resolveEnvPath(segments.slice(take), child);
    if (rest !== undefined) return [key, ...rest];
  }
  return undefined;
}

function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  let current: z.ZodType = schema;
  for (let i = 0; i < 10; i++) {
    if (current instanceof z.ZodObject) return current.shape as Record<string, z.ZodType>;
    const def = (current as unknown as { _zod: { def: { innerType?: z.ZodType; in?: z.ZodType } } })._zod.def;
    const next = def.innerType ?? def.in;
    if (next === undefined) return undefined;
    current = next;
  }
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Splits `host:port` / `:port` / `[v6]:port` into what `net.Server.listen` takes. */
export function parseListenAddress(addr: string): { host: string | undefined; port: number } {
  const colon = addr.lastIndexOf(":");
  let host = addr.slice(0, colon);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return { host: host === "" ? undefined : host, port: Number(addr.slice(colon + 1)) };
}
