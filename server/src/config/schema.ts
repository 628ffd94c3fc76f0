import { z } from "zod";

/**
 * The registry's configuration: the reference registry's `config.yml` (the keys this registry
 * implements) plus our own under the same sections. One schema, all defaults here; every other
 * module receives the typed, validated result. Unknown keys are errors, never ignored.
 */

/** A Go-style duration (`30s`, `5m`, `1h30m`), as the reference registry's config writes them. */
const Duration = z
  .string()
  .regex(/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/, "must be a duration such as 30s, 5m or 1h");

/** `host:port`, `:port` or `[v6]:port`; port 0 asks the system for a free port. */
const ListenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$/, "must be host:port or :port")
  // Checked here, so `config check` refuses what `listen` would later refuse in Node's words.
  .refine((a) => Number(a.slice(a.lastIndexOf(":") + 1)) <= 65535, "port must be between 0 and 65535");

const DEFAULT_FILESYSTEM_ROOT = "/var/lib/registry";

const Log = z.strictObject({
  level: z.enum(["error", "warn", "info", "debug"]).default("info"),
  formatter: z.enum(["text", "json", "logstash"]).default("json"),
  fields: z.record(z.string(), z.string()).optional(),
  accesslog: z.strictObject({ disabled: z.boolean().default(false) }).prefault({}),
});

const MiB = 1024 * 1024;
/** S3's bounds on one part of a multipart upload or copy: 5 MiB (except the last) to 5 GiB. */
const S3PartSize = z
  .number()
  .int()
  .min(5 * MiB, "must be at least 5242880 (5 MiB, S3's smallest part)")
  .max(5 * 1024 * MiB, "must be at most 5368709120 (5 GiB, S3's largest part)");

/**
 * `storage.s3`: the reference registry's S3 driver keys (its docs' `storage-drivers/s3.md`), on
 * the AWS SDK v3; the bucket layout is the reference's (`<rootdirectory>/docker/registry/v2/…`).
 * Without `accesskey`/`secretkey` the SDK's standard chain finds credentials (AWS_ACCESS_KEY_ID
 * and AWS_SECRET_ACCESS_KEY, a web identity token, an instance profile).
 */
const S3 = z
  .strictObject({
    bucket: z.string().min(1),
    region: z.string().min(1),
    /** An S3-compatible endpoint (Ceph RGW): `http://host:port`, or `host:port` with `secure` choosing the scheme. */
    regionendpoint: z.string().min(1).optional(),
    /** `http://endpoint/bucket/key` addressing, which Ceph RGW and most S3-compatible stores want. */
    forcepathstyle: z.boolean().default(false),
    accesskey: z.string().min(1).optional(),
    secretkey: z.string().min(1).optional(),
    sessiontoken: z.string().min(1).optional(),
    secure: z.boolean().default(true),
    /** Accept any TLS certificate from the endpoint (tests, self-signed gateways). */
    skipverify: z.boolean().default(false),
    /** The SDK signs with v4 only; `false` (v2 signatures) is refused rather than ignored. */
    v4auth: z.literal(true, { error: "must be true: only v4 signatures are supported" }).default(true),
    encrypt: z.boolean().default(false),
    keyid: z.string().min(1).optional(),
    /** Prefix of every key, as in the reference (leading and trailing `/` ignored). */
    rootdirectory: z.string().default(""),
    /** Bytes buffered per part of an upload (the reference's default: 10 MiB). */
    chunksize: S3PartSize.default(10 * MiB),
    multipartcopychunksize: S3PartSize.default(32 * MiB),
    multipartcopymaxconcurrency: z.number().int().positive().max(1000).default(100),
    /** Objects above this are moved by a multipart copy, at or below it by one CopyObject. */
    multipartcopythresholdsize: z
      .number()
      .int()
      .min(0)
      .max(5 * 1024 * MiB, "must be at most 5368709120 (5 GiB, S3's largest single copy)")
      .default(32 * MiB),
    /** `NONE` sends no storage class (stores that reject the header). */
    storageclass: z.string().min(1).default("STANDARD"),
    objectacl: z.string().min(1).default("private"),
    accelerate: z.boolean().default(false),
    usedualstack: z.boolean().default(false),
  })
  .refine((s) => (s.accesskey === undefined) === (s.secretkey === undefined), {
    message: "set accesskey and secretkey together (or neither, for the AWS environment variables)",
  })
  .refine((s) => s.keyid === undefined || s.encrypt, {
    message: "keyid needs encrypt: true",
  });

