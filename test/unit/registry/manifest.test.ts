import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RegistryError } from "../../../server/src/registry/errors.js";
import { baseMediaType, checkManifest, parseManifest } from "../../../server/src/registry/manifest.js";
import { MediaType } from "../../../server/src/registry/media-types.js";

const d = (c: string) => `sha256:${c.repeat(64)}`;
const CONFIG = { mediaType: MediaType.OciConfig, digest: d("c"), size: 2 };
const LAYER = { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: d("1"), size: 10 };
const FOREIGN = {
  mediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  digest: d("f"),
  size: 10,
  urls: ["https://example.com/layer"],
};
const bytes = (value: unknown) => Buffer.from(JSON.stringify(value));
const image = (extra: Record<string, unknown> = {}) => ({
  schemaVersion: 2,
  mediaType: MediaType.OciManifest,
  config: CONFIG,
  layers: [LAYER],
  ...extra,
});
const index = (extra: Record<string, unknown> = {}) => ({
  schemaVersion: 2,
  mediaType: MediaType.OciIndex,
  manifests: [
    {
      mediaType: MediaType.OciManifest,
      digest: d("a"),
      size: 5,
      platform: { os: "linux", architecture: "amd64" },
    },
    { mediaType: MediaType.OciManifest, digest: d("b"), size: 6 },
  ],
  ...extra,
});

function refused(body: unknown, message: string | RegExp, contentType?: string, raw?: Buffer) {
  assert.throws(
    () => parseManifest(raw ?? bytes(body), contentType),
    (error: unknown) => {
      assert.ok(error instanceof RegistryError, String(error));
      assert.equal(error.code, "MANIFEST_INVALID");
      if (typeof message === "string") assert.equal(error.message, message);
      else assert.match(error.message, message);
      return true;
    },
  );
}

describe("baseMediaType", () => {
  it("strips parameters, trims and lowercases; empty is none", () => {
    assert.equal(baseMediaType(undefined), undefined);
    assert.equal(baseMediaType(""), undefined);
    assert.equal(baseMediaType(" ; charset=utf-8"), undefined);
    assert.equal(baseMediaType(" Application/JSON ; charset=utf-8"), "application/json");
    assert.equal(baseMediaType("a/b;c;d"), "a/b");
  });
});

describe("image manifests", () => {
  it("reports config and distributable layers as blobs, and describes itself", () => {
    const parsed = parseManifest(
      bytes(
        image({
          layers: [LAYER, FOREIGN],
          artifactType: "application/x-test",
          annotations: { a: "b" },
          subject: { mediaType: MediaType.OciManifest, digest: d("5"), size: 1 },
        }),
      ),
    );
    assert.equal(parsed.mediaType, MediaType.OciManifest);
    assert.equal(parsed.isIndex, false);
    assert.deepEqual(
      parsed.blobs.map((b) => b.value),
      [d("c"), d("1")],
    );
    assert.deepEqual(parsed.children, []);
    assert.equal(parsed.entries, undefined);
    assert.equal(parsed.subject?.value, d("5"));
    assert.equal(parsed.artifactType, "application/x-test");
    assert.equal(parsed.configMediaType, MediaType.OciConfig);
    assert.deepEqual(parsed.annotations, { a: "b" });
  });

  it("a non-distributable layer without urls, or an ordinary layer with urls, is still a blob", () => {
    const noUrls = { ...FOREIGN, urls: [] };
    const plainWithUrls = { ...LAYER, urls: ["https://example.com/x"] };
    const absent = { mediaType: FOREIGN.mediaType, digest: d("e"), size: 1 };
    for (const type of [
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    ]) {
      const skipped = parseManifest(bytes(image({ layers: [{ ...FOREIGN, mediaType: type }] })));
      assert.deepEqual(
        skipped.blobs.map((b) => b.value),
        [d("c")],
        type,
      );
    }
    const parsed = parseManifest(bytes(image({ layers: [noUrls, plainWithUrls, absent] })));
    assert.deepEqual(
      parsed.blobs.map((b) => b.value),
      [d("c"), d("f"), d("1"), d("e")],
    );
    assert.equal(parsed.subject, undefined);
    assert.equal(parsed.artifactType, undefined);
    assert.equal(parsed.annotations, undefined);
  });

  it("a Docker schema 2 manifest keeps its media type", () => {
    const parsed = parseManifest(bytes(image({ mediaType: MediaType.DockerManifest })));
    assert.equal(parsed.mediaType, MediaType.DockerManifest);
    assert.equal(parsed.isIndex, false);
  });
});

