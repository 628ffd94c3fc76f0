import type { EnvVar, Volume, VolumeMount } from "cdk8s-plus-27/lib/imports/k8s.js";
import type { EgressTarget } from "./network-policy.js";
import { checkDnsSubdomain, checkPort } from "./validation.js";

/**
 * Where the registry pods may connect to reach a shared service (the S3 endpoint, Redis): its
 * addresses, or its pods when it runs in the cluster. NetworkPolicy sees the connection after the
 * Service has been translated to a pod, so for an in-cluster service name the pods, and the port
 * their container listens on (Rook's RGW Service answers on 80 and forwards to 8080).
 */
export interface ServiceEgressProps {
  /** The service's addresses (outside the cluster, or fixed in-cluster IPs). @default none */
  readonly cidrs?: readonly string[];
  /** The service's pods, by namespace and labels (Rook: `{ namespace: "rook-ceph", labels: { app: "rook-ceph-rgw" } }`). @default none */
  readonly pods?: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> };
  /** The port the connection arrives on at those addresses or pods. @default the endpoint's port */
  readonly port?: number;
}

/** A Secret (and its key). */
export interface SecretKeyProps {
  readonly name: string;
  readonly key?: string;
}

/**
 * Blobs and metadata in an S3 bucket (Ceph RGW, MinIO, AWS): the registry's `storage.s3`, in the
 * reference registry's layout, so an existing registry:2 bucket is served as it is. Shared by
 * every replica, so `replicaCount` may exceed 1 (with `redis`). No PersistentVolumeClaim.
 */
export interface S3StorageProps {
  readonly bucket: string;
  /** Ceph RGW takes any name its zonegroup accepts; "us-east-1" is its default. */
  readonly region: string;
  /** The S3 endpoint, `http(s)://host[:port]` (the RGW's Service or the site's gateway). @default AWS's endpoint of the region */
  readonly regionEndpoint?: string;
  /** Path-style URLs (`endpoint/bucket/key`): what Ceph RGW and MinIO serve without wildcard DNS. @default false */
  readonly forcePathStyle?: boolean;
  /** HTTPS to the endpoint (when `regionEndpoint` names no scheme). @default true */
  readonly secure?: boolean;
  /** Skip the endpoint certificate's verification (testing only; prefer `caSecret`). @default false */
  readonly skipVerify?: boolean;
  /** A prefix of every key in the bucket. @default the bucket's root */
  readonly rootDirectory?: string;
  /** Part size of multipart uploads, in bytes (S3's minimum is 5 MiB). @default the server's (10 MiB) */
  readonly chunkSize?: number;
  /** Objects above this many bytes are copied part by part. @default the server's (32 MiB) */
  readonly multipartCopyThresholdSize?: number;
  /**
   * The Secret with the access key and secret key; read into `REGISTRY_STORAGE_S3_ACCESSKEY` and
   * `REGISTRY_STORAGE_S3_SECRETKEY`, never written into the ConfigMap. The default keys are those
   * of the Secret Rook's ObjectBucketClaim creates.
   */
  readonly credentialsSecret: {
    readonly name: string;
    /** @default "AWS_ACCESS_KEY_ID" */
    readonly accessKeyKey?: string;
    /** @default "AWS_SECRET_ACCESS_KEY" */
    readonly secretKeyKey?: string;
  };
  /**
   * The CA that signs the endpoint's certificate (an internal CA in front of Ceph RGW): mounted
   * and named by `NODE_EXTRA_CA_CERTS`, which adds it to the CAs the registry trusts. @default the system's CAs
   */
  readonly caSecret?: SecretKeyProps;
  /** How the pods reach the endpoint: required while the NetworkPolicy is on. */
  readonly egress?: ServiceEgressProps;
}

/**
 * Redis, for what the replicas must agree on (caches, upload sessions, the maintenance lanes, the
 * login limiter, the notification queue): the registry's `redis`. Required for more than one replica.
 */
