/** What the guide greps for on :5001/metrics is there, and counts what happened. */
import assert from "node:assert/strict";
import { it } from "node:test";
import { Client, blob, imageManifest } from "../../helpers/oci.js";
import { startRegistry } from "../../helpers/registry.js";

function value(text: string, pattern: RegExp): number {
  const match = pattern.exec(text);
  assert.ok(match, `no line matching ${pattern}`);
  return Number(match[1]);
}

it(":5001/metrics counts requests by route and status, uploaded bytes, and storage", async () => {
  const registry = await startRegistry();
  try {
    const client = new Client(registry.url);
    const manifest = imageManifest({ layers: 1 });
    await client.pushManifest("metrics/app", "v1", manifest);
    const chunked = blob(Buffer.alloc(5000, 1));
    const location = await client.startUpload("metrics/app");
    const patch = await client.request("PATCH", location, { body: chunked.data });
    await client.request("PUT", `${patch.headers.get("Location")}?digest=${chunked.digest}`);
    await client.request("GET", "/v2/metrics/app/manifests/v1");
    await client.request("GET", "/v2/metrics/app/manifests/nope");
    const text = await (await fetch(`${registry.debugUrl}/metrics`)).text();
    const pushed = manifest.blobs.reduce((sum, b) => sum + b.size, 0) + chunked.size;
    assert.equal(value(text, /^registry_upload_bytes_total (\d+)$/m), pushed);
    assert.equal(
      value(text, /^http_requests_total\{method="GET",route="manifest",status="200"\} (\d+)$/m),
      1,
    );
    assert.equal(
      value(text, /^http_requests_total\{method="GET",route="manifest",status="404"\} (\d+)$/m),
      1,
    );
    assert.ok(
      value(text, /^http_request_duration_seconds_count\{method="PUT",route="manifest"\} (\d+)$/m) >= 1,
    );
    assert.equal(value(text, /^repository_count (\d+)$/m), 1);
    assert.equal(value(text, /^manifest_count (\d+)$/m), 1);
    assert.equal(value(text, /^blob_count (\d+)$/m), manifest.blobs.length + 2); // + the manifest itself + the chunked blob
    assert.ok(value(text, /^storage_capacity_bytes (\d+)$/m) > 0);
  } finally {
    await registry.stop();
  }
});
