import { after } from "node:test";
import { testBucket, type TestBucket } from "../helpers/ceph.js";
import { describeReplicas } from "./replicas-suite.js";

// The scale-out the issue asks for: replicas sharing one bucket on a real Ceph RGW and one Redis.
// The same suite runs over a shared filesystem root in replicas.test.ts.
const buckets: TestBucket[] = [];
after(async () => {
  await Promise.all(buckets.map((b) => b.remove()));
});

describeReplicas({
  label: "one S3 bucket on Ceph RGW",
  prepare: async () => {
    const bucket = await testBucket("replicas");
    buckets.push(bucket);
    return { storage: { s3: bucket.config() } };
  },
});
