/**
 * A real S3 store for tests: the endpoint in NEAM_TEST_S3_ENDPOINT (with NEAM_TEST_S3_ACCESSKEY,
 * NEAM_TEST_S3_SECRETKEY, NEAM_TEST_S3_REGION) when set — test/run.mjs sets it after starting one
 * Ceph RGW for the whole run (`startCeph`) — else a Ceph RGW this test process starts itself
 * (a test file run alone). Each test makes its own bucket (`testBucket`) and removes it.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";

const SCRIPT = new URL("../../../test/helpers/ceph-rgw.sh", import.meta.url).pathname;
/** Ceph takes 25-40 s to start alone; on a loaded 2-core machine, more. */
const START_TIMEOUT_MS = 180_000;

export interface S3Target {
  readonly endpoint: string;
  readonly region: string;
  readonly accessKey: string;
  readonly secretKey: string;
}

export interface CephGateway {
  readonly target: S3Target;
  /** The variables that hand this gateway to test processes. */
  readonly env: Record<string, string>;
  /** Frees what deleted objects still hold in the OSD now (`radosgw-admin gc process --include-all`). */
  collectGarbage(): void;
  /** `ceph health` (HEALTH_ERR when the OSD is full). */
  health(): string;
  stop(): Promise<void>;
}

export interface CephOptions {
  monPort?: number;
  rgwPort?: number;
  /** The OSD's capacity; 2-4 GiB fits a 1 GiB benchmark. */
  memstoreBytes?: number;
  /** Seconds before RGW's garbage collector frees deleted data (the script's default: 30). */
  gcMinWaitSeconds?: number;
}

/**
 * Starts a single-node Ceph RGW (test/helpers/ceph-rgw.sh) and resolves once it answers S3
 * requests. The gateway exits when this process does (the script watches its parent).
 */
