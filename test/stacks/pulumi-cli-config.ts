/**
 * What the Pulumi CLI does with a stack's config before it starts the program (pkg/resource/config
 * and the project's `config:` block): every key the project declares without a `default` must be
 * set in Pulumi.<stack>.yaml, every value must have the declared type, the project's defaults fill
 * the rest, and the program receives the result as strings keyed `<project>:<key>` (PULUMI_CONFIG).
 * Stricter than the CLI in one way: a project-namespaced key the project does not declare is an
 * error here (the CLI passes it through), so a typo in a stack file cannot go unnoticed.
 */
import { readFileSync } from "node:fs";
import { parse } from "yaml";

interface ProjectFile {
  name: string;
  config?: Record<string, { type?: string; default?: unknown; description?: string }>;
}

export function projectConfigErrors(
  project: ProjectFile,
  stack: string,
  stackConfig: Record<string, unknown>,
): string[] {
  const errors: string[] = [];
  const declared = project.config ?? {};
  for (const [key, spec] of Object.entries(declared)) {
    if (spec.default !== undefined && !hasType(spec.default, spec.type)) {
      errors.push(`Pulumi.yaml: the default of ${key} is not of type ${spec.type}`);
    }
    const value = stackConfig[`${project.name}:${key}`];
    if (value === undefined) {
      if (spec.default === undefined) errors.push(`Stack '${stack}' is missing configuration value '${key}'`);
    } else if (!hasType(value, spec.type)) {
      errors.push(`Stack '${stack}': ${project.name}:${key} should be of type ${spec.type}`);
    }
  }
  for (const key of Object.keys(stackConfig)) {
    const colon = key.indexOf(":");
    if (colon <= 0)
      errors.push(`Stack '${stack}': config key ${JSON.stringify(key)} is not namespaced (<project>:<key>)`);
    else if (key.slice(0, colon) === project.name && !(key.slice(colon + 1) in declared)) {
      errors.push(`Stack '${stack}': ${key} is not declared in Pulumi.yaml`);
    }
  }
  return errors;
}

function hasType(value: unknown, type: string | undefined): boolean {
  switch (type) {
    case undefined:
    case "string":
      return typeof value === "string";
    case "integer":
      return Number.isInteger(value);
    case "boolean":
      return typeof value === "boolean";
    case "array":
      return Array.isArray(value);
    default:
      return false;
  }
}

/** The config the CLI hands the program for `pulumi up --stack <stack>` run in `root`; throws what the CLI would. */
export function cliConfig(root: string, stack: string): Record<string, string> {
  const project = parse(readFileSync(`${root}Pulumi.yaml`, "utf8")) as ProjectFile;
  const stackFile = parse(readFileSync(`${root}Pulumi.${stack}.yaml`, "utf8")) as {
    config?: Record<string, unknown>;
  };
  const stackConfig = stackFile.config ?? {};
  const errors = projectConfigErrors(project, stack, stackConfig);
  if (errors.length > 0) throw new Error(errors.join("; "));
  const result: Record<string, string> = {};
  for (const [key, spec] of Object.entries(project.config ?? {})) {
    if (spec.default !== undefined) result[`${project.name}:${key}`] = stringify(spec.default);
  }
  for (const [key, value] of Object.entries(stackConfig)) result[key] = stringify(value);
  return result;
}

function stringify(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}
