// Validates every manifest under a folder against the Kubernetes API's OpenAPI schemas, as
// packaged by kubernetes-models, with no cluster. A Kustomization is checked for the files it
// lists. Prints one line per object; exits 1 when any fails.
//   npm install --prefix deploy/kubernetes/validate --no-package-lock
//   node deploy/kubernetes/validate/validate.mjs deploy/kubernetes
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import yaml from "js-yaml";

const root = process.argv[2];
let failures = 0;
let checked = 0;

function manifests(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.isDirectory()) return e.name === "validate" || e.name === "node_modules" ? [] : manifests(join(dir, e.name));
    return /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [];
  });
}

for (const file of manifests(root)) {
  let docs;
  try {
    docs = yaml.loadAll(readFileSync(file, "utf8")).filter((d) => d != null);
  } catch (e) {
    console.log(`FAIL ${file}: not YAML: ${e.message}`);
    failures++;
    continue;
  }
  for (const doc of docs) {
    const what = `${file}: ${doc.kind} ${doc.metadata?.name ?? ""}`.trim();
    checked++;
    try {
      if (doc.kind === "Kustomization") {
        for (const r of doc.resources ?? []) {
          if (!existsSync(join(dirname(file), r))) throw new Error(`lists ${r}, which does not exist`);
        }
      } else {
        const models = await import(`kubernetes-models/${doc.apiVersion}`);
        const Model = models[doc.kind];
        if (!Model) throw new Error(`no schema for ${doc.apiVersion} ${doc.kind}`);
        new Model(doc).validate();
      }
      console.log(`ok   ${what}`);
    } catch (e) {
      console.log(`FAIL ${what}: ${e.message}`);
      failures++;
    }
  }
}
console.log(`${checked} objects checked, ${failures} failed`);
process.exit(failures === 0 && checked > 0 ? 0 : 1);
