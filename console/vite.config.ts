// The console's build: TypeScript and Preact's JSX through Vite's esbuild, one small
// bundle written into the Python package (decision 0025), so that `pip install` users
// get it without Node.js; stamp.mjs then records a hash of these sources beside it.
import { defineConfig } from "vite";

export default defineConfig({
  base: "./", // served at /ui/: assets are named relative to index.html
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "../src/odradek/console/static",
    emptyOutDir: true,
    target: "es2022",
    modulePreload: false, // its polyfill is an inline script, which the page's CSP refuses
    reportCompressedSize: false,
  },
});
