import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.js";
import { restoreArchive } from "../backup/restore.js";
import { adminDownload, PASSWORD_ENV, USERNAME_ENV } from "./admin-client.js";

export const BACKUP_USAGE = `  backup --output FILE [--url URL] [--ca FILE]
                                 a consistent tar.gz of the running registry's data, taken online;
                                 credentials from ${USERNAME_ENV} / ${PASSWORD_ENV}
  restore --input FILE --config FILE [--force]
                                 restore a backup (ours, or the guide's tar of the root) into the
                                 storage of FILE's config, with the registry stopped; blobs are verified
`;

export async function backupCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      output: { type: "string" },
      url: { type: "string", default: "http://localhost:5000" },
      ca: { type: "string" },
    },
  });
  if (values.output === undefined) throw new Error("backup needs --output FILE");
  const bytes = await adminDownload(
    {
      url: values.url,
      username: process.env[USERNAME_ENV],
      password: process.env[PASSWORD_ENV],
      caFile: values.ca,
    },
    "/v2/_neam/backup",
    values.output,
  );
  process.stdout.write(`backup: ${bytes} bytes written to ${values.output}\n`);
  return 0;
}

export async function restoreCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      input: { type: "string" },
      config: { type: "string" },
      force: { type: "boolean", default: false },
    },
  });
  if (values.input === undefined) throw new Error("restore needs --input FILE");
  const config = loadConfig(values.config);
  const root = config.storage.filesystem.rootdirectory;
  const report = await restoreArchive(root, values.input, { force: values.force });
  process.stdout.write(
    `restore: ${report.files} files, ${report.blobs} blobs (${report.bytes} bytes) verified and restored into ${root}\n`,
  );
  return 0;
}
