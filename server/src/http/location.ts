import type { Context } from "koa";
import type { Config } from "../config/schema.js";

/**
 * How `Location` headers begin, as the reference registry decides it: the configured `http.host`;
 * else, unless `http.relativeurls`, the scheme and Host of the request; else nothing (relative).
 * Then `http.prefix`, the path the registry is served under.
 */
export function locationBaseFor(http: Config["http"]): (ctx: Context) => string {
  const prefix = http.prefix;
  if (http.host !== undefined) {
    const base = `${http.host.replace(/\/+$/, "")}${prefix}`;
    return () => base;
  }
  if (http.relativeurls) return () => prefix;
  return (ctx) => `${ctx.host === "" ? "" : `${ctx.protocol}://${ctx.host}`}${prefix}`;
}