const Storage = z
  .strictObject({
    s3: S3.optional(),
    filesystem: z
      .strictObject({
        rootdirectory: z.string().min(1).default(DEFAULT_FILESYSTEM_ROOT),
        maxthreads: z.number().int().min(25).optional(),
      })
      .prefault({}),
    delete: z.strictObject({ enabled: z.boolean().default(false) }).prefault({}),
    cache: z
      .strictObject({
        blobdescriptor: z.enum(["inmemory", "redis"]).optional(),
        blobdescriptorsize: z.number().int().positive().optional(),
      })
      .optional(),
    maintenance: z
      .strictObject({
        uploadpurging: z
          .strictObject({
            enabled: z.boolean().default(true),
            age: Duration.default("168h"),
            interval: Duration.default("24h"),
            dryrun: z.boolean().default(false),
          })
          .optional(),
        readonly: z.strictObject({ enabled: z.boolean().default(false) }).optional(),
      })
      .optional(),
    /**
     * Blob GETs answered with a redirect to a presigned URL of the storage (S3 only). Off unless
     * `disable: false` is written: in air-gapped sites clients often cannot reach the S3 endpoint.
     */
    redirect: z.strictObject({ disable: z.boolean() }).optional(),
  })
  .prefault({ filesystem: {} })
  // `filesystem` always has a value (its defaults); one that differs from them was written.
  .refine((s) => s.s3 === undefined || s.filesystem.rootdirectory === DEFAULT_FILESYSTEM_ROOT, {
    message: "configure one storage driver: storage.filesystem or storage.s3, not both",
  });

const Tls = z.strictObject({
  certificate: z.string().min(1),
  key: z.string().min(1),
  clientcas: z.array(z.string().min(1)).optional(),
  minimumtls: z.enum(["tls1.2", "tls1.3"]).default("tls1.2"),
  ciphersuites: z.array(z.string()).optional(),
});

const Http = z
  .strictObject({
    addr: ListenAddress.default(":5000"),
    host: z.url().optional(),
    /**
     * Serve under this path (registry:2's `http.prefix`, e.g. `/nested/registry/`): normalised
     * to `/nested/registry` ("" for the root).
     */
    prefix: z
      .string()
      .regex(/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/, "must be a URL path starting with /, like /path/")
      .transform((p) => p.replace(/\/+$/, ""))
      .default(""),
    secret: z.string().optional(),
    relativeurls: z.boolean().default(false),
    draintimeout: Duration.optional(),
    headers: z.record(z.string(), z.array(z.string())).optional(),
    tls: Tls.optional(),
    debug: z
      .strictObject({
        addr: ListenAddress.default(":5001"),
        prometheus: z
          .strictObject({
            enabled: z.boolean().default(true),
            path: z.string().startsWith("/").default("/metrics"),
          })
          .prefault({}),
      })
      .prefault({}),
    http2: z.strictObject({ disabled: z.boolean().default(false) }).optional(),
    /** Ours: processes serving :5000; 1 (default) serves everything in one process, 0 = one per CPU. */
    workers: z.number().int().min(0).max(64).default(1),
    /** Ours: the largest manifest accepted, in bytes (the spec asks for at least 4 MiB). */
    maxmanifestbytes: z
      .number()
      .int()
      .min(4 * 1024 * 1024)
      .default(4 * 1024 * 1024),
    /**
     * Ours: connections kept open at once; a new one closes the idlest. Lowered at start so that
     * every connection can also hold a file open within the descriptor limit.
     */
    maxconnections: z.number().int().min(1).default(4096),
    /** Ours: a request body that brings no byte for this long is cut off (its memory freed). */
    bodytimeout: Duration.default("60s"),
    /**
     * Ours: bytes of request bodies held in memory at once across all requests (manifests,
     * charts, small blobs). Past it small blobs stream to disk and the rest is answered 503.
     */
    maxbufferedbytes: z
      .number()
      .int()
      .min(8 * 1024 * 1024)
      .default(256 * 1024 * 1024),
  })
  .prefault({});

