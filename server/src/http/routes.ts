import type { Context } from "koa";

export type Handler = (ctx: Context, params: string[]) => Promise<void> | void;

export interface Route {
  /** Metric label: the route's shape, never the raw path. */
  readonly name: string;
  readonly pattern: RegExp;
  readonly methods: Partial<Record<string, Handler>>;
}

export interface RouteMatch {
  readonly route: Route;
  /** Undefined when the path matches but the method does not (405). */
  readonly handler?: Handler;
  readonly params: string[];
}

export type Matcher = (path: string, method: string) => RouteMatch | undefined;

/** Resolves a request to the first route whose pattern matches the raw path. */
export function matcher(routes: readonly Route[]): Matcher {
  return (path, method) => {
    for (const route of routes) {
      const found = route.pattern.exec(path);
      if (found === null) continue;
      return { route, handler: route.methods[method], params: found.slice(1) };
    }
    return undefined;
  };
}

/** A query parameter's first value; an empty one counts as absent. */
export function queryValue(ctx: Context, key: string): string | undefined {
  const value = ctx.query[key];
  if (Array.isArray(value)) return value[0];
  return value === undefined || value === "" ? undefined : value;
}
