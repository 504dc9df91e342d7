'use strict';
/**
 * The build's asset step, after tsc:
 * - each node's folder (src/nodes/<type>/: its editor HTML, its locales, labels in `<type>.json`
 *   and help in `<type>.html`, whose shared parts are filled in from the driver: src/editor/help.ts,
 *   `<!-- #shared NAME -->`, and its icons) beside the built node file, where Node-RED looks for them;
 * - resources/driver-rules.js, served to the editor at resources/<module>/driver-rules.js: the
 *   driver's own rules (src/editor/rules.ts over src/driver/patterns.ts and net.ts, with ipaddr.js)
 *   bundled for the browser, and the driver's data the editor shows (preset names and contents,
 *   ICMP types, limits). Nothing of it is written by hand: the editor repeats no rule of the driver.
 * - resources/editor.js, the editor's shared code: src/editor/editor.ts bundled the same way (the
 *   nodes' migrations with it, so the editor migrates a node as the runtime does).
 * - resources/host-setup.js, the set-up renderer (src/driver/setup.ts, with sudoers.ts and zod)
 *   bundled the same way for isolation-target's "Host set-up" section: the editor shows the very
 *   script and task list the host-setup command prints. A file of its own: zod stays out of the
 *   other two.
 */
const fs = require('fs');
const path = require('path');
const Module = require('module');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');
const out = path.join(dist, 'src', 'nodes');

const { expandShared, sharedHelp } = require(path.join(dist, 'src', 'editor', 'help.js'));
const driver = require(path.join(dist, 'src', 'driver'));
const policy = require(path.join(dist, 'src', 'driver', 'policy.js'));

const { editorFragments, targetLabels } = require(path.join(dist, 'src', 'editor', 'target-form.js'));
// the help's shared parts, and the editor's parts built from the nodes' own declarations
const fragments = { ...sharedHelp(), ...editorFragments() };
/** what the build adds to a node's en-US catalog: isolation-target's form labels, from its field list */
const generated = { 'isolation-target': { 'isolation-target': { label: targetLabels() } } };
const sources = path.join(root, 'src', 'nodes');
/** the texts every node's catalog holds (status keys), by language: src/nodes/common/locales/<lang>/*.json */
const commonLocales = path.join(sources, 'common', 'locales');
const common = {};
for (const lang of fs.readdirSync(commonLocales)) {
  common[lang] = {};
  for (const f of fs.readdirSync(path.join(commonLocales, lang))) Object.assign(common[lang], JSON.parse(fs.readFileSync(path.join(commonLocales, lang, f), 'utf8')));
}
fs.cpSync(commonLocales, path.join(out, 'common', 'locales'), { recursive: true });

/**
 * Each node's folder (src/nodes/<type>/) beside its built .js: the editor HTML, the icons and the
 * locales. HTML (the editor's and the help in locales/<lang>/<type>.html, where Node-RED looks for
 * it and a translation can replace it) has its shared parts filled in; each catalog
 * (locales/<lang>/<type>.json) gets the common texts of its language.
 */
function copyNode(type) {
  const from = path.join(sources, type);
  const to = path.join(out, type);
  const walk = (rel) => {
    for (const entry of fs.readdirSync(path.join(from, rel), { withFileTypes: true })) {
      const r = path.join(rel, entry.name);
      if (entry.isDirectory()) {
        walk(r);
        continue;
      }
      if (entry.name.endsWith('.ts')) continue;
      const target = path.join(to, r);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      if (entry.name.endsWith('.html')) {
        fs.writeFileSync(target, expandShared(fs.readFileSync(path.join(from, r), 'utf8'), `${type}/${r}`, fragments));
      } else if (entry.name === `${type}.json` && path.basename(path.dirname(path.dirname(r))) === 'locales') {
        const lang = path.basename(path.dirname(r));
        const catalog = JSON.parse(fs.readFileSync(path.join(from, r), 'utf8'));
        const own = lang === 'en-US' && generated[type] ? generated[type][type] : {};
        catalog[type] = { ...catalog[type], label: { ...(own.label ?? {}), ...(catalog[type].label ?? {}) } };
        fs.writeFileSync(target, JSON.stringify({ ...catalog, ...(common[lang] ?? {}) }, null, 2) + '\n');
      } else {
        fs.copyFileSync(path.join(from, r), target);
      }
    }
  };
  walk('.');
}
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
for (const type of Object.keys(pkg['node-red'].nodes)) copyNode(type);
// the package's commands (package.json `bin`), runnable from a checkout too
for (const bin of Object.values(pkg.bin)) fs.chmodSync(path.join(root, bin), 0o755);

