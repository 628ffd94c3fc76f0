import type { Context } from "koa";
import type { Config } from "../config/schema.js";

/**
 * How `Location` headers begin, as the reference registry decides it: the configured `http.host`;
 * else, unless `http.relativeurls`, the scheme and Host of the request; else nothing (relative).
 */
export function locationBaseFor(http: Config["http"]): (ctx: Context) => string {
  if (http.host !== undefined) {
    const base = http.host.replace(/\/+$/, "");
    return () => base;
  }
  if (http.relativeurls) return () => "";
  return (ctx) => (ctx.host === "" ? "" : `${ctx.protocol}://${ctx.host}`);
}
