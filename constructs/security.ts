import type { PodSecurityContext, SecurityContext } from "cdk8s-plus-27/lib/imports/k8s.js";

/**
 * The security posture every pod of the registry's stack runs with — the registry and its
 * CronJobs alike: the image's non-root user, RuntimeDefault seccomp, a read-only root
 * filesystem, no privilege escalation, no capabilities. One definition, so they cannot drift.
 */
export function podSecurityContext(runAs: number, options: { fsGroup?: boolean } = {}): PodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: runAs,
    runAsGroup: runAs,
    // Chown the volume only when its root is not ours yet: a recursive chown of a large blob tree
    // on every start would delay each restart by minutes.
    ...(options.fsGroup ? { fsGroup: runAs, fsGroupChangePolicy: "OnRootMismatch" } : {}),
    seccompProfile: { type: "RuntimeDefault" },
  };
}

export function containerSecurityContext(): SecurityContext {
  return {
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    runAsNonRoot: true,
    capabilities: { drop: ["ALL"] },
  };
}
