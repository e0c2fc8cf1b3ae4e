#!/usr/bin/env node
// Validates Kubernetes manifests (multi-document YAML, e.g. `kubectl kustomize` output) against
// the Kubernetes API schemas, offline, like `kubeconform -strict`:
//   1. schema: each document goes through the validator that the npm package
//      `kubernetes-models` compiled (ajv) from the Kubernetes OpenAPI specification of its
//      apiVersion/kind: types, required fields, enums, formats (int32, quantities, ...);
//      custom resources likewise from their own model package: Argo Rollouts' Rollout,
//      AnalysisTemplate, ... (argoproj.io/v1alpha1) from `@kubernetes-models/argo-rollouts`,
//      generated from the Go types of the argo-rollouts API (the source of its CRDs);
//   2. strict: those validators accept unknown fields (the OpenAPI spec has no
//      additionalProperties: false), which is where typos hide (`readinesProbe`, a pod-level
//      field under a container). So every field is also looked up in the TypeScript
//      declarations generated from the same spec (*.d.ts of the model package), and a field
//      the API does not define is an error, as `kubectl apply --validate=strict` would report.
//
// Usage: node validate-k8s.mjs --modules DIR [--modules DIR2 ...] FILE.yaml...
//        DIR: a node_modules holding js-yaml and kubernetes-models (deploy/validate.sh installs
//        them in build/deploy-tools); further DIRs add model packages for custom resources
//        (build/deploy-tools/argo-rollouts/node_modules: @kubernetes-models/argo-rollouts).
//        A kind is looked up in each DIR's packages in turn; an apiVersion/kind none of them
//        knows is an error (never skipped).
// Exit status: 0 when every document is valid, 1 otherwise (each problem on stderr), 2 on usage.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
const moduleDirs = [];
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--modules") moduleDirs.push(path.resolve(args[++i] ?? ""));
  else files.push(args[i]);
}
if (moduleDirs.length === 0 || files.length === 0) {
  console.error("usage: validate-k8s.mjs --modules NODE_MODULES_DIR [--modules DIR...] FILE.yaml...");
  process.exit(2);
}
const modules = moduleDirs[0];
const require = createRequire(path.join(modules, "noop.js"));
const yaml = require("js-yaml");
// Model packages, each laid out as <package>/<apiVersion>/<Kind>.{js,mjs,d.ts}.
const MODEL_PACKAGES = ["kubernetes-models", "@kubernetes-models/argo-rollouts"];
const modelRoots = moduleDirs.flatMap((dir) =>
  MODEL_PACKAGES.map((pkg) => path.join(dir, pkg)).filter((root) => fs.existsSync(root)),
);

// ---- strict field check from the generated .d.ts declarations -----------------------------

const declCache = new Map();

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

function resolveImport(fromFile, spec) {
  const file = spec.replace(/\.js$/, "") + ".d.ts";
  if (spec.startsWith(".")) return path.resolve(path.dirname(fromFile), file);
  // A package import resolves like node does: the nearest node_modules up from the importing
  // file that holds the package (a model package may carry its own, newer, kubernetes-models).
  const parts = spec.split("/");
  const pkg = spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
  for (let dir = path.dirname(fromFile); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "node_modules", pkg))) return path.join(dir, "node_modules", file);
    if (path.dirname(dir) === dir) break;
  }
  return path.join(modules, file);
}

// Splits "a; b; c" at depth 0 of {} <> () brackets.
function splitTop(text, sep) {
  const out = [];
  let depth = 0;
  let cur = "";
  for (const ch of text) {
    if ("{<(".includes(ch)) depth++;
    if ("}>)".includes(ch)) depth--;
    if (ch === sep && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur);
  return out.map((s) => s.trim()).filter(Boolean);
}

function parseProps(body, imports, file) {
  const props = new Map();
  for (const member of splitTop(body, ";")) {
    const m = member.match(/^"?([^"?:]+)"?\??\s*:\s*([\s\S]+)$/);
    if (!m) continue;
    props.set(m[1], parseType(m[2].trim(), imports, file));
  }
  return props;
}

function parseType(t, imports, file) {
  t = t.trim();
  const arr = t.match(/^Array<([\s\S]+)>$/);
  if (arr) return { kind: "array", of: parseType(arr[1], imports, file) };
  if (t.startsWith("{")) {
    const inner = t.slice(1, t.lastIndexOf("}")).trim();
    const map = inner.match(/^\[key: string\]\s*:\s*([\s\S]+?);?$/);
    if (map) return { kind: "map", of: parseType(map[1], imports, file) };
    return { kind: "object", props: parseProps(inner, imports, file) };
  }
  const members = splitTop(t, "|");
  if (members.length > 1) {
    const refs = members.filter((x) => imports.has(x));
    // A union with a primitive or literal member: leave it to the schema validator.
    if (refs.length !== members.length) return { kind: "leaf" };
    return parseType(refs[0], imports, file);
  }
  if (imports.has(t)) return { kind: "ref", file: imports.get(t) };
  return { kind: "leaf" }; // string, number, boolean, literals, any, unknown, Time, ...
}

