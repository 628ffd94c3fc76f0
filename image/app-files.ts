/**
 * The registry's application files as the image ships them: the compiled server (JavaScript only),
 * package.json, the native addon, and exactly the npm packages the server imports (with what those
 * need), never the construct or Pulumi libraries the package also depends on. The image builder
 * (image/build.ts) and server/Dockerfile's build stage both take the set from here, so the two
 * images carry the same application.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative } from "node:path";

/** Where the compiled server loads the addon from (see server/src/native.ts), relative to the root. */
export const ADDON_PATH = "server/native/build/Release/neam_native.node";

interface PackageJson {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

const BUILTIN = new Set(builtinModules);

/** Package names that the JavaScript files under `dir` import or require by bare specifier. */
export function importedPackages(dir: string): Set<string> {
  const names = new Set<string>();
  const specifier =
    /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)["'](@?[a-z0-9][\w.-]*(?:\/[\w.@-]+)*)["']/gm;
  for (const file of walk(dir).filter((f) => f.endsWith(".js"))) {
    for (const match of readFileSync(file, "utf8").matchAll(specifier)) {
      const bare = match[1]!;
      if (bare.startsWith("node:") || BUILTIN.has(bare.split("/")[0]!)) continue;
      names.add(bare.startsWith("@") ? bare.split("/").slice(0, 2).join("/") : bare.split("/")[0]!);
    }
  }
  return names;
}

/**
 * The node_modules directories (relative to `root`) that the packages named need at run time:
 * each resolved as Node resolves it (nearest node_modules first), with their dependencies and the
 * optional ones that are installed.
 */
export function runtimePackageDirs(root: string, entry: Iterable<string>): string[] {
  const found = new Set<string>();
  const visit = (name: string, from: string, optional: boolean): void => {
    const dir = resolvePackage(root, name, from);
    if (!dir) {
      if (optional) return;
      throw new Error(`image: package ${name} (needed by ${from || "the server"}) is not installed`);
    }
    if (found.has(dir)) return;
    found.add(dir);
    const pkg = JSON.parse(readFileSync(join(root, dir, "package.json"), "utf8")) as PackageJson;
    for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep, dir, false);
    for (const dep of Object.keys(pkg.optionalDependencies ?? {})) visit(dep, dir, true);
    for (const [dep, meta] of Object.entries(pkg.peerDependenciesMeta ?? {}))
      if (!meta.optional) visit(dep, dir, false);
    for (const dep of Object.keys(pkg.peerDependencies ?? {}))
      if (!pkg.peerDependenciesMeta?.[dep]?.optional) visit(dep, dir, false);
  };
  for (const name of entry) visit(name, "", false);
  return [...found].sort();
}

function resolvePackage(root: string, name: string, from: string): string | undefined {
  // from = "node_modules/a/node_modules/b": look in b's, then a's, then the top node_modules.
  let base = from;
  for (;;) {
    const candidate = join(base, "node_modules", name);
    if (existsSync(join(root, candidate, "package.json"))) return candidate;
    if (!base) return undefined;
    const at = base.lastIndexOf("node_modules/");
    base = at <= 0 ? "" : base.slice(0, at - 1);
  }
}

/**
 * Copies the application into `out` (which becomes /app in the image): package.json, every .js
 * file of dist/server, the addon when built, and the runtime packages without their tests or type
 * declarations. Returns the relative paths written, sorted.
 */
export function copyAppFiles(root: string, out: string, options: { addon?: string } = {}): string[] {
  const server = join(root, "dist/server");
  if (!existsSync(join(server, "src/main.js")))
    throw new Error("image: dist/server is not built (npm run build)");
  mkdirSync(out, { recursive: true });
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as PackageJson;
  // Only what the runtime reads of package.json: the name, the version and that it is ESM.
  writeFileSync(
    join(out, "package.json"),
    `${JSON.stringify({ name: pkg.name, version: pkg.version, type: "module", private: true }, null, 2)}\n`,
  );
  // Only what today's sources compile to: tsc never deletes the output of a removed source.
  const compiled = walk(server).filter((f) => {
    const source = join(root, relative(join(root, "dist"), f)).replace(/\.js$/, ".ts");
    return f.endsWith(".js") && existsSync(source);
  });
  for (const file of compiled) copyFile(file, join(out, relative(root, file)));
  const addon = options.addon ?? join(root, ADDON_PATH);
  if (existsSync(addon)) copyFile(addon, join(out, ADDON_PATH));
  for (const dir of runtimePackageDirs(root, importedPackages(server)))
    cpSync(join(root, dir), join(out, dir), {
      recursive: true,
      filter: (source) => keepPackageFile(relative(join(root, dir), source)),
    });
  return walk(out)
    .map((f) => relative(out, f))
    .sort();
}

/** Nested node_modules are copied when resolved on their own; docs, tests and typings never. */
function keepPackageFile(path: string): boolean {
  if (path === "") return true;
  const parts = path.split("/");
  if (parts[0] === "node_modules") return false;
  const name = parts.at(-1)!;
  // Dotfiles (.env, .npmrc, editor state) are never part of a package's runtime.
  if (parts.some((p) => p.startsWith("."))) return false;
  if (/\.(d\.[cm]?ts|d\.ts\.map|map|md|markdown)$/i.test(name) && !/^license/i.test(name)) return false;
  return !parts.some((p) =>
    ["test", "tests", "__tests__", "docs", "example", "examples", ".github"].includes(p),
  );
}

function copyFile(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  cpSync(from, to);
}

export function walk(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...walk(path));
    else files.push(path);
  }
  return files;
}

// `node dist/image/app-files.js OUT` (server/Dockerfile's build stage): the same set into OUT.
if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) {
  const out = process.argv[2];
  if (!out) {
    console.error("usage: node dist/image/app-files.js OUT_DIR");
    process.exit(2);
  }
  const root = new URL("../../", import.meta.url).pathname;
  const files = copyAppFiles(root, out);
  console.log(`${files.length} application files in ${out}`);
}
