/**
 * One bucket, two registries: what Debian's `docker-registry` (CNCF Distribution 2.8, its s3
 * driver) pushes is served by ours from the same bucket and prefix, and the reverse; skopeo
 * pulls the multi-arch index and every image by digest from the other side.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { testBucket, type TestBucket } from "../../helpers/ceph.js";
import { writeOciLayout } from "../../helpers/oci-layout.js";
import { startReference } from "../../helpers/reference.js";
import { startRegistry, tempDir } from "../../helpers/registry.js";
import { servedDigest, skopeo } from "../../helpers/tools.js";

const ROOT = "/shared/prefix";
const buckets: TestBucket[] = [];
after(async () => {
  await Promise.all(buckets.map((b) => b.remove()));
});

/** The reference's s3 section for `b` (as the shared tools' ceph-rgw.sh configures it). */
function referenceStorage(b: TestBucket): Record<string, unknown> {
  return {
    s3: {
      accesskey: b.target.accessKey,
      secretkey: b.target.secretKey,
      region: b.target.region,
      regionendpoint: b.target.endpoint,
      bucket: b.name,
      secure: false,
      v4auth: true,
      rootdirectory: ROOT,
    },
    redirect: { disable: true },
  };
}

async function ours(b: TestBucket) {
  return startRegistry({ config: { storage: { s3: b.config({ rootdirectory: ROOT }) } } });
}

/** Pulls the whole index and each image by digest from `host`, checking every digest. */
function assertPulls(host: string, repo: string, digests: ReturnType<typeof writeOciLayout>): void {
  assert.equal(servedDigest(`docker://${host}/${repo}:v1`), digests.index);
  for (const digest of Object.values(digests.manifests)) {
    assert.equal(servedDigest(`docker://${host}/${repo}@${digest}`), digest);
  }
  const out = join(tempDir(), "pulled");
  skopeo("copy", "--all", "--src-tls-verify=false", `docker://${host}/${repo}:v1`, `oci:${out}:v1`);
  const index = JSON.parse(skopeo("inspect", "--raw", `oci:${out}:v1`).stdout) as {
    manifests: { digest: string }[];
  };
  assert.deepEqual(index.manifests.map((m) => m.digest).sort(), Object.values(digests.manifests).sort());
  const tags = JSON.parse(skopeo("list-tags", "--tls-verify=false", `docker://${host}/${repo}`).stdout);
  assert.deepEqual(tags.Tags, ["v1"]);
}

describe("S3 bucket interop with docker-registry (Distribution 2.8, s3 driver)", () => {
  it("a bucket docker-registry wrote is served by ours", async () => {
    const b = await testBucket("from-ref");
    buckets.push(b);
    const layout = join(tempDir(), "layout");
    const digests = writeOciLayout(layout, "v1");
    const reference = await startReference("", { storage: referenceStorage(b) });
    try {
      skopeo(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        `oci:${layout}:v1`,
        `docker://${reference.host}/ref/app:v1`,
      );
    } finally {
      await reference.stop();
    }
    assert.ok((await b.keys()).some((k) => k.startsWith("shared/prefix/docker/registry/v2/blobs/sha256/")));
    const registry = await ours(b);
    try {
      assertPulls(registry.host, "ref/app", digests);
    } finally {
      await registry.stop();
    }
  });

  it("a bucket ours wrote is served by docker-registry", async () => {
    const b = await testBucket("from-ours");
    buckets.push(b);
    const layout = join(tempDir(), "layout");
    const digests = writeOciLayout(layout, "v1");
    const registry = await ours(b);
    try {
      skopeo(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        `oci:${layout}:v1`,
        `docker://${registry.host}/our/app:v1`,
      );
    } finally {
      await registry.stop();
    }
    const reference = await startReference("", { storage: referenceStorage(b) });
    try {
      assertPulls(reference.host, "our/app", digests);
    } finally {
      await reference.stop();
    }
  });
});
