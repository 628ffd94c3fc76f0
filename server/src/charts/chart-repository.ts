import { digestOf, parseDigest, type Digest } from "../registry/digest.js";
import { RegistryError } from "../registry/errors.js";
import { MediaType } from "../registry/media-types.js";
import { isValidTag, validateName } from "../registry/names.js";
import type { Registry } from "../registry/registry.js";
import { compareVersionsDescending, isSemver, type ChartMetadata } from "./chart-archive.js";

/** One chart version as a Helm repository index lists it (ChartMuseum's API answers the same). */
export interface ChartVersion extends ChartMetadata {
  readonly urls: string[];
  readonly created: string;
  /** sha256 of the .tgz, hex, as Helm checks it. */
  readonly digest: string;
}

/** Helm's `index.yaml`. */
export interface IndexFile {
  readonly apiVersion: "v1";
  readonly entries: Record<string, ChartVersion[]>;
  readonly generated: string;
}

/** Why a chart request failed, with the HTTP status ChartMuseum answers it with. */
export class ChartError extends Error {
  override name = "ChartError";
  constructor(
    message: string,
    readonly status: 400 | 404 | 409 | 413,
  ) {
    super(message);
  }
}

const CREATED = "org.opencontainers.image.created";

/**
 * Helm chart repositories over the registry: a chart is stored as `helm push` stores it — an OCI
 * manifest in `<namespace>/<chart>` tagged with its version, Chart.yaml as its config, the .tgz
 * as its one layer — so every chart is served both to `helm pull oci://…` and, through this
 * class, as a classic chart repository (`index.yaml` and `charts/<name>-<version>.tgz`, the
 * ChartMuseum API). Knows nothing of HTTP.
 */
export class ChartRepository {
  constructor(private readonly registry: Registry) {}

  /** Every chart version in `namespace`, newest first per chart; `visible` filters repositories. */
  async index(namespace: string, visible: (repository: string) => boolean = () => true): Promise<IndexFile> {
    const entries: Record<string, ChartVersion[]> = {};
    const { items } = await this.registry.listRepositories(
      undefined,
      undefined,
      (repository) => this.chartName(namespace, repository) !== undefined && visible(repository),
    );
    for (const repository of items) {
      const versions = await this.versionsIn(repository);
      if (versions.length > 0) entries[this.chartName(namespace, repository)!] = versions;
    }
    return { apiVersion: "v1", entries, generated: new Date().toISOString() };
  }

  async versions(namespace: string, name: string): Promise<ChartVersion[]> {
    const versions = await this.versionsIn(this.repository(namespace, name)).catch(() => []);
    if (versions.length === 0) throw new ChartError(`chart ${name} not found`, 404);
    return versions;
  }

  async version(namespace: string, name: string, version: string): Promise<ChartVersion> {
    const found = (await this.versions(namespace, name)).find((v) => v.version === version);
    if (found === undefined) throw new ChartError(`chart ${name} version ${version} not found`, 404);
    return found;
  }