function loadDecl(file) {
  if (declCache.has(file)) return declCache.get(file);
  let decl = { kind: "leaf" };
  if (fs.existsSync(file)) {
    const text = stripComments(fs.readFileSync(file, "utf8"));
    const imports = new Map();
    for (const m of text.matchAll(/import\s*\{([^}]+)\}\s*from\s*"([^"]+)"/g)) {
      for (const name of m[1].split(",")) {
        const parts = name.trim().split(/\s+as\s+/);
        const local = (parts[1] || parts[0]).trim();
        if (local) imports.set(local, resolveImport(file, m[2]));
      }
    }
    const iface = text.match(/export interface \w+(?:\s+extends [^{]+)?\s*\{/);
    if (iface) {
      // The interface body: from its "{" to the matching "}".
      let depth = 0;
      let start = iface.index + iface[0].length;
      let end = start;
      for (let i = iface.index + iface[0].length - 1; i < text.length; i++) {
        if (text[i] === "{") depth++;
        if (text[i] === "}" && --depth === 0) {
          end = i;
          break;
        }
      }
      decl = { kind: "object", props: null };
      declCache.set(file, decl); // recursive types
      decl.props = parseProps(text.slice(start, end), imports, file);
      return decl;
    }
    const alias = text.match(/export type (\w+)\s*=\s*([^;]+);/);
    if (alias && !alias[2].includes("{")) decl = parseType(alias[2], imports, file);
  }
  declCache.set(file, decl);
  return decl;
}

function strictCheck(value, decl, where, problems) {
  if (value === null || value === undefined) return;
  if (decl.kind === "ref") decl = loadDecl(decl.file);
  switch (decl.kind) {
    case "array":
      if (Array.isArray(value)) value.forEach((v, i) => strictCheck(v, decl.of, `${where}[${i}]`, problems));
      return;
    case "map":
      if (typeof value === "object" && !Array.isArray(value))
        for (const [k, v] of Object.entries(value)) strictCheck(v, decl.of, `${where}.${k}`, problems);
      return;
    case "object":
      if (typeof value !== "object" || Array.isArray(value)) return; // a type error: the schema reports it
      for (const [k, v] of Object.entries(value)) {
        if (!decl.props.has(k)) problems.push(`${where}.${k}: unknown field (not in the API schema of this kind)`);
        else strictCheck(v, decl.props.get(k), `${where}.${k}`, problems);
      }
      return;
    default:
      return;
  }
}

// ---- main ---------------------------------------------------------------------------------

let failures = 0;
let count = 0;
const kinds = new Map();
for (const file of files) {
  let docs;
  try {
    docs = yaml.loadAll(fs.readFileSync(file, "utf8")).filter((d) => d !== null && d !== undefined);
  } catch (e) {
    console.error(`${file}: YAML error: ${e.message}`);
    failures++;
    continue;
  }
  for (const doc of docs) {
    count++;
    const id = `${file}: ${doc?.kind ?? "?"} ${doc?.metadata?.name ?? "?"}`;
    if (typeof doc !== "object" || !doc.apiVersion || !doc.kind) {
      console.error(`${id}: not a Kubernetes object (apiVersion and kind are required)`);
      failures++;
      continue;
    }
    let base = null;
    let entry = null;
    for (const root of modelRoots) {
      base = path.join(root, doc.apiVersion, doc.kind);
      entry = [".mjs", ".js"].map((ext) => base + ext).find((f) => fs.existsSync(f));
      if (entry) break;
    }
    if (!entry) {
      console.error(`${id}: no schema for apiVersion ${doc.apiVersion} kind ${doc.kind} (wrong or removed API version?)`);
      failures++;
      continue;
    }
    const mod = await import(pathToFileURL(entry).href);
    const Model = mod[doc.kind] ?? mod.default?.[doc.kind]; // ES module, or CommonJS through import()
    const problems = [];
    try {
      new Model(doc).validate();
    } catch (e) {
      problems.push(`schema: ${e.message}`);
    }
    strictCheck(doc, loadDecl(base + ".d.ts"), "", problems);
    if (problems.length) {
      failures++;
      for (const p of problems) console.error(`${id}: ${p}`);
    }
    kinds.set(`${doc.apiVersion} ${doc.kind}`, (kinds.get(`${doc.apiVersion} ${doc.kind}`) || 0) + 1);
  }
}
const summary = [...kinds.entries()].map(([k, n]) => `${n} ${k}`).join(", ");
if (failures) {
  console.error(`kubernetes schema: ${failures} of ${count} documents invalid`);
  process.exit(1);
}
console.log(`kubernetes schema: ${count} documents valid (strict) [${summary}]`);
