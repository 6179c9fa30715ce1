// Builds the example into dist/: the bundled, minified app.js beside the
// page and its stylesheet, and prints the bundle's size.
import { build } from "esbuild";
import { copyFile, mkdir, readFile, rm } from "node:fs/promises";
import { gzipSync } from "node:zlib";

const out = "dist";
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  outfile: `${out}/app.js`,
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  legalComments: "none",
  logLevel: "warning",
});
for (const f of ["index.html", "style.css"]) await copyFile(`src/${f}`, `${out}/${f}`);
const js = await readFile(`${out}/app.js`);
console.log(`${out}/app.js: ${js.length} bytes minified, ${gzipSync(js, { level: 9 }).length} bytes gzip -9`);
