/**
 * Online garbage collection with `untagged` while a client deletes the same untagged manifests:
 * a manifest the client deleted first is gone as the pass meant. The pass goes on, reports it,
 * and the run is recorded as a success (the failure metric and the CLI's exit code stay clean).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { blob, Client, LAYER, OCI_CONFIG, OCI_MANIFEST, sha256 } from "../../helpers/oci.js";
import { startRegistry } from "../../helpers/registry.js";

const run = promisify(execFile);
const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;
const MANIFESTS = 200;
const ROUNDS = 3;

interface Report {
  manifestsDeleted: string[];
  manifestsDeletedMeanwhile: string[];
}

describe("garbage collection while a client deletes untagged manifests", () => {
  it("counts a manifest deleted meanwhile as gone, not as a failure, round after round", async () => {
    const registry = await startRegistry();
    const client = new Client(registry.url);
    const repo = "team/app";
    try {
      const config = blob(JSON.stringify({ architecture: "amd64", os: "linux" }));
      const layer = blob();
      let raced = 0;
      for (let round = 0; round < ROUNDS; round++) {
        // Pushed again each round: the previous pass freed them with the last manifest.
        for (const b of [config, layer]) await client.pushBlob(repo, b);
        // Many untagged manifests over the same two blobs: cheap to push, each its own revision.
        const digests: string[] = [];
        for (let i = 0; i < MANIFESTS; i++) {
          const bytes = Buffer.from(
            JSON.stringify({
              schemaVersion: 2,
              mediaType: OCI_MANIFEST,
              config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
              layers: [{ mediaType: LAYER, digest: layer.digest, size: layer.size }],
              annotations: { round: String(round), n: String(i) },
            }),
          );
          const digest = sha256(bytes);
          const put = await client.request("PUT", `/v2/${repo}/manifests/${digest}`, {
            body: bytes,
            headers: { "Content-Type": OCI_MANIFEST },
          });
          assert.equal(put.status, 201);
          digests.push(digest);
        }
        // The pass and the client's deletes at once; the client works from the end of the list
        // the pass works through from the start, so they meet.
        const collection = client.request("POST", "/v2/_oci/artifacts/delete?untagged=true&grace=0s");
        const deletedByClient: string[] = [];
        const pending = [...digests].reverse();
        await Promise.all(
          Array.from({ length: 4 }, async () => {
            for (let digest = pending.shift(); digest !== undefined; digest = pending.shift()) {
              const response = await client.request("DELETE", `/v2/${repo}/manifests/${digest}`);
              assert.ok([202, 404].includes(response.status), String(response.status));
              if (response.status === 202) deletedByClient.push(digest);
            }
          }),
        );
        const response = await collection;
        assert.equal(response.status, 200, await response.clone().text());
        const report = (await response.json()) as Report;
        const strip = (entries: string[]) => entries.map((e) => e.slice(`${repo}@`.length));
        // Every manifest is gone, deleted by one side or both (both may pass the check at once).
        assert.equal(
          new Set([...strip(report.manifestsDeleted), ...deletedByClient]).size,
          MANIFESTS,
          "every manifest was deleted by the pass or the client",
        );
        for (const digest of strip(report.manifestsDeletedMeanwhile))
          assert.ok(deletedByClient.includes(digest));
        raced += report.manifestsDeletedMeanwhile.length;
        for (const digest of digests)
          assert.equal((await client.request("HEAD", `/v2/${repo}/manifests/${digest}`)).status, 404);
      }
      assert.ok(raced > 0, "the client deleted some manifests while the pass meant to (the race happened)");

      const metrics = await (await fetch(`${registry.debugUrl}/metrics`)).text();
      assert.match(metrics, /^registry_task_last_run_success\{task="gc"\} 1$/m);
      // The CronJob's command after the race: exit 0.
      const cli = await run(process.execPath, [
        MAIN,
        "gc",
        "--url",
        registry.url,
        "--untagged",
        "--grace",
        "0s",
      ]);
      assert.match(cli.stdout, /^gc: /m);
    } finally {
      await registry.stop();
    }
  });
});
