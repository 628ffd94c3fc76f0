import { describeReplicas, sharedFilesystem } from "./replicas-suite.js";

// Three `serve` processes over one filesystem root stand in for replicas on shared storage; the
// suite takes the storage as a parameter (an S3 variant passes `storage.s3` for one bucket).
describeReplicas(sharedFilesystem);
