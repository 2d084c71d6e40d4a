import { render } from "preact";
import { getJSON, type ClusterAnswer } from "./api";
import { link, usePoll, useRoute } from "./hooks";
import { ClusterPage } from "./pages/cluster";
import { GroupsPage } from "./pages/groups";
import { KeysPage } from "./pages/keys";
import { SchemasPage } from "./pages/schemas";
import { TailPage } from "./pages/tail";
import { TopicsPage } from "./pages/topics";
import "./style.css";

const PAGES: [string, string][] = [
  ["topics", "Topics"],
  ["tail", "Live tail"],
  ["keys", "Keys"],
  ["groups", "Consumer groups"],
  ["schemas", "Schemas"],
];

function App() {
  const route = useRoute();
  const [cluster] = usePoll(() => getJSON<ClusterAnswer>("../v1/console/cluster"), 0, []);
  const pages = cluster?.clustered ? [...PAGES, ["cluster", "Cluster"] as [string, string]] : PAGES;
  let page;
  switch (route.page) {
    case "tail":
      page = <TailPage query={route.query} />;
      break;
    case "keys":
      page = <KeysPage query={route.query} />;
      break;
    case "groups":
      page = <GroupsPage />;
      break;
    case "schemas":
      page = <SchemasPage query={route.query} />;
      break;
    case "cluster":
      page = <ClusterPage />;
      break;
    default:
      page = <TopicsPage />;
  }
  return (
    <>
      <header data-clustered={cluster === null ? undefined : String(cluster.clustered)}>
        <strong class="brand">Odradek</strong>
        <nav>
          {pages.map(([name, title]) => (
            <a href={link(name)} class={route.page === name ? "current" : ""} data-page={name}>
              {title}
            </a>
          ))}
        </nav>
      </header>
      <main>{page}</main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
