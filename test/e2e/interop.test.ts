/**
 * On-disk compatibility with the reference registry, both ways: a root written by us is served
 * by Debian's docker-registry, and a root written by it is served by us, with identical digests.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { startReference } from "../helpers/reference.js";
import { startRegistry, tempDir } from "../helpers/registry.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { servedDigest, skopeo } from "../helpers/tools.js";
import { Client, imageManifest } from "../helpers/oci.js";

describe("interop with docker-registry (CNCF Distribution 2.8) on the same root directory", () => {
  it("what we store, the reference serves", async () => {
    const layout = join(tempDir(), "layout");
    const digests = writeOciLayout(layout, "v1", "ours");
    const ours = await startRegistry();
    skopeo(
      "copy",
      "--all",
      "--dest-tls-verify=false",
      `oci:${layout}:v1`,
      `docker://${ours.host}/team/app:v1`,
    );
    skopeo(
      "copy",
      "--format",
      "v2s2",
      "--dest-tls-verify=false",
      `oci:${layout}:v1-amd64`,
      `docker://${ours.host}/team/app:docker`,
    );
    const referrer = imageManifest({
      artifactType: "application/vnd.example.sbom",
      subject: { mediaType: "application/vnd.oci.image.index.v1+json", digest: digests.index, size: 1 },
    });
    assert.equal(
      (await new Client(ours.url).pushManifest("team/app", referrer.digest, referrer)).status,
      201,
    );
    const ourDocker = servedDigest(`docker://${ours.host}/team/app:docker`);
    await ours.stop();

    const reference = await startReference(ours.root);
    try {
      assert.equal(servedDigest(`docker://${reference.host}/team/app:v1`), digests.index);
      assert.equal(servedDigest(`docker://${reference.host}/team/app:docker`), ourDocker);
      const out = join(tempDir(), "pulled");
      skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        `docker://${reference.host}/team/app:v1`,
        `oci:${out}:v1`,
      );
      const tags = JSON.parse(
        skopeo("list-tags", "--tls-verify=false", `docker://${reference.host}/team/app`).stdout,
      );
      assert.deepEqual(tags.Tags.sort(), ["docker", "v1"]);
      const catalog = (await (await fetch(`${reference.url}/v2/_catalog`)).json()) as {
        repositories: string[];
      };
      assert.deepEqual(catalog.repositories, ["team/app"]);
    } finally {
      await reference.stop();
    }
  });

  it("what the reference stores, we serve", async () => {
    const root = join(tempDir(), "data");
    const layout = join(tempDir(), "layout");
    const digests = writeOciLayout(layout, "v2", "theirs");
    const reference = await startReference(root);
    skopeo(
      "copy",
      "--all",
      "--dest-tls-verify=false",
      `oci:${layout}:v2`,
      `docker://${reference.host}/their/app:v2`,
    );
    skopeo(
      "copy",
      "--dest-tls-verify=false",
      `oci:${layout}:v2-amd64`,
      `docker://${reference.host}/their/app:single`,
    );
    await reference.stop();

    const ours = await startRegistry({ root });
    try {
      assert.equal(servedDigest(`docker://${ours.host}/their/app:v2`), digests.index);
      assert.equal(servedDigest(`docker://${ours.host}/their/app:single`), digests.manifests.amd64);
      const out = join(tempDir(), "pulled");
      skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        `docker://${ours.host}/their/app:v2`,
        `oci:${out}:v2`,
      );
      const tags = JSON.parse(
        skopeo("list-tags", "--tls-verify=false", `docker://${ours.host}/their/app`).stdout,
      );
      assert.deepEqual(tags.Tags, ["single", "v2"]);
      // And we can keep writing into it: push a new tag next to the reference's data.
      skopeo(
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        `docker://${ours.host}/their/app:single`,
        `docker://${ours.host}/their/app:copied`,
      );
      assert.equal(servedDigest(`docker://${ours.host}/their/app:copied`), digests.manifests.amd64);
    } finally {
      await ours.stop();
    }
  });
});