describe("indexes", () => {
  it("reports children and entries with their platforms, no blobs", () => {
    const parsed = parseManifest(
      bytes(
        index({
          subject: { mediaType: MediaType.OciManifest, digest: d("5"), size: 1 },
          annotations: { x: "y" },
        }),
      ),
    );
    assert.equal(parsed.mediaType, MediaType.OciIndex);
    assert.equal(parsed.isIndex, true);
    assert.deepEqual(parsed.blobs, []);
    assert.deepEqual(
      parsed.children.map((c) => c.value),
      [d("a"), d("b")],
    );
    assert.deepEqual(
      parsed.entries?.map((e) => ({ digest: e.digest.value, mediaType: e.mediaType, platform: e.platform })),
      [
        {
          digest: d("a"),
          mediaType: MediaType.OciManifest,
          platform: { os: "linux", architecture: "amd64" },
        },
        { digest: d("b"), mediaType: MediaType.OciManifest, platform: undefined },
      ],
    );
    assert.ok(!("platform" in parsed.entries![1]!), "no platform key when the entry has none");
    assert.equal(parsed.subject?.value, d("5"));
    assert.deepEqual(parsed.annotations, { x: "y" });
    assert.equal(parsed.configMediaType, undefined);
  });

  it("a platform that is not an object is left out", () => {
    const parsed = parseManifest(
      bytes(
        index({
          manifests: [{ mediaType: MediaType.OciManifest, digest: d("a"), size: 5, platform: "linux" }],
        }),
      ),
    );
    assert.ok(!("platform" in parsed.entries![0]!));
  });

  it("a Docker manifest list is an index", () => {
    const parsed = parseManifest(bytes(index({ mediaType: MediaType.DockerManifestList })));
    assert.equal(parsed.isIndex, true);
    assert.equal(parsed.mediaType, MediaType.DockerManifestList);
  });
});

describe("which media type a manifest has", () => {
  const { mediaType: _m, ...bare } = image();
  const { mediaType: _i, ...bareIndex } = index();

  it("the body's mediaType, when the declared Content-Type agrees or is not a manifest type", () => {
    assert.equal(parseManifest(bytes(image()), MediaType.OciManifest).mediaType, MediaType.OciManifest);
    assert.equal(parseManifest(bytes(image()), "application/json").mediaType, MediaType.OciManifest);
    assert.equal(
      parseManifest(bytes(image()), `${MediaType.OciManifest}; charset=utf-8`).mediaType,
      MediaType.OciManifest,
    );
  });

  it("without one in the body, the declared manifest type; else guessed from the body", () => {
    assert.equal(parseManifest(bytes(bare), MediaType.DockerManifest).mediaType, MediaType.DockerManifest);
    assert.equal(parseManifest(bytes(bare), "application/json").mediaType, MediaType.OciManifest);
    assert.equal(parseManifest(bytes(bare)).mediaType, MediaType.OciManifest);
    assert.equal(parseManifest(bytes(bareIndex)).mediaType, MediaType.OciIndex);
    assert.equal(parseManifest(bytes(bareIndex)).isIndex, true);
    assert.equal(
      parseManifest(bytes(bareIndex), MediaType.DockerManifestList).mediaType,
      MediaType.DockerManifestList,
    );
  });

  it("a declared manifest type that contradicts the body is refused", () => {
    refused(
      image(),
      `Content-Type ${MediaType.DockerManifest} does not match the manifest's mediaType ${MediaType.OciManifest}`,
      MediaType.DockerManifest,
    );
  });

  it("an unsupported type is refused, naming it", () => {
    refused(
      image({ mediaType: "application/x-other" }),
      "unsupported manifest media type application/x-other",
    );
    refused(
      image({ mediaType: MediaType.OciConfig }),
      `unsupported manifest media type ${MediaType.OciConfig}`,
    );
  });
});

