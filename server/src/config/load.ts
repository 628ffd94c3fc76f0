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
  const sources: EnvironmentSources = new Map();
  return validateConfig(applyEnvironment(raw, env, warn, sources), sources);
}

/** Which variable set which key (`storage.s3.secretkey` → `REGISTRY_STORAGE_S3_SECRETKEY`). */
export type EnvironmentSources = Map<string, string>;

export function validateConfig(raw: unknown, sources?: EnvironmentSources): Config {
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(describe(result.error, sources));
  return result.data;
}

function describe(error: z.ZodError, sources: EnvironmentSources | undefined): string {
  // An unknown key explains the other failures of its section better than they do themselves.
  const issue = error.issues.find((i) => i.code === "unrecognized_keys") ?? error.issues[0]!;
  const at = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((k) => (at === "" ? k : `${at}.${k}`));
    return `config: unknown key ${keys.map((k) => JSON.stringify(k)).join(", ")}`;
  }
  // A value from the environment is fixed where it is set, not in the file: name the variable
  // (never the value, which may be a secret).
  let variable: string | undefined;
  for (let n = issue.path.length; n >= 1 && variable === undefined; n--)
    variable = sources?.get(issue.path.slice(0, n).map(String).join("."));
  return `config: ${at === "" ? "(root)" : at}${variable ? ` (from ${variable})` : ""}: ${issue.message}`;
}

/**
 * Applies `REGISTRY_<SECTION>_<KEY>` variables as the reference registry does: the variable
 * names a path of config keys joined by `_`, and its value replaces that key. The value is taken
 * as the schema's type for the key, as the reference's YAML decoding into a typed field does: a
 * key that is a string (a password, a secret key, a path) gets the variable's text verbatim, so
 * `123456`, `yes`, `null` or `p: w#rd` stay the string they are; a key of another type (numbers,
 * booleans, lists, sections) gets the text parsed as YAML.
 */
export function applyEnvironment(
  raw: unknown,
  env: NodeJS.ProcessEnv,
  warn: ConfigWarn = () => {},
  sources?: EnvironmentSources,
): unknown {
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
    target[path.at(-1)!] = valueFor(value, kindsOf(schemaAt(path)));
    sources?.set(path.join("."), name);
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

/** The JSON kinds of value a schema accepts; `any` when it cannot be told. */
type Kind = "string" | "number" | "boolean" | "array" | "object" | "null" | "any";

/** The variable's text as the value a key of these kinds takes. */
function valueFor(text: string, kinds: ReadonlySet<Kind>): unknown {
  // Only strings: the text is the value, whatever YAML would make of it.
  if (kinds.size === 1 && kinds.has("string")) return text;
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch {
    // Not YAML: the schema refuses it as a string, naming the key and the variable.
    return text;
  }
  // A key that also takes strings (`version`, `proxy.ttl`) takes the parsed value when it is of
  // a kind the key accepts, else the text as it was written.
  return kinds.has("any") || kinds.has(kindOfValue(parsed)) || !kinds.has("string") ? parsed : text;
}

function kindOfValue(value: unknown): Kind {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  const type = typeof value;
  return type === "string" || type === "number" || type === "boolean" || type === "object" ? type : "any";
}

/** The schema of the key at `path` (which resolveEnvPath found in the schema). */
function schemaAt(path: readonly string[]): z.ZodType | undefined {
  let current: z.ZodType | undefined = ConfigSchema;
  for (const key of path) current = current === undefined ? undefined : objectShape(current)?.[key];
  return current;
}

/** What kinds of value `schema` accepts, through optional, default, pipe and union wrappers. */
function kindsOf(schema: z.ZodType | undefined, depth = 0): Set<Kind> {
  if (schema === undefined || depth > 10) return new Set(["any"]);
  const def = (
    schema as unknown as {
      _zod: {
        def: {
          type: string;
          innerType?: z.ZodType;
          in?: z.ZodType;
          options?: z.ZodType[];
          values?: unknown[];
          entries?: Record<string, unknown>;
        };
      };
    }
  )._zod.def;
  switch (def.type) {
    case "string":
    case "number":
    case "boolean":
    case "array":
    case "object":
    case "null":
      return new Set([def.type]);
    case "int":
      return new Set(["number"]);
    case "tuple":
      return new Set(["array"]);
    case "record":
      return new Set(["object"]);
    case "enum":
      return new Set(Object.values(def.entries ?? {}).map(kindOfValue));
    case "literal":
      return new Set((def.values ?? []).map(kindOfValue));
    case "union":
      return new Set((def.options ?? []).flatMap((o) => [...kindsOf(o, depth + 1)]));
    case "pipe":
      return kindsOf(def.in, depth + 1);
    case "nullable":
      return new Set([...kindsOf(def.innerType, depth + 1), "null" as const]);
    default:
      // optional, default, prefault, readonly, catch, …: what the inner schema takes.
      return def.innerType !== undefined ? kindsOf(def.innerType, depth + 1) : new Set(["any"]);
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
