import { useEffect, useState } from "preact/hooks";
import { getJSON, segment, valueText, type KeyRecords } from "../api";
import { link } from "../hooks";

// Versions shown at once: the key's newest.
const VERSIONS_SHOWN = 100;

// A key's versions and values (/v1/topics/{topic}/keys/{key}/records): values of a
// schema'd topic come decoded as JSON, others as text (or base64).
export function KeysPage({ query }: { query: URLSearchParams }) {
  const topic = query.get("topic") ?? "";
  const key = query.get("key") ?? "";
  const [topicDraft, setTopicDraft] = useState(topic);
  const [keyDraft, setKeyDraft] = useState(key);
  const [answer, setAnswer] = useState<KeyRecords | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setTopicDraft(topic);
    setKeyDraft(key);
    setAnswer(null);
    setError(null);
    if (!topic || !key) return;
    const base64 = key.startsWith("base64:");
    const path = `../v1/topics/${segment(topic)}/keys/${segment(base64 ? key.slice(7) : key)}`;
    const encoding = base64 ? "key_encoding=base64" : "key_encoding=text";
    let live = true;
    (async () => {
      const head = await getJSON<{ version: number }>(`${path}?${encoding}`);
      const from = Math.max(1, head.version - VERSIONS_SHOWN + 1);
      const records = await getJSON<KeyRecords>(`${path}/records?${encoding}&from_version=${from}&limit=${VERSIONS_SHOWN}`);
      if (live) setAnswer(records);
    })().catch((exc: unknown) => live && setError(exc instanceof Error ? exc.message : String(exc)));
    return () => {
      live = false;
    };
  }, [topic, key]);
  return (
    <section>
      <h1>Key explorer</h1>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          window.location.hash = link("keys", { topic: topicDraft.trim(), key: keyDraft });
        }}
      >
        <label>
          Topic <input name="topic" value={topicDraft} onInput={(event) => setTopicDraft(event.currentTarget.value)} />
        </label>{" "}
        <label>
          Key{" "}
          <input
            name="key"
            placeholder="text, or base64:…"
            value={keyDraft}
            onInput={(event) => setKeyDraft(event.currentTarget.value)}
          />
        </label>{" "}
        <button type="submit">Show</button>
      </form>
      {error && <p class="error">{error}</p>}
      {answer && (
        <>
          <p data-testid="key-summary">
            {answer.version === 0
              ? `${key} has no records in ${topic}.`
              : `${key} is at version ${answer.version} in ${topic}; the newest ${answer.records.length} versions:`}
          </p>
          <table data-testid="versions">
            <thead>
              <tr>
                <th class="number">Version</th>
                <th class="number">Offset</th>
                <th>Time</th>
                <th>Value</th>
              </tr>
            </thead>
            <tbody>
              {[...answer.records].reverse().map((record) => (
                <tr data-version={record.version}>
                  <td class="number">{record.version}</td>
                  <td class="number">{record.offset}</td>
                  <td>{record.timestamp}</td>
                  <td class="value">
                    {typeof record.value === "object" && record.value !== null ? (
                      <pre>{JSON.stringify(record.value, null, 2)}</pre>
                    ) : (
                      valueText(record)
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
