import { useEffect, useState } from "preact/hooks";

// The route: the part of the location hash before "?", and its query.
export interface Route {
  page: string;
  query: URLSearchParams;
}

function currentRoute(): Route {
  const hash = window.location.hash.replace(/^#\/?/, "");
  const [page, query] = hash.split("?", 2);
  return { page: page || "topics", query: new URLSearchParams(query ?? "") };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const changed = () => setRoute(currentRoute());
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}

export function link(page: string, query: Record<string, string> = {}): string {
  const search = new URLSearchParams(query).toString();
  return `#/${page}${search ? `?${search}` : ""}`;
}

// Calls `load` now and every `everyMs` (while the page shows), keeping its last answer
// and the message of its last failure.
export function usePoll<T>(load: () => Promise<T>, everyMs: number, deps: unknown[]): [T | null, string | null] {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    let timer: number | undefined;
    const run = async () => {
      try {
        const answer = await load();
        if (live) {
          setData(answer);
          setError(null);
        }
      } catch (exc) {
        if (live) setError(exc instanceof Error ? exc.message : String(exc));
      }
      if (live && everyMs > 0) timer = window.setTimeout(run, everyMs);
    };
    void run();
    return () => {
      live = false;
      window.clearTimeout(timer);
    };
  }, deps);
  return [data, error];
}