const Actions = z.array(z.enum(["pull", "push", "delete", "*"]));
const RepositoryPatterns = z
  .array(z.string().regex(/^[a-z0-9._\-/*]+$/, "must be a repository name pattern"))
  .min(1);

/** Ours: who may pull, push and delete where (see auth/policy.ts). */
const Access = z.strictObject({
  groups: z.record(z.string(), z.array(z.string().min(1))).optional(),
  rules: z
    .array(
      z.strictObject({
        subjects: z
          .array(z.string().regex(/^(\*|user:.+|group:.+)$/, "must be *, user:NAME or group:NAME"))
          .min(1),
        repositories: RepositoryPatterns,
        actions: Actions.min(1),
      }),
    )
    .optional(),
  default: Actions.optional(),
  anonymous: z
    .array(z.strictObject({ repositories: RepositoryPatterns, actions: Actions.min(1) }))
    .optional(),
  admins: z.array(z.string().min(1)).optional(),
});

const Auth = z
  .strictObject({
    htpasswd: z.strictObject({ realm: z.string().min(1), path: z.string().min(1) }).optional(),
    /** Docker token authentication (the reference's keys, plus ours to issue tokens at /token). */
    token: z
      .strictObject({
        realm: z.url(),
        service: z.string().min(1),
        issuer: z.string().min(1),
        rootcertbundle: z.string().min(1).optional(),
        jwks: z.string().min(1).optional(),
        /** Ours: a PEM private key (EC P-256, RSA or Ed25519) to sign tokens at /token with. */
        signingkey: z.string().min(1).optional(),
        /** Ours: how long an issued token is valid. */
        expiration: Duration.default("5m"),
      })
      .refine((t) => t.signingkey !== undefined || t.rootcertbundle !== undefined || t.jwks !== undefined, {
        message: "needs signingkey (to issue tokens), rootcertbundle or jwks (to trust an issuer)",
      })
      .optional(),
    access: Access.optional(),
    /** Ours: brute-force protection for logins. */
    limits: z
      .strictObject({
        clientfailures: z.number().int().positive().default(20),
        userfailures: z.number().int().positive().default(10),
        window: Duration.default("5m"),
      })
      .prefault({}),
  })
  .refine((auth) => auth.access === undefined || auth.htpasswd !== undefined || auth.token !== undefined, {
    message: "access rules need a way to authenticate users (auth.htpasswd or auth.token)",
    path: ["access"],
  });

/** An upstream's URL: credentials in it would leak into logs, reports and status (use `passwordfile`). */
const UpstreamUrl = z
  .url()
  .refine((u) => !URL.canParse(u) || (new URL(u).username === "" && new URL(u).password === ""), {
    message: "must not hold a user or password; set username and passwordfile instead",
  });
/**
 * Ours: token realms (URLs, or origins) other than the upstream's own host that may receive its
 * credentials, as an upstream's 401 challenge names them (Docker Hub's `https://auth.docker.io`).
 */
const TokenRealms = z.array(z.url()).optional();

const Proxy = z
  .strictObject({
    remoteurl: UpstreamUrl,
    username: z.string().optional(),
    password: z.string().optional(),
    /** Cached content not pulled for this long is dropped; "0" keeps it forever (as the reference). */
    ttl: z.union([Duration, z.literal("0"), z.literal(0).transform(() => "0" as const)]).default("168h"),
    /** Ours: a file holding the password (a mounted Secret), instead of `password` in the config. */
    passwordfile: z.string().min(1).optional(),
    /** Ours: how long a tag checked against the upstream is served without checking again. */
    revalidate: Duration.default("30s"),
    tokenrealms: TokenRealms,
  })
  .refine((p) => p.password === undefined || p.passwordfile === undefined, {
    message: "set password or passwordfile, not both",
  });

const Health = z.strictObject({
  storagedriver: z
    .strictObject({
      enabled: z.boolean().default(true),
      interval: Duration.default("10s"),
      threshold: z.number().int().positive().default(3),
    })
    .optional(),
});

/** Ours: the append-only audit trail of pushes, pulls, deletes, failed logins and denials. */
const Audit = z
  .strictObject({ file: z.string().min(1).optional(), stdout: z.boolean().default(false) })
  .refine((a) => a.file !== undefined || a.stdout, { message: "set file, stdout: true, or both" });

/**
 * Ours: how the registry reaches the upstream registries that sync copies from (the hosts in the
 * sync manifest's `source` references). A host not listed is reached over HTTPS, anonymously.
 */
const Sync = z.strictObject({
  /**
   * The sync manifest (the mounted `registry-sync-manifest` ConfigMap) whose source → target map
   * answers nodes that pull upstream names through this registry; followed when it changes.
   */
  manifest: z.string().min(1).optional(),
  upstreams: z
    .array(
      z.strictObject({
        /** The host as sources name it: `docker.io`, `gcr.io`, `mirror.example:5000`. */
        registry: z.string().regex(/^[a-zA-Z0-9.-]+(:\d+)?$/, "must be a host or host:port"),
        /** Where to reach it instead (an air-gapped site's mirror); default https://<registry>. */
        url: UpstreamUrl.optional(),
        username: z.string().min(1).optional(),
        /** A file holding the password (a mounted Secret), so it never sits in the config. */
        passwordfile: z.string().min(1).optional(),
        /** PEM bundle of the CAs that sign the upstream's certificate. */
        ca: z.string().min(1).optional(),
        tokenrealms: TokenRealms,
      }),
    )
    .default([]),
});

/** Webhook notifications of pushes, pulls, deletes and mounts, as the reference registry sends them. */
const Notifications = z.strictObject({
  events: z.strictObject({ includereferences: z.boolean().default(false) }).optional(),
  endpoints: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        disabled: z.boolean().default(false),
        url: z.url(),
        headers: z.record(z.string(), z.array(z.string())).default({}),
        timeout: Duration.default("1s"),
        /** Consecutive failures after which the endpoint is backed off. */
        threshold: z.number().int().positive().default(10),
        backoff: Duration.default("1s"),
        ignoredmediatypes: z.array(z.string()).default([]),
        ignore: z
          .strictObject({
            mediatypes: z.array(z.string()).default([]),
            actions: z.array(z.enum(["pull", "push", "delete", "mount"])).default([]),
          })
          .prefault({}),
      }),
    )
    .default([]),
});

