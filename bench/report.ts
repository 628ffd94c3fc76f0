/**
 * The bench's output: one table per group (ours / reference / ratio), the per-group peak RSS of
 * both servers, and a final list of issue targets marked MET or MISSED. Every figure is measured in
 * the same run with the same client for both servers; nothing here rounds in our favour.
 */
import { mkdirSync, writeFileSync } from "node:fs";

export interface Row {
  benchmark: string;
  unit: string;
  ours: number;
  reference: number;
  target?: string;
  pass?: boolean;
}

interface GroupRecord {
  name: string;
  title: string;
  rows: Row[];
  /** Peak RSS (bytes) of each side during the group, when measured. */
  rss?: { ours: number; reference: number };
}

interface Target {
  name: string;
  /** undefined: the group that measures it was not run. */
  met: boolean | undefined;
  detail: string;
}

export const RSS_TARGET = "peak RSS below the reference's over the whole benchmark";

const groups: GroupRecord[] = [];
const targets = new Map<string, Target>();
let current: GroupRecord | undefined;

const COLUMNS = { benchmark: 60, value: 11, unit: 6, ratio: 7 };

export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(2);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  // Counts are odd wherever the bench takes a median; for an even count this is the upper middle.
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Starts a group's table; rows recorded until `endGroup` belong to it. */
export function beginGroup(name: string, title: string): void {
  current = { name, title, rows: [] };
  groups.push(current);
  console.log(`\n== ${name}: ${title}`);
  console.log(
    `${"benchmark".padEnd(COLUMNS.benchmark)} ${"ours".padStart(COLUMNS.value)} ${"reference".padStart(COLUMNS.value)} ${"unit".padEnd(COLUMNS.unit)} ${"ratio".padStart(COLUMNS.ratio)}  target`,
  );
}

export function endGroup(rss?: { ours: number; reference: number }): void {
  if (current === undefined) return;
  // Nothing sampled: the group ran servers of its own that the meter does not know about.
  if (rss && (rss.ours > 0 || rss.reference > 0)) {
    current.rss = rss;
    record({
      benchmark: `peak RSS during this group (${current.name})`,
      unit: "MiB",
      ours: rss.ours / 2 ** 20,
      reference: rss.reference / 2 ** 20,
      target: "< ref",
      pass: rss.ours < rss.reference,
    });
  }
  current = undefined;
}

/** One line of the current group's table (also usable outside a group). */
export function record(row: Row): void {
  (current?.rows ?? ungrouped()).push(row);
  const ratio = row.reference > 0 ? row.ours / row.reference : NaN;
  const verdict = row.pass === undefined ? "" : row.pass ? "  ok" : "  MISSED";
  console.log(
    `${row.benchmark.padEnd(COLUMNS.benchmark)} ${fmt(row.ours).padStart(COLUMNS.value)} ${fmt(row.reference).padStart(COLUMNS.value)} ${row.unit.padEnd(COLUMNS.unit)} ${(Number.isFinite(ratio) ? ratio.toFixed(2) : "-").padStart(COLUMNS.ratio)}  ${row.target ?? ""}${verdict}`,
  );
}

function ungrouped(): Row[] {
  let group = groups.find((g) => g.name === "");
  if (group === undefined) {
    group = { name: "", title: "", rows: [] };
    groups.push(group);
  }
  return group.rows;
}

/** A free-form line inside the current table (breakdowns, notes). */
export function note(text: string): void {
  console.log(`   ${text}`);
}

/**
 * Declares an issue target; `met` undefined until a group measures it, so a target whose group
 * was not selected is printed as "not run" rather than silently dropped.
 */
export function declareTarget(name: string): void {
  if (!targets.has(name)) targets.set(name, { name, met: undefined, detail: "not run" });
}

export function settleTarget(name: string, met: boolean, detail: string): void {
  targets.set(name, { name, met, detail });
}

/** The summary: every issue target MET/MISSED, the overall peak RSS, and the per-row target count. */
export function summary(meta: Record<string, unknown>): number {
  const measured = groups.filter((g) => g.rss !== undefined);
  if (measured.length > 0) {
    const peak = (side: "ours" | "reference") => Math.max(...measured.map((g) => g.rss![side]));
    const ours = peak("ours");
    const reference = peak("reference");
    const above = measured.filter((g) => g.rss!.ours >= g.rss!.reference).map((g) => g.name);
    console.log(
      `\noverall peak RSS over ${measured.map((g) => g.name).join(", ")}: ours ${fmt(ours / 2 ** 20)} MiB, reference ${fmt(reference / 2 ** 20)} MiB — ours ${ours < reference ? "stays below" : "does NOT stay below"} the reference's; ours is at or above it in ${above.length} of ${measured.length} groups${above.length ? ` (${above.join(", ")})` : ""}`,
    );
    settleTarget(
      RSS_TARGET,
      ours < reference,
      `ours ${fmt(ours / 2 ** 20)} MiB, reference ${fmt(reference / 2 ** 20)} MiB (max over groups ${measured.map((g) => g.name).join(", ")})`,
    );
  }
  if (targets.size > 0) {
    console.log("\nissue 12 targets:");
    for (const t of targets.values()) {
      const mark = t.met === undefined ? "NOT RUN" : t.met ? "MET" : "MISSED";
      console.log(`  ${mark.padEnd(7)}  ${t.name}: ${t.detail}`);
    }
  }
  const rows = groups.flatMap((g) => g.rows);
  const missed = rows.filter((r) => r.pass === false);
  console.log(
    `\n${rows.filter((r) => r.pass).length} row targets met, ${missed.length} missed${missed.length ? `: ${missed.map((r) => r.benchmark).join("; ")}` : ""}`,
  );
  mkdirSync(".bench", { recursive: true });
  writeFileSync(
    ".bench/results.json",
    JSON.stringify(
      { ...meta, at: new Date().toISOString(), groups, targets: [...targets.values()] },
      null,
      2,
    ),
  );
  return missed.length;
}
