import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isCronExpression, parseSyncManifest } from "../../server/src/index.js";

const GUIDE_EXAMPLE = `sync:
  frequency: daily
  images:
    - source: "docker.io/library/nginx:1.25-alpine"
      target: "local-registry:5000/nginx:1.25-alpine"
      platform: "linux/amd64"
      schedule: "0 2 * * *"

    - source: "gcr.io/spiffe-io/spire-server:1.8.0"
      target: "local-registry:5000/spiffe-io/spire-server:1.8.0"
      platform: "linux/amd64"
      schedule: "0 3 * * *"

  policies:
    keep_last_versions: 3
    max_image_age_days: 30
    cleanup_unused: true
`;

describe("sync manifest", () => {
  it("parses the operations guide's example", () => {
    const manifest = parseSyncManifest(GUIDE_EXAMPLE);
    assert.equal(manifest.sync.images.length, 2);
    assert.equal(manifest.sync.images[1]!.target, "local-registry:5000/spiffe-io/spire-server:1.8.0");
    assert.deepEqual(manifest.sync.policies, {
      keep_last_versions: 3,
      max_image_age_days: 30,
      cleanup_unused: true,
    });
  });

  it("refuses bad entries with one line naming them", () => {
    const cases: [string, RegExp][] = [
      [
        GUIDE_EXAMPLE.replace('schedule: "0 2 * * *"', 'schedule: "every night"'),
        /sync\.images\.0\.schedule: must be a five-field cron/,
      ],
      [
        GUIDE_EXAMPLE.replace("docker.io/library/nginx:1.25-alpine", "nginx latest"),
        /sync\.images\.0\.source: must be an image reference/,
      ],
      [
        GUIDE_EXAMPLE.replace('platform: "linux/amd64"', 'platform: "amd64"'),
        /sync\.images\.0\.platform: must be os\/arch/,
      ],
      [
        GUIDE_EXAMPLE.replace("keep_last_versions: 3", "keep_last_versions: -1"),
        /sync\.policies\.keep_last_versions/,
      ],
      [
        GUIDE_EXAMPLE.replace("cleanup_unused: true", "cleanup_unused: true\n    purge_everything: true"),
        /unknown key "sync\.policies\.purge_everything"/,
      ],
      ["sync:\n  images: []\n", /sync\.images/],
      ["sync: [unclosed\n", /not valid YAML/],
    ];
    for (const [text, message] of cases) {
      assert.throws(
        () => parseSyncManifest(text),
        (e: Error) => message.test(e.message) && !e.message.includes("\n"),
        String(message),
      );
    }
  });

  it("knows cron expressions", () => {
    for (const good of ["0 */4 * * *", "0 2 * * *", "*/15 * * * 1-5", "0 0 1,15 * *", "30 3 * 1-12/2 0"])
      assert.ok(isCronExpression(good), good);
    for (const bad of [
      "0 2 * *",
      "60 * * * *",
      "* 24 * * *",
      "* * 0 * *",
      "*/0 * * * *",
      "5-1 * * * *",
      "@daily",
      "a b c d e",
    ]) {
      assert.ok(!isCronExpression(bad), bad);
    }
  });
});