/**
 * Shared state for several replicas (see coordination/): the reference's `redis` keys. `addr`
 * (2.x) or `addrs` (3.x, one address: no Redis Cluster); the pool keys are accepted for
 * compatibility and change nothing (ioredis pipelines all commands over one connection).
 */
const HostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "must be host:port");
const RedisConfig = z
  .strictObject({
    addr: HostPort.optional(),
    addrs: z.array(HostPort).min(1).max(1, "one address: Redis Cluster is not supported").optional(),
    username: z.string().min(1).optional(),
    password: z.string().optional(),
    /** Ours: a file holding the password (a mounted Secret), instead of `password` in the config. */
    passwordfile: z.string().min(1).optional(),
    db: z.number().int().min(0).default(0),
    dialtimeout: Duration.default("5s"),
    readtimeout: Duration.default("3s"),
    writetimeout: Duration.default("3s"),
    pool: z
      .strictObject({
        maxidle: z.number().int().min(0).optional(),
        maxactive: z.number().int().min(0).optional(),
        idletimeout: Duration.optional(),
      })
      .optional(),
    poolsize: z.number().int().min(0).optional(),
    maxidleconns: z.number().int().min(0).optional(),
    connmaxidletime: Duration.optional(),
    tls: z
      .strictObject({
        /** 2.x's switch; 3.x turns TLS on by giving any of the other keys. */
        enabled: z.boolean().optional(),
        certificate: z.string().min(1).optional(),
        key: z.string().min(1).optional(),
        rootcas: z.array(z.string().min(1)).optional(),
      })
      .refine((t) => (t.certificate === undefined) === (t.key === undefined), {
        message: "certificate and key go together",
      })
      .optional(),
  })
  .refine((r) => (r.addr === undefined) !== (r.addrs === undefined), {
    message: "set addr (or addrs), not both",
  })
  .refine((r) => r.password === undefined || r.passwordfile === undefined, {
    message: "set password or passwordfile, not both",
  });
export type RedisSettings = z.output<typeof RedisConfig>;

export const ConfigSchema = z.strictObject({
  version: z
    .union([z.string(), z.number()], { error: "is required and must be 0.1" })
    .transform(String)
    .refine((v) => v === "0.1", "must be 0.1"),
  log: Log.prefault({}),
  storage: Storage,
  http: Http,
  auth: Auth.optional(),
  proxy: Proxy.optional(),
  health: Health.optional(),
  audit: Audit.optional(),
  sync: Sync.prefault({}),
  notifications: Notifications.optional(),
  redis: RedisConfig.optional(),
});

export type Config = z.output<typeof ConfigSchema>;
/** What a config file may contain, before defaults. */
export type ConfigInput = z.input<typeof ConfigSchema>;

/** The embedded default: what `serve` runs without `--config` (the README's quick start). */
export const EMBEDDED_DEFAULT: ConfigInput = {
  version: "0.1",
  storage: { filesystem: { rootdirectory: "./data" }, delete: { enabled: true } },
  http: { addr: ":5000", debug: { addr: ":5001" } },
};
