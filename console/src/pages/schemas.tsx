import { getJSON, segment, type SubjectVersion } from "../api";
import { link, usePoll } from "../hooks";

function pretty(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// Schema Registry subjects (a topic's value schema is its subject TOPIC-value) and the
// versions of the one chosen.
export function SchemasPage({ query }: { query: URLSearchParams }) {
  const chosen = query.get("subject") ?? "";
  const [subjects, error] = usePoll(() => getJSON<string[]>("../subjects"), 5000, []);
  const [versions, versionsError] = usePoll(
    async () => {
      if (!chosen) return [];
      const numbers = await getJSON<number[]>(`../subjects/${segment(chosen)}/versions`);
      return Promise.all(numbers.map((n) => getJSON<SubjectVersion>(`../subjects/${segment(chosen)}/versions/${n}`)));
    },
    0,
    [chosen],
  );
  return (
    <section class="columns">
      <div>
        <h1>Schemas</h1>
        {error && <p class="error">{error}</p>}
        {subjects && subjects.length === 0 && <p>No subjects.</p>}
        <ul data-testid="subjects">
          {subjects?.map((subject) => (
            <li>
              <a href={link("schemas", { subject })} class={subject === chosen ? "current" : ""}>
                {subject}
              </a>
            </li>
          ))}
        </ul>
      </div>
      <div>
        {versionsError && <p class="error">{versionsError}</p>}
        {chosen && versions && (
          <>
            <h2>{chosen}</h2>
            {[...versions].reverse().map((version) => (
              <article data-version={version.version}>
                <h3>
                  Version {version.version} <span class="aside">id {version.id} · {version.schemaType ?? "AVRO"}</span>
                </h3>
                <pre>{pretty(version.schema)}</pre>
              </article>
            ))}
          </>
        )}
      </div>
    </section>
  );
}
