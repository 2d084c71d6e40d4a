import { useState } from "preact/hooks";
import { formatBytes, formatRate, getJSON, type TopicListing } from "../api";
import { link, usePoll } from "../hooks";

// Every topic with its size and its rates over the last seconds (/v1/console/topics),
// refreshed every two seconds.
export function TopicsPage() {
  const [pattern, setPattern] = useState("");
  const query = pattern ? `?pattern=${encodeURIComponent(pattern)}` : "";
  const [listing, error] = usePoll(() => getJSON<TopicListing>(`../v1/console/topics${query}`), 2000, [query]);
  return (
    <section>
      <h1>Topics</h1>
      <label>
        Pattern{" "}
        <input
          name="pattern"
          placeholder="orders.>"
          value={pattern}
          onChange={(event) => setPattern(event.currentTarget.value.trim())}
        />
      </label>
      {error && <p class="error">{error}</p>}
      {listing && (
        <>
          <table data-testid="topics">
            <thead>
              <tr>
                <th>Topic</th>
                <th class="number">Records</th>
                <th class="number">Size</th>
                <th class="number">Keys</th>
                <th class="number">Records/s</th>
                <th class="number">Bytes/s</th>
                <th>Schema</th>
                <th>Cleanup</th>
                <th>Status</th>
              </tr>
            </thead>
            <tbody>
              {listing.topics.map((topic) => (
                <tr data-topic={topic.name}>
                  <td>
                    <a href={link("tail", { pattern: topic.name, start: "recent" })}>{topic.name}</a>{" "}
                    <a class="aside" href={link("keys", { topic: topic.name })}>
                      keys
                    </a>
                  </td>
                  <td class="number records">{topic.records.toLocaleString("en")}</td>
                  <td class="number bytes">{formatBytes(topic.bytes)}</td>
                  <td class="number">{topic.keys.toLocaleString("en")}</td>
                  <td class="number rate">{formatRate(topic.records_per_second)}</td>
                  <td class="number">{formatRate(topic.bytes_per_second, true)}</td>
                  <td>{topic.schema ?? "–"}</td>
                  <td>{topic.cleanup}</td>
                  <td>{topic.status}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {listing.topics.length === 0 && <p>No topics{pattern ? ` match ${pattern}` : ""}.</p>}
          {listing.truncated && <p class="error">Only the first {listing.topics_max} topics are shown: narrow the pattern.</p>}
          <p class="aside">
            {listing.rate_window_seconds === null
              ? "Rates appear from the next refresh on."
              : `Rates over the last ${listing.rate_window_seconds.toFixed(0)} s.`}
          </p>
        </>
      )}
    </section>
  );
}
