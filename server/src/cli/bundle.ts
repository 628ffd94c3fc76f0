import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { SingleBar } from "cli-progress";
import { loadConfig } from "../config/load.js";
import { createBundle } from "../bundle/create.js";
import { BundleError, type HaveList } from "../bundle/format.js";
import { importBundle, inspectBundle } from "../bundle/import.js";
import { BundleWriter, bundleFiles, parseSize } from "../bundle/parts.js";
import { PushClient } from "../bundle/push-client.js";
import { sendBundle } from "../bundle/send.js";
import { parseSyncManifest } from "../sync/manifest.js";
import { upstreamClients } from "../sync/upstreams.js";
import { adminTarget, PASSWORD_ENV, USERNAME_ENV } from "./admin-client.js";

export const BUNDLE_USAGE = `  bundle create --manifest FILE --out FILE [--have HAVE.json] [--split SIZE] [--config FILE] [--json]
                                 the sync manifest's images (platform filter, referrers) in one archive
                                 for the air gap, upstreams as sync.upstreams of --config say; --split
                                 writes numbered parts with a .sha256 list
  bundle have --out HAVE.json [--url URL] [--ca FILE]
                                 the digests the site's registry holds, for create --have (admins)
  bundle import FILE [--url URL] [--ca FILE] [--repository NAME] [--json]
                                 streams a bundle (or a plain OCI layout tar) into the registry; tags
                                 last; a re-run sends nothing already there. Credentials from
                                 ${USERNAME_ENV} / ${PASSWORD_ENV}
  bundle import FILE --via-server [--part-size SIZE] [--url URL] [--ca FILE] [--json]
                                 streams the bundle part by part to the registry's admin endpoint,
                                 which verifies and commits it; a re-run sends only the parts that
                                 did not land (single files go in ranges of --part-size, 64MiB)
  bundle inspect FILE [--json]   lists and verifies a bundle without importing it
`;

/** A progress bar on a terminal; nothing otherwise (the JSON summary says what happened). */
function progress(total: number, json: boolean): { add(n: number): void; stop(): void } {
  if (json || !process.stderr.isTTY) return { add: () => {}, stop: () => {} };
  const bar = new SingleBar({
    format: "{bar} {percentage}% {value}/{total} MiB {eta_formatted}",
    stream: process.stderr,
    hideCursor: true,
  });
  const mib = (n: number) => Math.round(n / 1048576);
  let done = 0;
  bar.start(mib(total), 0);
  return {
    add(n) {
      done += n;
      bar.update(mib(done));
    },
    stop: () => bar.stop(),
  };
}