export interface RedisProps {
  /** `host:port` of the Redis server (a Service name in the cluster, or an address). */
  readonly addr: string;
  /** @default 0 */
  readonly db?: number;
  /** The Secret (and key) holding the password, read into `REGISTRY_REDIS_PASSWORD`. @default no password */
  readonly passwordSecret?: SecretKeyProps;
  /** TLS to Redis, optionally with the CA that signs its certificate. @default plain TCP */
  readonly tls?: { readonly caSecret?: SecretKeyProps };
  /** Go-style durations, as the reference's. @default the server's */
  readonly dialTimeout?: string;
  readonly readTimeout?: string;
  readonly writeTimeout?: string;
  /** Connection pool. @default the server's */
  readonly pool?: {
    readonly size?: number;
    readonly maxIdle?: number;
    readonly maxIdleTime?: string;
  };
  /** How the pods reach Redis: required while the NetworkPolicy is on. */
  readonly egress?: ServiceEgressProps;
}

/**
 * The reference registry's `storage.s3` keys, as config.yml spells them (distribution's
 * configuration reference). The credentials are not here: they come from the environment.
 */
export interface S3DriverConfig {
  bucket: string;
  region: string;
  regionendpoint?: string;
  forcepathstyle?: boolean;
  secure?: boolean;
  skipverify?: boolean;
  rootdirectory?: string;
  chunksize?: number;
  multipartcopythresholdsize?: number;
}

/** The reference registry's `redis` keys, as config.yml spells them; the password comes from the environment. */
export interface RedisConfig {
  addrs: string[];
  db?: number;
  dialtimeout?: string;
  readtimeout?: string;
  writetimeout?: string;
  poolsize?: number;
  maxidleconns?: number;
  connmaxidletime?: string;
  tls?: { enabled: boolean; rootcas?: string[] };
}

/** Everything the registry pods need for S3 and Redis: config sections, environment, volumes, egress. */
export interface SharedStorage {
  readonly s3?: S3DriverConfig;
  readonly redis?: RedisConfig;
  readonly env: EnvVar[];
  readonly volumes: Volume[];
  readonly mounts: VolumeMount[];
  /** Undefined when the props name no egress (refused later if the NetworkPolicy is on). */
  readonly s3Egress?: EgressTarget;
  readonly redisEgress?: EgressTarget;
  /** Where the endpoints are, for the errors that ask for their egress. */
  readonly s3Endpoint?: string;
  readonly redisAddr?: string;
}

const S3_CA_DIR = "/etc/neam-registry/s3";
const REDIS_CA_DIR = "/etc/neam-registry/redis";
/** S3's smallest part (but the last); the reference refuses a smaller chunksize. */
const MIN_CHUNK = 5 * 1024 * 1024;
/** S3's largest part, and its largest single-request copy (5 GiB). */
const MAX_COPY = 5 * 1024 ** 3;
const DURATION = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;
/** The environment variables the registry's loader maps onto these keys (REGISTRY_<path>, as the reference). */
export const SHARED_STORAGE_ENV = [
  "REGISTRY_STORAGE_S3_ACCESSKEY",
  "REGISTRY_STORAGE_S3_SECRETKEY",
  "REGISTRY_REDIS_PASSWORD",
  "NODE_EXTRA_CA_CERTS",
] as const;

function fail(message: string): never {
  throw new Error(`LocalRegistry: ${message}`);
}

function checkInteger(prop: string, value: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER) {
  if (value !== undefined && (!Number.isInteger(value) || value < min || value > max))
    fail(`${prop} ${JSON.stringify(value)} must be an integer from ${min} to ${max}`);
}

function checkDuration(prop: string, value: string | undefined) {
  if (value !== undefined && !DURATION.test(value))
    fail(`${prop} ${JSON.stringify(value)} is not a duration such as 5s or 300ms`);
}

/** A `host:port` (hostname, IPv4, or `[IPv6]`); returns the port. */
function checkAddr(prop: string, value: string): number {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/.exec(value);
  if (match === null) fail(`${prop} ${JSON.stringify(value)} is not host:port`);
  return checkPort(prop, Number(match[3]));
}

function egressTarget(prop: string, egress: ServiceEgressProps, port: number): EgressTarget {
  if ((egress.cidrs ?? []).length === 0 && egress.pods === undefined)
    fail(`${prop} needs cidrs or pods (where the connections go)`);
  if (egress.pods !== undefined) {
    if (Object.keys(egress.pods.labels).length === 0)
      fail(`${prop}.pods.labels needs at least one label (an empty selector is every pod)`);
  }
  return {
    ...(egress.cidrs !== undefined && egress.cidrs.length > 0 ? { cidrs: egress.cidrs } : {}),
    ...(egress.pods !== undefined ? { pods: egress.pods } : {}),
    port: checkPort(`${prop}.port`, egress.port ?? port),
    prop,
  };
}

