import { useEffect, useMemo, useState } from "preact/hooks";
import { keyText, valueText, type ApiRecord } from "../api";
import { link } from "../hooks";

// The records kept on the page: the newest, at most this many.
const KEPT_MAX = 500;

// The live tail of a topic or a pattern (/v1/console/tail, Server-Sent Events), with a
// filter over what arrives: text that the topic, key, value or headers must contain.
export function TailPage({ query }: { query: URLSearchParams }) {
  const pattern = query.get("pattern") ?? "";
  const asked = query.get("start");
  const start = asked === "earliest" || asked === "recent" ? asked : "latest";
  const [draft, setDraft] = useState(pattern);
  const [filter, setFilter] = useState(query.get("filter") ?? "");
  const [records, setRecords] = useState<ApiRecord[]>([]);
  const [state, setState] = useState("idle");
  useEffect(() => setDraft(pattern), [pattern]);
  useEffect(() => {
    setRecords([]);
    if (!pattern) {
      setState("idle");
      return;
    }
    setState("connecting");
    const source = new EventSource(
      `../v1/console/tail?pattern=${encodeURIComponent(pattern)}&start=${start}`,
      { withCredentials: true },
    );
    source.onopen = () => setState("live");
    source.addEventListener("record", (event) => {
      const record = JSON.parse((event as MessageEvent<string>).data) as ApiRecord;
      setRecords((kept) => [record, ...kept].slice(0, KEPT_MAX));
    });
    source.addEventListener("error", (event) => {
      const data = (event as MessageEvent<string>).data;
      if (data) {
        setState(`error: ${(JSON.parse(data) as { message: string }).message}`);
        source.close();
      } else if (source.readyState === EventSource.CLOSED) {
        setState("closed: the server refused the tail (is the pattern valid?)");
      } else {
        setState("reconnecting");
      }
    });
    return () => source.close();
  }, [pattern, start]);
  const needle = filter.toLowerCase();
  const shown = useMemo(
    () =>
      needle
        ? records.filter((record) =>
            [record.topic ?? "", keyText(record), valueText(record), JSON.stringify(record.headers ?? {})]
              .join("\u0000")
              .toLowerCase()
              .includes(needle),
          )
        : records,
    [records, needle],
  );
  return (
    <section>
      <h1>Live tail</h1>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          window.location.hash = link("tail", { pattern: draft.trim(), start });
        }}
      >
        <label>
          Topic or pattern{" "}
          <input name="pattern" placeholder="orders.>" value={draft} onInput={(event) => setDraft(event.currentTarget.value)} />
        </label>{" "}
        <button type="submit">Tail</button>{" "}
        <label>
          Filter{" "}
          <input name="filter" placeholder="text to look for" value={filter} onInput={(event) => setFilter(event.currentTarget.value)} />
        </label>
      </form>
      <p class="aside" data-testid="tail-state">
        {pattern ? `${state} · ${pattern} · ` : ""}
        showing <span data-testid="shown">{shown.length}</span> of {records.length} records received
        {records.length >= KEPT_MAX ? ` (the newest ${KEPT_MAX} are kept)` : ""}
      </p>
      <table data-testid="tail">
        <thead>
          <tr>
            <th>Topic</th>
            <th class="number">Offset</th>
            <th>Time</th>
            <th>Key</th>
            <th class="number">Version</th>
            <th>Value</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((record) => (
            <tr key={`${record.topic}/${record.offset}`} data-offset={record.offset}>
              <td>{record.topic}</td>
              <td class="number">{record.offset}</td>
              <td>{record.timestamp}</td>
              <td>
                {record.key != null || record.key_b64 ? (
                  <a href={link("keys", { topic: record.topic ?? "", key: keyText(record) })}>{keyText(record)}</a>
                ) : (
                  "–"
                )}
              </td>
              <td class="number">{record.version ?? "–"}</td>
              <td class="value">{valueText(record)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