  /**
   * Stores a packaged chart whose Chart.yaml has been read (ChartYamlReader). An existing version
   * is refused (409, as ChartMuseum does) unless `force`. Returns what was stored.
   */
  async save(
    namespace: string,
    { archive, metadata }: { archive: Buffer; metadata: ChartMetadata },
    force = false,
  ): Promise<ChartMetadata> {
    const repository = this.repository(namespace, metadata.name);
    if (!isValidTag(metadata.version))
      throw new ChartError(
        `version ${metadata.version} cannot be stored as a tag (no "+" build metadata)`,
        400,
      );
    const existing = await this.registry.manifests
      .resolve(repository, { kind: "tag", tag: metadata.version })
      .catch(() => undefined);
    if (existing !== undefined && !force)
      throw new ChartError(`${metadata.name}-${metadata.version}.tgz already exists`, 409);

    const config = Buffer.from(JSON.stringify(metadata));
    const configDigest = digestOf(config);
    const layerDigest = digestOf(archive);
    await this.registry.putBlob(repository, configDigest, config);
    await this.registry.putBlob(repository, layerDigest, archive);
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.HelmConfig, digest: configDigest.value, size: config.length },
      layers: [{ mediaType: MediaType.HelmChartContent, digest: layerDigest.value, size: archive.length }],
      annotations: {
        "org.opencontainers.image.title": metadata.name,
        "org.opencontainers.image.version": metadata.version,
        ...(typeof metadata.description === "string"
          ? { "org.opencontainers.image.description": metadata.description }
          : {}),
        [CREATED]: new Date().toISOString(),
      },
    };
    await this.registry.putManifest(
      repository,
      { kind: "tag", tag: metadata.version },
      Buffer.from(JSON.stringify(manifest)),
      MediaType.OciManifest,
    );
    return metadata;
  }

  /** Removes a chart version (its tag and manifest; GC frees the .tgz). */
  async delete(namespace: string, name: string, version: string): Promise<void> {
    const repository = this.repository(namespace, name);
    const digest = await this.registry.manifests
      .resolve(repository, { kind: "tag", tag: version })
      .catch(() => undefined);
    if (digest === undefined) throw new ChartError(`chart ${name} version ${version} not found`, 404);
    await this.registry.deleteManifest(repository, { kind: "digest", digest });
  }

  /**
   * The .tgz a `charts/<name>-<version>.tgz` URL names: names and versions both hold dashes, so
   * each split is tried against what is stored.
   */
  async archive(
    namespace: string,
    file: string,
    /** Repositories the caller may read: only those are looked at (others might not exist). */
    visible: (repository: string) => boolean = () => true,
  ): Promise<{ digest: Digest; size: number; repository: string }> {
    for (const { repository, version } of this.archiveCandidates(namespace, file)) {
      if (!visible(repository)) continue;
      const manifest = await this.registry
        .getManifest(repository, { kind: "tag", tag: version })
        .catch(() => undefined);
      const layer = manifest && (await this.chartLayer(manifest.bytes));
      if (layer !== undefined) return { ...layer, repository };
    }
    throw new ChartError(`${file} not found`, 404);
  }

  /**
   * The repositories and versions a `<name>-<version>.tgz` file name may mean (names and versions
   * both hold dashes), the likeliest first: a SemVer version.
   */
  archiveCandidates(namespace: string, file: string): { repository: string; version: string }[] {
    const base = file.endsWith(".tgz") ? file.slice(0, -4) : undefined;
    const found: { repository: string; version: string }[] = [];
    for (let at = base?.indexOf("-") ?? -1; base !== undefined && at > 0; at = base.indexOf("-", at + 1)) {
      const name = base.slice(0, at);
      const version = base.slice(at + 1);
      if (!isValidTag(version)) continue;
      try {
        found.push({ repository: this.repository(namespace, name), version });
      } catch {
        continue;
      }
    }
    return found.sort((a, b) => Number(isSemver(b.version)) - Number(isSemver(a.version)));
  }

  /** The repository chart `name` of `namespace` lives in (400 for a name that cannot be one). */
  repositoryOf(namespace: string, name: string): string {
    return this.repository(namespace, name);
  }

  private async versionsIn(repository: string): Promise<ChartVersion[]> {
    const name = repository.slice(repository.lastIndexOf("/") + 1);
    const times = new Map(
      (await this.registry.manifests.tagTimes(repository)).map((t) => [t.tag, t.pushedAt]),
    );
    const versions: ChartVersion[] = [];
    for (const tag of await this.registry.manifests.tags(repository)) {
      const manifest = await this.registry
        .getManifest(repository, { kind: "tag", tag })
        .catch(() => undefined);
      if (manifest === undefined || manifest.parsed.configMediaType !== MediaType.HelmConfig) continue;
      const layer = await this.chartLayer(manifest.bytes);
      const config = manifest.parsed.blobs[0];
      if (layer === undefined || config === undefined) continue;
      let metadata: ChartMetadata;
      try {
        metadata = JSON.parse((await this.registry.blobs.read(config)).toString("utf8")) as ChartMetadata;
      } catch {
        continue;
      }
      const created =
        manifest.parsed.annotations?.[CREATED] ?? new Date(times.get(tag) ?? Date.now()).toISOString();
      versions.push({
        ...metadata,
        name,
        urls: [`charts/${name}-${metadata.version}.tgz`],
        created,
        digest: layer.digest.hex,
      });
    }
    return versions.sort((a, b) => compareVersionsDescending(a.version, b.version));
  }

  private async chartLayer(manifestBytes: Buffer): Promise<{ digest: Digest; size: number } | undefined> {
    let body: { layers?: { mediaType?: string; digest?: string; size?: number }[] };
    try {
      body = JSON.parse(manifestBytes.toString("utf8")) as typeof body;
    } catch {
      return undefined;
    }
    const layer = body.layers?.find((l) => l.mediaType === MediaType.HelmChartContent);
    if (layer?.digest === undefined || typeof layer.size !== "number") return undefined;
    try {
      return { digest: parseDigest(layer.digest), size: layer.size };
    } catch {
      return undefined;
    }
  }

  private repository(namespace: string, name: string): string {
    try {
      return validateName(`${namespace}/${name}`);
    } catch (error) {
      if (error instanceof RegistryError) throw new ChartError(`${name} is not a valid chart name`, 400);
      throw error;
    }
  }

  /** The chart a repository holds in `namespace`, if it is `<namespace>/<one component>`. */
  private chartName(namespace: string, repository: string): string | undefined {
    const prefix = `${namespace}/`;
    if (!repository.startsWith(prefix)) return undefined;
    const name = repository.slice(prefix.length);
    return name.includes("/") ? undefined : name;
  }
}
