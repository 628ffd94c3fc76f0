import { readFileSync } from "node:fs";

/** One fenced code block of README.md, with the `##` section it is in. */
export interface ReadmeBlock {
  readonly lang: string;
  readonly section: string;
  readonly code: string;
  readonly line: number;
}

export function readmeBlocks(path: string): ReadmeBlock[] {
  const blocks: ReadmeBlock[] = [];
  let section = "";
  let open: { lang: string; line: number; lines: string[] } | undefined;
  readFileSync(path, "utf8")
    .split("\n")
    .forEach((text, i) => {
      if (open === undefined) {
        if (text.startsWith("## ")) section = text.slice(3).trim();
        const fence = /^```(\S*)/.exec(text);
        if (fence) open = { lang: fence[1]!, line: i + 1, lines: [] };
      } else if (text.startsWith("```")) {
        blocks.push({ lang: open.lang, section, code: open.lines.join("\n"), line: open.line });
        open = undefined;
      } else {
        open.lines.push(text);
      }
    });
  return blocks;
}

/** The commands of a shell block: continuation lines joined, comments and blank lines dropped. */
export function shellCommands(code: string): string[] {
  return code
    .replace(/\\\n\s*/g, " ")
    .split("\n")
    .map((line) => line.replace(/(^|\s)#.*$/, "").trim())
    .filter((line) => line !== "");
}
