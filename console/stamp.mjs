// Records which sources the committed build was made from: the SHA-256 of every file of
// this directory but node_modules (sorted by path; each as path, NUL, content, NUL),
// written to build.json beside the built assets. tests/console/test_console_build.py
// computes the same hash and fails when the sources changed without a new build.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL(".", import.meta.url));
const output = join(root, "..", "src", "odradek", "console", "static");

function walk(folder) {
  const found = [];
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    if (entry.name === "node_modules") continue;
    const path = join(folder, entry.name);
    if (entry.isDirectory()) found.push(...walk(path));
    else if (entry.isFile()) found.push(path);
  }
  return found;
}

const files = walk(root)
  .map((path) => relative(root, path).split(sep).join("/"))
  .sort();
const hash = createHash("sha256");
for (const name of files) {
  hash.update(name, "utf8");
  hash.update("\0");
  hash.update(readFileSync(join(root, name)));
  hash.update("\0");
}
const built = readdirSync(join(output, "assets")).sort();
const stamp = { sources_sha256: hash.digest("hex"), sources: files, assets: built };
writeFileSync(join(output, "build.json"), JSON.stringify(stamp, null, 2) + "\n");
console.log(`build.json: sources ${stamp.sources_sha256.slice(0, 12)} (${files.length} files)`);
