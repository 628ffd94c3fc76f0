/**
 * Webhook notifications (`notifications.endpoints`), as the reference registry sends them: a real
 * HTTP listener receives the envelopes while skopeo and plain requests push, pull and delete.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Client, imageManifest } from "../../helpers/oci.js";
import { writeOciLayout } from "../../helpers/oci-layout.js";
import { startRegistry, tempDir, waitUntil } from "../../helpers/registry.js";
import { skopeo } from "../../helpers/tools.js";

interface Event {
  action: string;
  target: {
    mediaType?: string;
    digest?: string;
    repository: string;
    tag?: string;
    size?: number;
    url?: string;
    fromRepository?: string;
  };
  request: { method: string; useragent: string };
  actor: { name?: string };
  source: { addr: string; instanceID: string };
}

/** A webhook listener; `failFirst` requests are answered 500 (an endpoint that is down for a while). */
async function listener(failFirst = 0) {
  const received: Event[] = [];
  const requests: { contentType?: string; token?: string }[] = [];
  let failures = failFirst;
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c));
    req.on("end", () => {
      requests.push({ contentType: req.headers["content-type"], token: req.headers["x-token"] as string });
      if (failures > 0) {
        failures--;
        res.writeHead(500).end();
        return;
      }
      received.push(...(JSON.parse(body) as { events: Event[] }).events);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
  return { url, received, requests, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe("notifications", () => {
  it("sends push, pull, mount and delete events in the reference's envelope, honouring ignore lists", async () => {
    const all = await listener();
    const pushesOnly = await listener();
    const registry = await startRegistry({
      config: {
        notifications: {
          endpoints: [
            {
              name: "all",
              url: all.url,
              headers: { "X-Token": ["secret"] },
              timeout: "2s",
              backoff: "100ms",
            },
            {
              name: "manifest-pushes",
              url: pushesOnly.url,
              ignoredmediatypes: ["application/octet-stream"],
              ignore: { actions: ["pull", "delete", "mount"] },
            },
            { name: "off", url: "http://127.0.0.1:9/never", disabled: true },
          ],
        },
      },
    });
    try {
      const layout = join(tempDir(), "layout");
      writeOciLayout(layout, "v1", "notify");
      skopeo(
        "copy",
        "--dest-tls-verify=false",
        `oci:${layout}:v1-amd64`,
        `docker://${registry.host}/team/app:v1`,
      );
      const client = new Client(registry.url);
      const manifest = await client.request("GET", "/v2/team/app/manifests/v1");
      const digest = manifest.headers.get("Docker-Content-Digest")!;
      const config = ((await manifest.json()) as { config: { digest: string } }).config.digest;
      await client.request("GET", `/v2/team/app/blobs/${config}`);
      assert.equal(
        (await client.request("POST", `/v2/team/copy/blobs/uploads/?mount=${config}&from=team/app`)).status,
        201,
      );
      const extra = imageManifest();
      await client.pushManifest("team/app", "v2", extra);
      assert.equal((await client.request("DELETE", `/v2/team/app/manifests/${extra.digest}`)).status, 202);

      await waitUntil(async () => all.received.some((e) => e.action === "delete"), 10_000);
      const manifestPush = all.received.find((e) => e.action === "push" && e.target.tag === "v1")!;
      assert.equal(manifestPush.target.repository, "team/app");
      assert.equal(manifestPush.target.digest, digest);
      assert.match(manifestPush.target.mediaType!, /manifest/);
      assert.equal(manifestPush.target.url, `${registry.url}/v2/team/app/manifests/${digest}`);
      assert.match(manifestPush.request.useragent, /skopeo|containers/i);
      assert.ok(manifestPush.source.instanceID);
      assert.ok(
        all.received.some((e) => e.action === "push" && e.target.mediaType === "application/octet-stream"),
      );
      assert.ok(
        all.received.some((e) => e.action === "pull" && e.target.tag === "v1" && e.target.digest === digest),
      );
      assert.ok(
        all.received.some((e) => e.action === "pull" && e.target.digest === config && e.target.size! > 0),
      );
      const mount = all.received.find((e) => e.action === "mount")!;
      assert.deepEqual(
        [mount.target.repository, mount.target.fromRepository, mount.target.digest],
        ["team/copy", "team/app", config],
      );
      assert.ok(all.received.some((e) => e.action === "delete" && e.target.digest === extra.digest));
      assert.ok(
        all.requests.every(
          (r) =>
            r.contentType === "application/vnd.docker.distribution.events.v1+json" && r.token === "secret",
        ),
      );

      await waitUntil(async () => pushesOnly.received.length >= 2, 10_000);
      assert.ok(
        pushesOnly.received.every(
          (e) => e.action === "push" && e.target.mediaType !== "application/octet-stream",
        ),
        JSON.stringify(pushesOnly.received.map((e) => [e.action, e.target.mediaType])),
      );
      const metrics = await (await fetch(`${registry.debugUrl}/metrics`)).text();
      assert.match(metrics, /registry_notification_deliveries\{endpoint="all",outcome="sent"\} [1-9]/);
      assert.doesNotMatch(metrics, /endpoint="off"/);
    } finally {
      await registry.stop();
      await all.close();
      await pushesOnly.close();
    }
  });

  it("retries an endpoint that fails, delivering every event in order once it answers", async () => {
    const flaky = await listener(3);
    const registry = await startRegistry({
      config: {
        notifications: { endpoints: [{ name: "flaky", url: flaky.url, threshold: 2, backoff: "200ms" }] },
      },
    });
    try {
      const client = new Client(registry.url);
      const images = [imageManifest(), imageManifest(), imageManifest()];
      for (const [i, m] of images.entries()) await client.pushManifest("retry/app", `v${i}`, m);
      await waitUntil(
        async () => flaky.received.filter((e) => e.target.tag !== undefined).length === 3,
        15_000,
      );
      assert.deepEqual(
        flaky.received.filter((e) => e.target.tag !== undefined).map((e) => e.target.tag),
        ["v0", "v1", "v2"],
      );
      assert.ok(flaky.requests.length >= 4);
      assert.match(registry.log(), /notification delivery failed; retrying/);
    } finally {
      await registry.stop();
      await flaky.close();
    }
  });
});