describe("malformed manifests: MANIFEST_INVALID with a message saying what is wrong", () => {
  it("not JSON, not an object, bad mediaType or schemaVersion", () => {
    refused(undefined, "manifest is not valid JSON", undefined, Buffer.from("{"));
    for (const body of [[], null, "x", 2]) refused(body, "manifest must be a JSON object");
    refused(image({ mediaType: 5 }), "mediaType must be a string");
    refused(image({ schemaVersion: 3 }), "schemaVersion must be 2");
    refused(image({ schemaVersion: "2" }), "schemaVersion must be 2");
    const { schemaVersion: _s, ...noVersion } = image();
    refused(noVersion, "schemaVersion must be 2");
  });

  it("Docker schema 1, by schemaVersion or by Content-Type", () => {
    const schema1 = "Docker schema 1 manifests are not supported";
    refused(image({ schemaVersion: 1 }), schema1);
    refused(image(), schema1, MediaType.DockerSchema1);
    refused(image(), schema1, MediaType.DockerSchema1Signed);
  });

  it("an index without manifests; an image without config or layers", () => {
    const { manifests: _m, ...noManifests } = index();
    refused(noManifests, "an index must have a manifests array");
    refused(index({ manifests: {} }), "an index must have a manifests array");
    const { config: _c, ...noConfig } = image();
    refused(noConfig, "an image manifest must have a config descriptor");
    const { layers: _l, ...noLayers } = image();
    refused(noLayers, "an image manifest must have a layers array");
    refused(image({ layers: {} }), "an image manifest must have a layers array");
  });

  it("descriptors: object, mediaType, digest, size, urls — naming where", () => {
    refused(image({ config: "x" }), "config must be a descriptor object");
    refused(image({ config: null }), "config must be a descriptor object");
    refused(image({ config: [] }), "config must be a descriptor object");
    refused(image({ config: { ...CONFIG, mediaType: "" } }), "config.mediaType must be a string");
    refused(image({ config: { ...CONFIG, mediaType: 1 } }), "config.mediaType must be a string");
    refused(image({ layers: [LAYER, { ...LAYER, digest: 1 }] }), "layers[1].digest must be a string");
    refused(image({ layers: [{ ...LAYER, digest: "sha256:x" }] }), "layers[0].digest is not a valid digest");
    for (const size of [-1, 1.5, "1", null, 2 ** 53])
      refused(image({ config: { ...CONFIG, size } }), "config.size must be a non-negative integer");
    assert.equal(parseManifest(bytes(image({ config: { ...CONFIG, size: 0 } }))).blobs.length, 2);
    refused(image({ layers: [{ ...LAYER, urls: "x" }] }), "layers[0].urls must be an array of strings");
    refused(image({ layers: [{ ...LAYER, urls: ["a", 1] }] }), "layers[0].urls must be an array of strings");
    refused(
      index({ manifests: [{ mediaType: MediaType.OciManifest, size: 1 }] }),
      "manifests[0].digest must be a string",
    );
    refused(image({ subject: "x" }), "subject must be a descriptor object");
  });

  it("the invalid digest is reported in the detail", () => {
    assert.throws(
      () => parseManifest(bytes(image({ config: { ...CONFIG, digest: "sha256:x" } }))),
      (error: unknown) =>
        error instanceof RegistryError &&
        JSON.stringify(error.detail) === JSON.stringify({ digest: "sha256:x" }),
    );
  });

  it("annotations must be a map of strings; artifactType a string", () => {
    for (const annotations of ["x", null, [], { a: 1 }, { a: "b", c: null }])
      refused(image({ annotations }), "annotations must be a map of strings");
    refused(image({ artifactType: 1 }), "artifactType must be a string");
  });
});

describe("large manifests: entries read a run at a time, references only when asked for", () => {
  const hex = (i: number) => i.toString(16).padStart(64, "0");
  const entry = (i: number) => ({
    mediaType: MediaType.OciManifest,
    digest: `sha256:${hex(i)}`,
    size: i,
    ...(i % 3 === 0 ? { platform: { os: "linux", architecture: `arch${i}` } } : {}),
  });
  const many = Array.from({ length: 1000 }, (_, i) => entry(i));

  it("an index of 1,000 entries: every child and platform, in order", () => {
    const parsed = parseManifest(bytes(index({ manifests: many })));
    assert.deepEqual(
      parsed.children.map((c) => c.value),
      many.map((m) => m.digest),
    );
    assert.deepEqual(
      parsed.entries!.map((e) => e.platform?.architecture),
      many.map((m) => m.platform?.architecture),
    );
  });

  it("a bad entry deep in a long list is named by its own index", () => {
    const broken = [...many];
    broken[700] = { ...entry(700), digest: "sha256:x" };
    refused(index({ manifests: broken }), "manifests[700].digest is not a valid digest");
    const layers = Array.from({ length: 600 }, () => LAYER);
    layers[599] = { ...LAYER, size: -1 };
    refused(image({ layers }), "layers[599].size must be a non-negative integer");
  });

  it("members the registry does not read must still be valid JSON", () => {
    const raw = Buffer.from(JSON.stringify(image()).replace(/}$/, ', "x": [1,]}'));
    refused(undefined, "manifest is not valid JSON", undefined, raw);
    // The last of a repeated key counts, as with JSON.parse.
    const twice = Buffer.from(JSON.stringify(image()).replace(/}$/, ', "schemaVersion": 3}'));
    refused(undefined, "schemaVersion must be 2", undefined, twice);
  });

  it("checkManifest validates everything at once, then reads references lazily and in order", () => {
    const broken = [...many];
    broken[999] = { ...entry(999), size: -1 };
    assert.throws(() => checkManifest(bytes(index({ manifests: broken }))), /manifests\[999\]\.size/);

    const checked = checkManifest(bytes(index({ manifests: many })));
    assert.equal(checked.isIndex, true);
    const first = checked.references()[Symbol.iterator]().next();
    assert.deepEqual(
      { digest: first.value?.digest.value, manifest: first.value?.manifest },
      { digest: many[0]!.digest, manifest: true },
    );
    assert.deepEqual(
      [...checked.references()].map((r) => r.digest.value),
      many.map((m) => m.digest),
    );

    const image_ = checkManifest(
      bytes(image({ layers: [LAYER, FOREIGN], subject: { ...CONFIG, digest: d("5") } })),
    );
    assert.deepEqual(
      [...image_.references()].map((r) => [r.digest.value, r.manifest]),
      [
        [d("c"), false],
        [d("1"), false],
      ],
    );
    assert.equal(image_.subject?.value, d("5"));
    assert.deepEqual(
      image_.parsed().blobs.map((b) => b.value),
      [d("c"), d("1")],
    );
  });
});
