import { getJSON, segment, type GroupInfo, type GroupListing } from "../api";
import { usePoll } from "../hooks";

// Groups described at once (each a call): the first this many of the listing.
const GROUPS_DESCRIBED_MAX = 50;

// Consumer groups of both kinds (odradek and kafka) with their lag per topic (and per
// partition a Kafka group committed) and their members, refreshed every two seconds.
// A Kafka member's row has the partitions it holds and their lag; an odradek group
// assigns nothing, so its members show the records they hold in flight (and a lag
// only with ordering "topic", where the active member is served everything).
export function GroupsPage() {
  const [groups, error] = usePoll(
    async () => {
      const listing = await getJSON<GroupListing>("../v1/groups");
      const named = listing.groups.slice(0, GROUPS_DESCRIBED_MAX);
      const described = await Promise.all(
        named.map((entry) => getJSON<GroupInfo>(`../v1/groups/${segment(entry.group)}`).catch(() => null)),
      );
      return { described: described.filter((group): group is GroupInfo => group !== null), total: listing.groups.length };
    },
    2000,
    [],
  );
  return (
    <section>
      <h1>Consumer groups</h1>
      {error && <p class="error">{error}</p>}
      {groups && groups.total === 0 && <p>No consumer groups.</p>}
      {groups && groups.total > GROUPS_DESCRIBED_MAX && (
        <p class="aside">The first {GROUPS_DESCRIBED_MAX} of {groups.total} groups are shown.</p>
      )}
      {groups?.described.map((group) => (
        <article class="group" data-group={group.group}>
          <h2>
            {group.group} <span class="aside">{group.kind} · {group.state} · {group.pattern ?? ""}</span>
          </h2>
          <table data-testid="group-topics">
            <thead>
              <tr>
                <th>Topic</th>
                <th class="number">Committed</th>
                <th class="number">End</th>
                <th class="number">Lag</th>
                <th class="number">In flight</th>
                <th class="number">Waiting</th>
              </tr>
            </thead>
            <tbody>
              {group.topics.map((topic) => (
                <tr data-topic={topic.topic}>
                  <td>{topic.topic}</td>
                  <td class="number">{topic.committed}</td>
                  <td class="number">{topic.next_offset}</td>
                  <td class="number lag">
                    {topic.lag}
                    {topic.partitions && topic.partitions.length > 0 && (
                      <div class="aside partitions">
                        {topic.partitions.map((partition) => (
                          <div data-partition={partition.partition}>
                            partition {partition.partition}: {partition.lag} (at {partition.committed})
                          </div>
                        ))}
                      </div>
                    )}
                  </td>
                  <td class="number">{topic.in_flight}</td>
                  <td class="number">{topic.waiting}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <table data-testid="group-members">
            <thead>
              <tr>
                <th>Member</th>
                <th>Client</th>
                <th>Partitions</th>
                <th class="number">Lag</th>
                <th class="number">In flight</th>
                <th class="number">Idle</th>
                <th>Active</th>
              </tr>
            </thead>
            <tbody>
              {group.members.map((member) => (
                <tr data-member={member.member}>
                  <td>{member.member}</td>
                  <td class="client">{[member.client_id, member.client_host].filter(Boolean).join(" @ ") || "–"}</td>
                  <td class="partitions">
                    {member.assignment === undefined
                      ? "–"
                      : member.assignment.length === 0
                        ? "none"
                        : member.assignment.map((topic) => (
                            <div data-assigned={topic.topic}>
                              {topic.topic}: {topic.partitions.join(", ")}
                              {topic.uncommitted.length > 0 && (
                                <span class="aside"> (no commit: {topic.uncommitted.join(", ")})</span>
                              )}
                            </div>
                          ))}
                  </td>
                  <td class="number lag">{member.lag ?? "–"}</td>
                  <td class="number">{member.in_flight}</td>
                  <td class="number">{member.idle_seconds.toFixed(1)} s</td>
                  <td>{member.active ? "yes" : "standby"}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {group.members.length === 0 && <p class="aside">No members.</p>}
        </article>
      ))}
    </section>
  );
}