function secretVolume(name: string, dir: string, secret: SecretKeyProps, file: string) {
  checkDnsSubdomain(`${name}.name`, secret.name);
  const volumeName = name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
  return {
    volume: {
      name: volumeName,
      secret: { secretName: secret.name, items: [{ key: secret.key ?? "ca.crt", path: file }] },
    } satisfies Volume,
    mount: { name: volumeName, mountPath: dir, readOnly: true } satisfies VolumeMount,
  };
}

const fromSecret = (name: string, secret: string, key: string): EnvVar => ({
  name,
  valueFrom: { secretKeyRef: { name: secret, key } },
});

/**
 * Checks the S3 and Redis props (one line naming the prop for each mistake) and turns them into
 * the registry's config sections — typed by the reference's keys — plus the environment, volumes
 * and egress the pods need for them.
 */
export function sharedStorage(s3: S3StorageProps | undefined, redis: RedisProps | undefined): SharedStorage {
  const env: EnvVar[] = [];
  const volumes: Volume[] = [];
  const mounts: VolumeMount[] = [];
  let s3Config: S3DriverConfig | undefined;
  let s3Egress: EgressTarget | undefined;
  let s3Endpoint: string | undefined;
  if (s3 !== undefined) {
    // The reference's bucket naming rules (3-63, lowercase, digits, '.', '-').
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(s3.bucket))
      fail(`storage.s3.bucket ${JSON.stringify(s3.bucket)} is not an S3 bucket name`);
    if (!/^[a-z0-9-]+$/.test(s3.region))
      fail(`storage.s3.region ${JSON.stringify(s3.region)} is not a region name such as us-east-1`);
    let endpoint: URL | undefined;
    if (s3.regionEndpoint !== undefined) {
      try {
        endpoint = new URL(s3.regionEndpoint);
      } catch {
        endpoint = undefined;
      }
      if (
        endpoint === undefined ||
        !["http:", "https:"].includes(endpoint.protocol) ||
        endpoint.pathname !== "/" ||
        endpoint.search !== ""
      )
        fail(
          `storage.s3.regionEndpoint ${JSON.stringify(s3.regionEndpoint)} is not an http(s)://host[:port] URL`,
        );
      if (s3.secure === true && endpoint.protocol === "http:")
        fail("storage.s3.secure is true but storage.s3.regionEndpoint is http://: say which");
    }
    checkInteger("storage.s3.chunkSize", s3.chunkSize, MIN_CHUNK, MAX_COPY);
    checkInteger("storage.s3.multipartCopyThresholdSize", s3.multipartCopyThresholdSize, 0, MAX_COPY);
    const secret = s3.credentialsSecret;
    checkDnsSubdomain("storage.s3.credentialsSecret.name", secret.name);
    env.push(
      fromSecret("REGISTRY_STORAGE_S3_ACCESSKEY", secret.name, secret.accessKeyKey ?? "AWS_ACCESS_KEY_ID"),
      fromSecret(
        "REGISTRY_STORAGE_S3_SECRETKEY",
        secret.name,
        secret.secretKeyKey ?? "AWS_SECRET_ACCESS_KEY",
      ),
    );
    if (s3.caSecret !== undefined) {
      const { volume, mount } = secretVolume("storage.s3.caSecret", S3_CA_DIR, s3.caSecret, "ca.crt");
      volumes.push(volume);
      mounts.push(mount);
      env.push({ name: "NODE_EXTRA_CA_CERTS", value: `${S3_CA_DIR}/ca.crt` });
    }
    const secure = endpoint !== undefined ? endpoint.protocol === "https:" : (s3.secure ?? true);
    const host = endpoint?.hostname ?? `s3.${s3.region}.amazonaws.com`;
    const port = endpoint?.port ? Number(endpoint.port) : secure ? 443 : 80;
    s3Endpoint = `${host}:${port}`;
    if (s3.egress !== undefined) s3Egress = egressTarget("storage.s3.egress", s3.egress, port);
    s3Config = {
      bucket: s3.bucket,
      region: s3.region,
      ...(s3.regionEndpoint !== undefined ? { regionendpoint: s3.regionEndpoint } : {}),
      ...(s3.forcePathStyle !== undefined ? { forcepathstyle: s3.forcePathStyle } : {}),
      ...(s3.secure !== undefined ? { secure: s3.secure } : {}),
      ...(s3.skipVerify !== undefined ? { skipverify: s3.skipVerify } : {}),
      ...(s3.rootDirectory !== undefined ? { rootdirectory: s3.rootDirectory } : {}),
      ...(s3.chunkSize !== undefined ? { chunksize: s3.chunkSize } : {}),
      ...(s3.multipartCopyThresholdSize !== undefined
        ? { multipartcopythresholdsize: s3.multipartCopyThresholdSize }
        : {}),
    };
  }

  let redisConfig: RedisConfig | undefined;
  let redisEgress: EgressTarget | undefined;
  if (redis !== undefined) {
    const port = checkAddr("redis.addr", redis.addr);
    checkInteger("redis.db", redis.db, 0);
    checkDuration("redis.dialTimeout", redis.dialTimeout);
    checkDuration("redis.readTimeout", redis.readTimeout);
    checkDuration("redis.writeTimeout", redis.writeTimeout);
    checkInteger("redis.pool.size", redis.pool?.size, 1);
    checkInteger("redis.pool.maxIdle", redis.pool?.maxIdle, 0);
    checkDuration("redis.pool.maxIdleTime", redis.pool?.maxIdleTime);
    if (redis.passwordSecret !== undefined) {
      checkDnsSubdomain("redis.passwordSecret.name", redis.passwordSecret.name);
      env.push(
        fromSecret(
          "REGISTRY_REDIS_PASSWORD",
          redis.passwordSecret.name,
          redis.passwordSecret.key ?? "password",
        ),
      );
    }
    let rootcas: string[] | undefined;
    if (redis.tls?.caSecret !== undefined) {
      const { volume, mount } = secretVolume(
        "redis.tls.caSecret",
        REDIS_CA_DIR,
        redis.tls.caSecret,
        "ca.crt",
      );
      volumes.push(volume);
      mounts.push(mount);
      rootcas = [`${REDIS_CA_DIR}/ca.crt`];
    }
    if (redis.egress !== undefined) redisEgress = egressTarget("redis.egress", redis.egress, port);
    redisConfig = {
      addrs: [redis.addr],
      ...(redis.db !== undefined ? { db: redis.db } : {}),
      ...(redis.dialTimeout !== undefined ? { dialtimeout: redis.dialTimeout } : {}),
      ...(redis.readTimeout !== undefined ? { readtimeout: redis.readTimeout } : {}),
      ...(redis.writeTimeout !== undefined ? { writetimeout: redis.writeTimeout } : {}),
      ...(redis.pool?.size !== undefined ? { poolsize: redis.pool.size } : {}),
      ...(redis.pool?.maxIdle !== undefined ? { maxidleconns: redis.pool.maxIdle } : {}),
      ...(redis.pool?.maxIdleTime !== undefined ? { connmaxidletime: redis.pool.maxIdleTime } : {}),
      ...(redis.tls !== undefined ? { tls: { enabled: true, ...(rootcas ? { rootcas } : {}) } } : {}),
    };
  }
  return {
    ...(s3Config !== undefined ? { s3: s3Config } : {}),
    ...(redisConfig !== undefined ? { redis: redisConfig } : {}),
    env,
    volumes,
    mounts,
    ...(s3Egress !== undefined ? { s3Egress } : {}),
    ...(redisEgress !== undefined ? { redisEgress } : {}),
    ...(s3Endpoint !== undefined ? { s3Endpoint } : {}),
    ...(redis !== undefined ? { redisAddr: redis.addr } : {}),
  };
}

/**
 * With the NetworkPolicy on, S3 and Redis must each have an egress entry: a registry whose policy
 * blocks its own storage never becomes ready, and synth is the place to say so.
 */
export function requiredEgress(shared: SharedStorage): EgressTarget[] {
  const targets: EgressTarget[] = [];
  if (shared.s3 !== undefined) {
    if (shared.s3Egress === undefined)
      fail(
        `storage.s3.egress is required while the NetworkPolicy is on: the cidrs or pods of ${shared.s3Endpoint}, or the registry cannot reach its bucket`,
      );
    targets.push(shared.s3Egress);
  }
  if (shared.redis !== undefined) {
    if (shared.redisEgress === undefined)
      fail(
        `redis.egress is required while the NetworkPolicy is on: the cidrs or pods of ${shared.redisAddr}, or the registry cannot reach Redis`,
      );
    targets.push(shared.redisEgress);
  }
  return targets;
}