export async function bundleCommand(args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    strict: true,
    allowPositionals: true,
    options: {
      manifest: { type: "string" },
      out: { type: "string" },
      have: { type: "string" },
      split: { type: "string" },
      config: { type: "string" },
      url: { type: "string", default: "http://localhost:5000" },
      ca: { type: "string" },
      repository: { type: "string" },
      "via-server": { type: "boolean", default: false },
      "part-size": { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  const json = values.json;
  const print = (report: object, text: string) =>
    process.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : text);
  switch (verb) {
    case "create": {
      if (values.manifest === undefined) throw new BundleError("bundle create needs --manifest FILE");
      if (values.out === undefined) throw new BundleError("bundle create needs --out FILE");
      const manifest = parseSyncManifest(readFileSync(values.manifest, "utf8"));
      const config = values.config === undefined ? undefined : loadConfig(values.config);
      const have =
        values.have === undefined
          ? undefined
          : new Set((JSON.parse(readFileSync(values.have, "utf8")) as HaveList).digests ?? []);
      const out = new BundleWriter(
        values.out,
        values.split === undefined ? undefined : parseSize(values.split, "--split"),
      );
      let bar: ReturnType<typeof progress> | undefined;
      const report = await createBundle({
        manifest,
        upstreams: upstreamClients(
          config?.sync.upstreams ?? [],
          config?.http.maxmanifestbytes ?? 4 * 1024 * 1024,
        ),
        ...(have ? { have } : {}),
        out,
        onPlanned: (list) =>
          (bar = progress(
            list.content.filter((c) => !c.omitted).reduce((sum, c) => sum + c.size, 0),
            json,
          )),
        onBytes: (n) => bar?.add(n),
      });
      bar?.stop();
      print(
        report,
        `${values.out}: ${report.images} images, ${report.blobs} blobs and ${report.manifests} manifests, ` +
          `${report.bytes} bytes${report.omitted ? `; ${report.omitted} blobs (${report.omittedBytes} bytes) the site has left out` : ""}\n` +
          report.parts.map((p) => `  ${p.sha256}  ${p.name}\n`).join(""),
      );
      return 0;
    }
    case "have": {
      if (values.out === undefined) throw new BundleError("bundle have needs --out FILE");
      const client = new PushClient(adminTarget(values.url, values.ca));
      try {
        const have = await client.have();
        writeFileSync(values.out, `${JSON.stringify(have)}\n`);
        print(
          { digests: have.digests.length, freeBytes: have.freeBytes },
          `${values.out}: ${have.digests.length} digests\n`,
        );
      } finally {
        client.close();
      }
      return 0;
    }
    case "import": {
      const file = positionals[0];
      if (file === undefined) throw new BundleError("bundle import needs the bundle FILE");
      const files = bundleFiles(file);
      if (values["part-size"] !== undefined && !values["via-server"])
        throw new BundleError("--part-size goes with --via-server");
      if (values.repository !== undefined && values["via-server"])
        throw new BundleError("--repository is for plain OCI layouts, which import without --via-server");
      const client = new PushClient(adminTarget(values.url, values.ca));
      const bar = progress(files.size, json);
      if (values["via-server"]) {
        try {
          const report = await sendBundle(files, client, {
            ...(values["part-size"] !== undefined
              ? { partSize: parseSize(values["part-size"], "--part-size") }
              : {}),
            onBytes: (n) => bar.add(n),
          });
          bar.stop();
          print(
            report,
            report.images.map((i) => `${i.target} ${i.digest}\n`).join("") +
              `${report.partsSent} of ${report.parts} parts sent (${report.bytesSent} bytes), ` +
              `${report.partsLanded} had landed; ${report.counts.uploaded} blobs stored, ` +
              `${report.counts.mounted} mounted, ${report.counts.skipped} already there; ` +
              `${report.counts.manifests} manifests\n`,
          );
        } finally {
          bar.stop();
          client.close();
        }
        return 0;
      }
      try {
        const report = await importBundle(files, {
          client,
          ...(values.repository !== undefined ? { repository: values.repository } : {}),
          onBytes: (n) => bar.add(n),
        });
        bar.stop();
        print(
          report,
          report.images.map((i) => `${i.target} ${i.digest}\n`).join("") +
            `${report.uploaded} blobs uploaded (${report.bytesSent} bytes), ${report.mounted} mounted, ` +
            `${report.skipped} already there; ${report.manifests} manifests\n`,
        );
      } finally {
        bar.stop();
        client.close();
      }
      return 0;
    }
    case "inspect": {
      const file = positionals[0];
      if (file === undefined) throw new BundleError("bundle inspect needs the bundle FILE");
      const files = bundleFiles(file);
      const bar = progress(files.size, json);
      const report = await inspectBundle(files, (n) => bar.add(n));
      bar.stop();
      print(
        report,
        report.images.map((i) => `${i.target} ${i.digest} (from ${i.source})\n`).join("") +
          `${report.entries} entries, ${report.bytes} bytes${report.omitted ? `, ${report.omitted} blobs left out for the site` : ""}\n` +
          (report.problems.length ? report.problems.map((p) => `PROBLEM ${p}\n`).join("") : "verified\n"),
      );
      return report.problems.length ? 1 : 0;
    }
  }
  throw new BundleError(
    `unknown bundle command ${JSON.stringify(verb ?? "")}: create, have, import or inspect`,
  );
}