/**
 * A CommonJS bundle for the browser: every module `entry` requires, transitively, each wrapped in
 * a function, with a require that maps each request to its module. Node built-ins are refused (the
 * editor has none).
 */
function bundle(entry) {
  const ids = new Map(); // absolute file -> id
  const modules = [];
  const add = (file) => {
    if (ids.has(file)) return ids.get(file);
    const id = ids.size;
    ids.set(file, id);
    const slot = { id, file: path.relative(root, file), source: '', deps: {} };
    modules.push(slot);
    let source = fs.readFileSync(file, 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, '');
    const re = /require\((["'])([^"']+)\1\)/g;
    let m;
    while ((m = re.exec(source))) {
      const req = m[2];
      if (Module.builtinModules.includes(req.replace(/^node:/, ''))) throw new Error(`${slot.file} requires node's ${req}: not for the browser`);
      slot.deps[req] = add(require.resolve(req, { paths: [path.dirname(file)] }));
    }
    slot.source = source;
    return id;
  };
  add(require.resolve(entry));
  const defs = modules
    .map((mod) => `  // ${mod.file}\n  [function (module, exports, require) {\n${mod.source}\n  }, ${JSON.stringify(mod.deps)}]`)
    .join(',\n');
  return `[\n${defs}\n]`;
}

const data = {
  PRESET_NAMES: driver.PRESET_NAMES,
  PRESETS: driver.PRESETS,
  ICMP_TYPES: driver.ICMP_TYPES,
  MAX_DURATION: policy.MAX_DURATION,
  MAX_EXCEPTIONS: policy.MAX_EXCEPTIONS,
};

/** A script for the browser that runs the bundle of `entry` and then `then` (with `main`, the entry's exports). */
function browserScript(header, entry, then) {
  return `${header}
(function () {
  'use strict';
  var defs = ${bundle(entry)};
  var cache = [];
  function load(id) {
    if (cache[id]) return cache[id].exports;
    var module = (cache[id] = { exports: {} });
    defs[id][0].call(module.exports, module, module.exports, function (req) {
      if (!(req in defs[id][1])) throw new Error('host isolation: unknown module ' + req);
      return load(defs[id][1][req]);
    });
    return module.exports;
  }
  var main = load(0);
${then}
})();
`;
}

const resources = path.join(root, 'resources');
fs.mkdirSync(resources, { recursive: true });
fs.writeFileSync(
  path.join(resources, 'driver-rules.js'),
  browserScript(
    `/* Generated by scripts/copy-assets.js from the driver (src/editor/rules.ts, src/driver): do not edit.
 * window.hostIsolationRules: the driver's input checks (each returns null or a message) and data. */`,
    path.join(dist, 'src', 'editor', 'rules.js'),
    `  var data = ${JSON.stringify(data)};
  window.hostIsolationRules = Object.assign({}, main, data);`,
  ),
);
// the editor's shared code (window.hostIsolation), written in TypeScript: src/editor/editor.ts
fs.writeFileSync(
  path.join(resources, 'editor.js'),
  browserScript(
    `/* Generated by scripts/copy-assets.js from src/editor/editor.ts (with the nodes' migrations): do not edit.
 * window.hostIsolation: the nodes' shared editor code, over window.hostIsolationRules (driver-rules.js). */`,
    path.join(dist, 'src', 'editor', 'editor.js'),
    '  void main;',
  ),
);
// the set-up renderer (window.hostIsolationSetup): src/driver/setup.ts, as the host-setup command runs it
const sudoers = require(path.join(dist, 'src', 'driver', 'sudoers.js'));
fs.writeFileSync(
  path.join(resources, 'host-setup.js'),
  browserScript(
    `/* Generated by scripts/copy-assets.js from src/driver/setup.ts (with sudoers.ts and zod): do not edit.
 * window.hostIsolationSetup: hostSetup(input), the host-setup command's renderer, and its features. */`,
    path.join(dist, 'src', 'driver', 'setup.js'),
    `  window.hostIsolationSetup = { hostSetup: main.hostSetup, FEATURES: ${JSON.stringify(sudoers.SUDOERS_FEATURES)}, DEFAULT_TABLE: ${JSON.stringify(policy.DEFAULT_TABLE)} };`,
  ),
);
