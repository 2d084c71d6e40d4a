import { getJSON, type ClusterAnswer } from "../api";
import { usePoll } from "../hooks";

function cell(value: unknown): string {
  if (value === null || value === undefined) return "–";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

// A cluster agent's view of its cluster (cluster_status, as `odradek cluster status`
// shows it): its agents in a table, the rest as it comes. Only linked when clustered.
export function ClusterPage() {
  const [answer, error] = usePoll(() => getJSON<ClusterAnswer>("../v1/console/cluster"), 3000, []);
  const status = answer?.status ?? {};
  const agents = Array.isArray(status.agents) ? (status.agents as Record<string, unknown>[]) : [];
  const columns = [...new Set(agents.flatMap((agent) => Object.keys(agent)))];
  const rest = Object.fromEntries(Object.entries(status).filter(([name]) => name !== "agents"));
  return (
    <section>
      <h1>Cluster</h1>
      {error && <p class="error">{error}</p>}
      {answer && !answer.clustered && <p>This server is not an agent of a cluster.</p>}
      {agents.length > 0 && (
        <table data-testid="agents">
          <thead>
            <tr>
              {columns.map((column) => (
                <th>{column}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {agents.map((agent) => (
              <tr>
                {columns.map((column) => (
                  <td>{cell(agent[column])}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {answer?.clustered && <pre data-testid="cluster-status">{JSON.stringify(rest, null, 2)}</pre>}
    </section>
  );
}
