/**
 * The alert rules: valid for promtool, firing and staying quiet on synthetic series as intended,
 * and written only with metric names the registry really exports (checked on a running server).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { stringify } from "yaml";
import { registryAlerts, registryDashboard } from "../../constructs/index.js";
import { METRICS } from "../../server/src/index.js";
import { startRegistry, tempDir } from "../helpers/registry.js";

const JOB = "local-registry";
const KNOWN: readonly string[] = Object.values(METRICS);
/** `x_bucket`, `x_sum`, `x_count` of a histogram `x` name the histogram; `repository_count` stays itself. */
const histogramBase = (name: string) => {
  const base = name.replace(/_(bucket|sum|count)$/, "");
  return !KNOWN.includes(name) && KNOWN.includes(base) ? base : name;
};
const rules = registryAlerts({ job: JOB });
const dashboard = registryDashboard(JOB);
/** Grafana's variables, replaced by what they stand for at query time. */
const dashboardExprs = dashboard.panels.flatMap((p) =>
  p.targets.map((t) => t.expr.replace(/\$__(rate_interval|range)/g, "5m")),
);

function promtool(...args: string[]) {
  const result = spawnSync("promtool", args, { encoding: "utf8" });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

function writeRules(): string {
  const dir = tempDir();
  writeFileSync(join(dir, "rules.yml"), stringify({ groups: [{ name: "local-registry", rules }] }));
  return dir;
}

describe("registry alerts", () => {
  it("pass promtool check rules", () => {
    const dir = writeRules();
    const result = promtool("check", "rules", join(dir, "rules.yml"));
    assert.equal(result.status, 0, result.output);
  });

  it("fire on the series they are about and stay quiet otherwise (promtool test rules)", () => {
    const dir = writeRules();
    const s = (series: string) => `${series.replace("{", `{job="${JOB}",instance="r:5001",`)}`;
    const tests = [
      {
        interval: "1m",
        input_series: [{ series: s("up{}"), values: "1 1 0 0 0 0 0" }],
        alert_rule_test: [
          { eval_time: "1m", alertname: "RegistryDown", exp_alerts: [] },
          {
            eval_time: "5m",
            alertname: "RegistryDown",
            exp_alerts: [
              {
                exp_labels: { severity: "critical", job: JOB, instance: "r:5001" },
                exp_annotations: {
                  summary: "Registry is down",
                  description: "Prometheus cannot scrape r:5001.",
                },
              },
            ],
          },
        ],
      },
      {
        // No target at all (the pod is Pending): `up` has no series, and the alert still fires.
        interval: "1m",
        input_series: [{ series: `up{job="other",instance="o:1"}`, values: "1x10" }],
        alert_rule_test: [
          {
            eval_time: "5m",
            alertname: "RegistryDown",
            exp_alerts: [
              {
                exp_labels: { severity: "critical", job: JOB },
                exp_annotations: {
                  summary: "Registry is down",
                  description:
                    "Prometheus has no scrape target for the registry (pod not running, or no ServiceMonitor match).",
                },
              },
            ],
          },
        ],
      },
      {
        // Up all along: quiet.
        interval: "1m",
        input_series: [{ series: s("up{}"), values: "1x10" }],
        alert_rule_test: [
          { eval_time: "8m", alertname: "RegistryDown", exp_alerts: [] },
          { eval_time: "8m", alertname: "RegistryReplicaDown", exp_alerts: [] },
        ],
      },
      {
        // Three replicas: one goes down at 2m, the rest at 10m. One down is a warning (the
        // others serve); all down is the registry down, for each of them.
        interval: "1m",
        input_series: ["a", "b", "c"].map((r) => ({
          series: `up{job="${JOB}",instance="${r}:5001"}`,
          values: r === "a" ? "1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0" : "1 1 1 1 1 1 1 1 1 1 0 0 0 0 0 0 0",
        })),
        alert_rule_test: [
          { eval_time: "8m", alertname: "RegistryDown", exp_alerts: [] },
          {
            eval_time: "8m",
            alertname: "RegistryReplicaDown",
            exp_alerts: [
              {
                exp_labels: { severity: "warning", job: JOB, instance: "a:5001" },
                exp_annotations: {
                  summary: "A registry replica is down",
                  description:
                    "Prometheus cannot scrape a:5001; the other replicas serve. Its node, or its start (S3, Redis), is the place to look.",
                },
              },
            ],
          },
          {
            eval_time: "14m",
            alertname: "RegistryDown",
            exp_alerts: ["a", "b", "c"].map((r) => ({
              exp_labels: { severity: "critical", job: JOB, instance: `${r}:5001` },
              exp_annotations: {
                summary: "Registry is down",
                description: `Prometheus cannot scrape ${r}:5001.`,
              },
            })),
          },
          { eval_time: "14m", alertname: "RegistryReplicaDown", exp_alerts: [] },
        ],
      },
      {
        interval: "1m",
        input_series: [
          { series: s(`${METRICS.httpRequestsTotal}{status="200"}`), values: "0+80x20" },
          { series: s(`${METRICS.httpRequestsTotal}{status="500"}`), values: "0+20x20" },
          { series: s(`${METRICS.httpRequestsTotal}{status="404"}`), values: "0+0x20" },
        ],
        alert_rule_test: [
          {
            eval_time: "15m",
            alertname: "RegistryHighErrorRate",
            exp_alerts: [
              {
                exp_labels: { severity: "warning", job: JOB },
                exp_annotations: {
                  summary: "High error rate on registry",
                  description: "20% of requests fail with 5xx.",
                },
              },
            ],
          },
        ],
      },
      {
        interval: "1m",
        input_series: [
          { series: s(`${METRICS.httpRequestsTotal}{status="200"}`), values: "0+99x20" },
          { series: s(`${METRICS.httpRequestsTotal}{status="503"}`), values: "0+1x20" },
        ],
        alert_rule_test: [{ eval_time: "15m", alertname: "RegistryHighErrorRate", exp_alerts: [] }],
      },
      {
        interval: "1m",
        input_series: [
          { series: s(`${METRICS.storageCapacityBytes}{}`), values: "1000x30" },
          { series: s(`${METRICS.storageFreeBytes}{}`), values: "500x5 50x25" },
        ],
        alert_rule_test: [
          { eval_time: "5m", alertname: "RegistryStorageFull", exp_alerts: [] },
          {
            eval_time: "20m",
            alertname: "RegistryStorageFull",
            exp_alerts: [
              {
                exp_labels: { severity: "warning", job: JOB, instance: "r:5001" },
                exp_annotations: {
                  summary: "Registry storage is low",
                  description: "5% of the registry volume is free.",
                },
              },
            ],
          },
        ],
      },
      {
        interval: "1m",
        input_series: [
          {
            series: s(`${METRICS.httpRequestDurationSeconds}_bucket{route="manifest",method="GET",le="1"}`),
            values: "0x30",
          },
          {
            series: s(`${METRICS.httpRequestDurationSeconds}_bucket{route="manifest",method="GET",le="2.5"}`),
            values: "0+10x30",
          },
          {
            series: s(
              `${METRICS.httpRequestDurationSeconds}_bucket{route="manifest",method="GET",le="+Inf"}`,
            ),
            values: "0+10x30",
          },
          {
            series: s(`${METRICS.httpRequestDurationSeconds}_bucket{route="blob",method="GET",le="+Inf"}`),
            values: "0+10x30",
          },
        ],
        alert_rule_test: [
          {
            eval_time: "20m",
            alertname: "RegistryHighLatency",
            exp_alerts: [
              {
                exp_labels: { severity: "warning" },
                exp_annotations: {
                  summary: "Registry is slow",
                  description: "p99 of manifest requests is 2.485s.",
                },
              },
            ],
          },
        ],
      },
      {
        interval: "1m",
        input_series: [
          {
            series: s(
              `${METRICS.httpRequestDurationSeconds}_bucket{route="manifest",method="GET",le="0.005"}`,
            ),
            values: "0+100x30",
          },
          {
            series: s(
              `${METRICS.httpRequestDurationSeconds}_bucket{route="manifest",method="GET",le="+Inf"}`,
            ),
            values: "0+100x30",
          },
        ],
        alert_rule_test: [{ eval_time: "20m", alertname: "RegistryHighLatency", exp_alerts: [] }],
      },
      ...(["sync", "gc", "backup"] as const).flatMap((task) => {
        const prefix = { sync: "RegistrySync", gc: "RegistryGarbageCollection", backup: "RegistryBackup" }[
          task
        ];
        const title = { sync: "Image sync", gc: "Garbage collection", backup: "Backup" }[task];
        const staleHours = task === "gc" ? 194 : 26;
        const success = (values: string) => ({
          series: s(`${METRICS.taskLastRunSuccess}{task="${task}"}`),
          values,
        });
        const lastSuccess = (values: string) => ({
          series: s(`${METRICS.taskLastSuccessTimestampSeconds}{task="${task}"}`),
          values,
        });
        return [
          {
            interval: "1m",
            input_series: [success("1 1 0 0 0 0 0 0 0 0 0")],
            alert_rule_test: [
              { eval_time: "3m", alertname: `${prefix}Failing`, exp_alerts: [] },
              {
                eval_time: "10m",
                alertname: `${prefix}Failing`,
                exp_alerts: [
                  {
                    exp_labels: { severity: "warning", job: JOB, instance: "r:5001", task },
                    exp_annotations: {
                      summary: `${title} failed`,
                      description: `The last ${task} run failed; \`curl /v2/_neam/status\` or the CronJob's logs say why.`,
                    },
                  },
                ],
              },
            ],
          },
          {
            interval: "1m",
            input_series: [success("1x20")],
            alert_rule_test: [{ eval_time: "15m", alertname: `${prefix}Failing`, exp_alerts: [] }],
          },
          {
            // Last success at time 0, never again: stale once staleHours (and the 15m hold) have passed.
            interval: "5m",
            input_series: [lastSuccess(`0x${(staleHours + 5) * 12}`)],
            alert_rule_test: [
              { eval_time: `${staleHours - 1}h`, alertname: `${prefix}Stale`, exp_alerts: [] },
              {
                eval_time: `${staleHours + 2}h`,
                alertname: `${prefix}Stale`,
                exp_alerts: [
                  {
                    exp_labels: { severity: "warning", job: JOB, instance: "r:5001", task },
                    exp_annotations: {
                      summary: `${title} has not succeeded for ${staleHours} hours`,
                      description: `The last successful ${task} run was ${task === "gc" ? "8d 4h 0m 0s" : "1d 4h 0m 0s"} ago; check the CronJob.`,
                    },
                  },
                ],
              },
            ],
          },
          {
            // Succeeding all the time: never stale.
            interval: "5m",
            input_series: [lastSuccess(`0+300x${(staleHours + 5) * 12}`)],
            alert_rule_test: [
              { eval_time: `${staleHours + 2}h`, alertname: `${prefix}Stale`, exp_alerts: [] },
            ],
          },
        ];
      }),
      {
        // A certificate valid for 20 days is fine; one renewed to expire in 10 days is not.
        interval: "1m",
        input_series: [
          {
            series: s(`${METRICS.tlsCertificateExpiryTimestampSeconds}{}`),
            values: `${20 * 86400}x120 ${10 * 86400}x240`,
          },
        ],
        alert_rule_test: [
          { eval_time: "1h", alertname: "RegistryCertificateExpiringSoon", exp_alerts: [] },
          {
            eval_time: "4h",
            alertname: "RegistryCertificateExpiringSoon",
            exp_alerts: [
              {
                exp_labels: { severity: "warning", job: JOB, instance: "r:5001" },
                exp_annotations: {
                  summary: "Registry certificate expires soon",
                  description:
                    "The certificate served by r:5001 expires in 9d 20h 0m 0s; cert-manager has not renewed it, or the registry cannot read the renewal.",
                },
              },
            ],
          },
        ],
      },
    ];
    writeFileSync(
      join(dir, "tests.yml"),
      stringify({ rule_files: ["rules.yml"], evaluation_interval: "1m", tests }),
    );
    const result = promtool("test", "rules", join(dir, "tests.yml"));
    assert.equal(result.status, 0, result.output);
  });

  it("use only metric names the server exports (read from a running registry's /metrics)", async () => {
    const used = new Set<string>();
    for (const expr of [...rules.map((r) => r.expr), ...dashboardExprs]) {
      for (const match of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)) used.add(histogramBase(match[1]!));
    }
    used.delete("up"); // Prometheus's own
    const registry = await startRegistry();
    try {
      await fetch(`${registry.url}/v2/`);
      const text = await (await fetch(`${registry.debugUrl}/metrics`)).text();
      const exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
      for (const name of used) {
        assert.ok(
          Object.values(METRICS).includes(name as never),
          `${name} is not in server/src/metrics/names.ts`,
        );
        assert.ok(exported.has(name), `${name} is not on the running registry's /metrics`);
      }
      assert.ok(used.size >= 8);
    } finally {
      await registry.stop();
    }
  });

  it("dashboard: every query parses (promtool), and it is the guide's 'Local Registry Overview'", () => {
    const dir = tempDir();
    const recording = dashboardExprs.map((expr, i) => ({ record: `dashboard:query_${i}`, expr }));
    writeFileSync(
      join(dir, "dashboard.yml"),
      stringify({ groups: [{ name: "dashboard", rules: recording }] }),
    );
    const result = promtool("check", "rules", join(dir, "dashboard.yml"));
    assert.equal(result.status, 0, result.output);
    assert.equal(dashboard.title, "Local Registry Overview");
    const titles = dashboard.panels.map((p) => p.title).join(" | ");
    for (const topic of [
      "Availability",
      "Requests",
      "Latency",
      "Error",
      "Storage",
      "Repositories",
      "sync",
      "garbage collection",
      "Certificate",
    ])
      assert.match(titles, new RegExp(topic));
    assert.equal(
      new Set(dashboard.panels.map((p) => p.id)).size,
      dashboard.panels.length,
      "panel ids are unique",
    );
  });
});