export async function startCeph(options: CephOptions = {}): Promise<CephGateway> {
  const dir = mkdtempSync(join(tmpdir(), "neam-ceph-"));
  const keys = { accessKey: "RGWACCESS", secretKey: "RGWSECRET" };
  const child: ChildProcess = spawn("bash", [SCRIPT, dir], {
    stdio: "ignore",
    env: {
      ...process.env,
      CEPH_MON_PORT: String(options.monPort ?? process.env.NEAM_TEST_CEPH_MON_PORT ?? 3300),
      CEPH_RGW_PORT: String(options.rgwPort ?? process.env.NEAM_TEST_CEPH_RGW_PORT ?? 7480),
      CEPH_MEMSTORE_BYTES: String(
        options.memstoreBytes ?? process.env.NEAM_TEST_CEPH_MEMSTORE_BYTES ?? 3 * 1024 ** 3,
      ),
      ...(options.gcMinWaitSeconds !== undefined
        ? { CEPH_GC_MIN_WAIT: String(options.gcMinWaitSeconds) }
        : {}),
      CEPH_ACCESS_KEY: keys.accessKey,
      CEPH_SECRET_KEY: keys.secretKey,
      CEPH_PARENT: String(process.pid),
    },
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // However this process ends, the gateway goes too (the script also watches for it).
  const onExit = () => child.kill("SIGTERM");
  process.once("exit", onExit);
  const deadline = Date.now() + START_TIMEOUT_MS;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
    process.removeListener("exit", onExit);
    rmSync(dir, { recursive: true, force: true });
  };
  for (;;) {
    if (existsSync(join(dir, "endpoint"))) break;
    if (existsSync(join(dir, "failed")) || child.exitCode !== null) {
      const why = existsSync(join(dir, "failed")) ? readFileSync(join(dir, "failed"), "utf8") : "";
      await stop();
      throw new Error(`Ceph RGW did not start: ${why || `exit ${child.exitCode}`}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`Ceph RGW did not start within ${START_TIMEOUT_MS / 1000} s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const target = {
    endpoint: readFileSync(join(dir, "endpoint"), "utf8").trim(),
    region: "us-east-1",
    ...keys,
  };
  const admin = (command: string, args: string[]) => {
    const result = spawnSync(
      "timeout",
      ["60", command, "--conf", join(dir, "ceph.conf"), "--name", "client.admin", ...args],
      {
        encoding: "utf8",
      },
    );
    if (result.status !== 0) throw new Error(`${command} ${args.join(" ")}: ${result.stderr.trim()}`);
    return result.stdout;
  };
  return {
    target,
    collectGarbage: () => void admin("radosgw-admin", ["gc", "process", "--include-all"]),
    health: () => admin("ceph", ["health"]).trim(),
    env: {
      NEAM_TEST_S3_ENDPOINT: target.endpoint,
      NEAM_TEST_S3_REGION: target.region,
      NEAM_TEST_S3_ACCESSKEY: target.accessKey,
      NEAM_TEST_S3_SECRETKEY: target.secretKey,
    },
    stop,
  };
}

let own: Promise<CephGateway> | undefined;

/** The S3 store of this test run (see the top of this file). */
export async function s3Target(): Promise<S3Target> {
  const endpoint = process.env.NEAM_TEST_S3_ENDPOINT;
  if (endpoint !== undefined && endpoint !== "") {
    return {
      endpoint,
      region: process.env.NEAM_TEST_S3_REGION ?? "us-east-1",
      accessKey: process.env.NEAM_TEST_S3_ACCESSKEY ?? "RGWACCESS",
      secretKey: process.env.NEAM_TEST_S3_SECRETKEY ?? "RGWSECRET",
    };
  }
  own ??= startCeph();
  return (await own).target;
}

export function s3Client(target: S3Target): S3Client {
  return new S3Client({
    region: target.region,
    endpoint: target.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: target.accessKey, secretAccessKey: target.secretKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

export interface TestBucket {
  readonly name: string;
  readonly target: S3Target;
  readonly client: S3Client;
  /** `storage.s3` for a registry config (ours or the reference's) on this bucket. */
  config(extra?: Record<string, unknown>): Record<string, unknown>;
  /** Every key in the bucket. */
  keys(): Promise<string[]>;
  /** Open multipart uploads: [key, upload id]. */
  uploads(): Promise<[string, string][]>;
  /** Empties and deletes the bucket. */
  remove(): Promise<void>;
}

/**
 * A new bucket for one test, named `<NEAM_TEST_S3_BUCKET_PREFIX or neam-test>-<label>-<random>`
 * (on a shared gateway, a prefix of one's own keeps names apart).
 */
export async function testBucket(label: string): Promise<TestBucket> {
  const target = await s3Target();
  const client = s3Client(target);
  const prefix = process.env.NEAM_TEST_S3_BUCKET_PREFIX ?? "neam-test";
  const name = `${prefix}-${label}-${randomBytes(4).toString("hex")}`.toLowerCase().slice(0, 63);
  await client.send(new CreateBucketCommand({ Bucket: name }));
  const keys = async () => {
    const all: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: name, ContinuationToken: token }));
      all.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return all;
  };
  const uploads = async () => {
    const page = await client.send(new ListMultipartUploadsCommand({ Bucket: name }));
    return (page.Uploads ?? []).map((u) => [u.Key!, u.UploadId!] as [string, string]);
  };
  return {
    name,
    target,
    client,
    config: (extra = {}) => ({
      bucket: name,
      region: target.region,
      regionendpoint: target.endpoint,
      forcepathstyle: true,
      accesskey: target.accessKey,
      secretkey: target.secretKey,
      ...extra,
    }),
    keys,
    uploads,
    async remove() {
      for (const [key, id] of await uploads()) {
        await client.send(new AbortMultipartUploadCommand({ Bucket: name, Key: key, UploadId: id }));
      }
      for (let batch = await keys(); batch.length > 0; batch = await keys()) {
        await client.send(
          new DeleteObjectsCommand({
            Bucket: name,
            Delete: { Objects: batch.slice(0, 1000).map((Key) => ({ Key })), Quiet: true },
          }),
        );
      }
      await client.send(new DeleteBucketCommand({ Bucket: name }));
      client.destroy();
    },
  };
}
