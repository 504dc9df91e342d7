/// <reference lib="dom" />
/// <reference types="jquery" />
/**
 * Editor code shared by the nodes of @soc-playbooks/node-red-host-isolation, run by the browser in
 * Node-RED's editor. Bundled at build (scripts/copy-assets.js, the same CommonJS bundler as the
 * driver's rules) into resources/editor.js, which Node-RED serves at
 * resources/@soc-playbooks/node-red-host-isolation/editor.js and each node's HTML loads. Its rules
 * are the driver's: window.hostIsolationRules (driver-rules.js, bundled from src/editor/rules.ts),
 * looked up when used, so the two files may load in either order. The nodes' migrations are
 * bundled in, the very steps the runtime applies.
 *
 * window.hostIsolation:
 *   exceptionList(node, container, prefix) / readExceptions(container, prefix): the exception rows
 *   presetBoxes(node, box) / readPresets(box): one checkbox per driver preset
 *   keyBox(prefix, name): a private key box that shows a stored key as stored, never as __PWRD__
 *   migrated(type, node, prefix) / version(type): the node's config at the current version, and it
 *   targetPrepare(node) / targetSave(node): isolation-target's form, from its field list (fields.ts)
 *   setupSection(translate?): isolation-target's "Host set-up" section (the host-setup command's renderer)
 *   validExceptions, validPresets, validHost, validUsername, validList(kind, name), validServers(name),
 *   validDuration, validMaxHosts, validNumber(name, min, max, integer):
 *     `validate` functions for node defaults: true, or a message saying what is wrong
 */
import { currentVersion, migrate, type Config } from '../nodes/common/migrate';
import { LIST_FIELDS, TARGET_FIELDS, type TargetFieldName } from '../nodes/isolation-target/fields';
import { NODE_MIGRATIONS as MIGRATIONS } from './migrations';
import type * as RulesModule from './rules';

type Rules = typeof RulesModule & {
  PRESET_NAMES: string[];
  PRESETS: Record<string, { direction: string; proto: string; port?: number | string; icmpType?: string; addr?: string }[]>;
  ICMP_TYPES: RulesModule.IcmpTypes;
  MAX_DURATION: number;
};
type Verdict = true | string;
type Validator = (v: unknown, opt?: { label?: string }) => Verdict;
type Row = Record<string, unknown>;
interface EditableList {
  editableList(options: { addItem: (row: JQuery, index: number, data: Row) => void; removable: boolean; sortable: boolean }): JQuery;
  editableList(method: 'addItem', data: Row): JQuery;
  editableList(method: 'items'): JQuery;
}

/** resources/host-setup.js (scripts/copy-assets.js): src/driver/setup.ts bundled for the browser */
interface SetupRenderer {
  hostSetup(input: { user: string; table: string; features: string[]; publicKey: string; format: 'sh' | 'ansible' }): string;
  FEATURES: string[];
  DEFAULT_TABLE: string;
}

declare global {
  interface Window {
    hostIsolationRules?: Rules;
    hostIsolationSetup?: SetupRenderer;
    hostIsolation?: unknown;
    /** Node-RED's editor: its settings hold the runtime settings the pack exports (settings.ts) */
    RED?: { settings?: Record<string, unknown>; _?: (key: string) => string };
  }
}

/** isolationTargetMaxHosts as the runtime exports it (settings.ts); 1000 when an older runtime exports none. */
function runtimeMaxHosts(): number {
  const v = window.RED?.settings?.isolationTargetMaxHosts;
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 ? v : 1000;
}

/** Node-RED's marker, in a password credential's input, for a value it keeps and does not send. */
export const KEPT = '__PWRD__';

function rules(): Rules {
  if (!window.hostIsolationRules) throw new Error('host isolation: driver-rules.js did not load');
  return window.hostIsolationRules;
}

/** a Node-RED 3+ validator's answer: true, or the message, prefixed with the field's label or name */
function verdict(problem: string | null, opt?: { label?: string }, name?: string): Verdict {
  if (!problem) return true;
  const label = (opt && opt.label) || name;
  return label ? `${label}: ${problem}` : problem;
}

const list = (el: JQuery) => el as unknown as EditableList;
const text = (el: JQuery) => String(el.val() ?? '').trim();

function exceptionList(node: { exceptions?: Row[] }, container: JQuery, prefix: string): void {
  const R = rules();
  list(container.css('min-height', '150px').css('min-width', '450px')).editableList({
    addItem: (row, _index, data) => {
      row.css({ overflow: 'hidden', whiteSpace: 'nowrap' });
      const dir = $(`<select class="${prefix}-dir" style="width:70px"><option value="in">in</option><option value="out">out</option></select>`).appendTo(row);
      const proto = $(`<select class="${prefix}-proto" style="width:70px; margin-left:4px"><option>tcp</option><option>udp</option><option>icmp</option><option>any</option></select>`).appendTo(row);
      const addr = $(`<input type="text" class="${prefix}-addr" placeholder="addr / CIDR (any)" style="width:150px; margin-left:4px">`).appendTo(row);
      const port = $(`<input type="text" class="${prefix}-port" placeholder="port or lo-hi" style="width:90px; margin-left:4px">`).appendTo(row);
      const owner = $(
        `<input type="text" class="${prefix}-owner" placeholder="uid / unit (out)" title="outbound traffic of a local user (uid or name), a systemd unit (name.service) or a cgroup v2 path" style="width:110px; margin-left:4px">`,
      ).appendTo(row);
      const comment = $(`<input type="text" class="${prefix}-comment" placeholder="comment" style="width:120px; margin-left:4px">`).appendTo(row);
      dir.val(String(data.direction || 'in'));
      proto.val(String(data.proto || 'tcp'));
      addr.val(String(data.addr || ''));
      port.val(data.port === undefined ? '' : String(data.port));
      owner.val(R.ownerText(data));
      if (data.icmpType !== undefined) row.data('icmpType', data.icmpType as string); // kept as given (set in the flow or by msg), no field of its own
      comment.val(String(data.comment || ''));
      const mark = (input: JQuery, problem: string | null) => {
        input.toggleClass('input-error', !!problem);
        if (problem) input.attr('title', problem);
        else input.removeAttr('title');
      };
      const check = () => {
        mark(addr, R.addrProblem(text(addr)));
        mark(port, R.portProblem(text(port), String(proto.val())));
        mark(owner, R.ownerProblem(text(owner), String(dir.val()), String(proto.val())));
      };
      addr.on('change keyup input', check);
      port.on('change keyup input', check);
      owner.on('change keyup input', check);
      proto.on('change', check);
      dir.on('change', check);
      check();
    },
    removable: true,
    sortable: true,
  });
  (node.exceptions || []).forEach((e) => list(container).editableList('addItem', e));
}

function readExceptions(container: JQuery, prefix: string): Row[] {
  const R = rules();
  const out: Row[] = [];
  list(container)
    .editableList('items')
    .each(function (this: HTMLElement) {
      const row = $(this);
      const e: Row = { direction: row.find(`.${prefix}-dir`).val(), proto: row.find(`.${prefix}-proto`).val() };
      const addr = text(row.find(`.${prefix}-addr`));
      const port = text(row.find(`.${prefix}-port`));
      const comment = text(row.find(`.${prefix}-comment`));
      const owner = R.ownerOf(text(row.find(`.${prefix}-owner`)));
      if (addr) e.addr = addr;
      if (port) e.port = /^\d+$/.test(port) ? Number(port) : port;
      if (owner) Object.assign(e, owner);
      if (e.proto === 'icmp' && row.data('icmpType')) e.icmpType = row.data('icmpType');
      if (comment) e.comment = comment;
      out.push(e);
    });
  return out;
}

function presetBoxes(node: { presets?: string[] }, box: JQuery): void {
  const R = rules();
  R.PRESET_NAMES.forEach((p) => {
    const what = (R.PRESETS[p] || []).map((e) => `${e.direction} ${e.proto}${e.port !== undefined ? ` ${e.port}` : ''}${e.icmpType ? ` ${e.icmpType}` : ''}${e.addr ? ` ${e.addr}` : ''}`);
    $('<label style="width:auto; margin-right:12px"></label>')
      .attr('title', what.filter((w, i) => what.indexOf(w) === i).join(', '))
      .append(
        $('<input type="checkbox" style="width:auto; vertical-align:top; margin-right:4px">')
          .attr('id', `node-input-preset-${p}`)
          .attr('data-preset', p)
          .prop('checked', (node.presets || []).indexOf(p) >= 0),
      )
      .append(document.createTextNode(p))
      .appendTo(box);
  });
}

function readPresets(box: JQuery): string[] {
  return box
    .find('input:checked')
    .map(function (this: HTMLElement) {
      return $(this).attr('data-preset');
    })
    .get() as string[];
}

/**
 * A private key kept as a `password` credential, shown in a box of its own (`<prefix>-<name>Text`)
 * beside the credential's hidden input (`<prefix>-<name>`), which Node-RED fills with __PWRD__ when
 * a key is stored and reads on save. A stored key is shown as stored (a note, the box empty): paste
 * a new key to replace it, or remove it; left alone, the hidden input keeps __PWRD__ and Node-RED
 * keeps the key. The box's text is the only thing ever sent as a key, never the marker.
 */
function keyBox(prefix: string, name: string): void {
  const hidden = $(`#${prefix}-${name}`);
  const box = $(`#${prefix}-${name}Text`);
  const note = $(`#${prefix}-${name}Stored`);
  const stored = hidden.val() === KEPT;
  let removed = false;
  box.val('');
  const sync = () => {
    const key = String(box.val() ?? '');
    const marker = key.includes(KEPT);
    box.toggleClass('input-error', marker);
    if (marker) box.attr('title', 'not a key: paste the private key itself');
    else box.removeAttr('title');
    if (key.trim() !== '' && !marker) hidden.val(key);
    else hidden.val(stored && !removed ? KEPT : '');
    note.toggle(stored && !removed && key.trim() === '');
  };
  note.find('.nrhi-key-remove').on('click', (ev) => {
    ev.preventDefault();
    removed = true;
    sync();
  });
  box.on('change keyup input', sync);
  sync();
}

/**
 * The node's config at the current version (the runtime's migrations, run here): the edit form
 * shows it, and oneditsave stores `version`. Inputs `<prefix>-<field>` of changed fields are set.
 */
function migrated(type: string, node: Config, prefix: string): Config {
  // the saved properties only (the editor's node also holds its users, wires and definition, some circular)
  const defaults = (node._def as { defaults?: Record<string, unknown> } | undefined)?.defaults ?? {};
  const saved: Config = Object.fromEntries(Object.keys(defaults).map((k) => [k, node[k]]));
  const m = migrate(saved, MIGRATIONS[type] ?? []);
  for (const [k, v] of Object.entries(m.config)) {
    if (k === 'version' || JSON.stringify(v) === JSON.stringify(saved[k])) continue;
    const input = $(`#${prefix}-${k}`);
    if (input.is(':checkbox')) input.prop('checked', v === true);
    else if (input.length > 0 && (typeof v === 'string' || typeof v === 'number')) input.val(String(v));
  }
  return m.config;
}

function version(type: string): number {
  return currentVersion(MIGRATIONS[type] ?? []);
}

/**
 * isolation-target's edit form, from its field list: the node migrated, each list box filled (one
 * entry a line), each private key box prepared (keyBox).
 */
function targetPrepare(node: Config): void {
  const config = migrated('isolation-target', node, 'node-config-input');
  for (const k of LIST_FIELDS) {
    const v = config[k];
    $(`#node-config-input-${k}Text`).val((Array.isArray(v) ? v : []).join('\n'));
  }
  for (const k of Object.keys(TARGET_FIELDS) as TargetFieldName[]) if (TARGET_FIELDS[k].input === 'key') keyBox('node-config-input', k);
  setupSection(typeof node._ === 'function' ? (node._ as Translate) : undefined);
}

/** a node definition's translator (Node-RED's `this._`): a catalog key of its node set to its text */
type Translate = (key: string) => string;
/** isolation-target's i18n namespace in the editor: the node set's id, `<module>/<set>` (package.json node-red.nodes) */
const TARGET_NS = '@soc-playbooks/node-red-host-isolation/isolation-target';

/** where Node-RED serves the pack's resources, relative to the editor's page (as the nodes' HTML loads them) */
const SETUP_SCRIPT = 'resources/@soc-playbooks/node-red-host-isolation/host-setup.js';
let setupLoading: Promise<SetupRenderer> | null = null;

/** The set-up renderer, loaded once when first asked for (it carries zod: not loaded with the editor). */
function setupRenderer(): Promise<SetupRenderer> {
  if (window.hostIsolationSetup) return Promise.resolve(window.hostIsolationSetup);
  setupLoading ??= new Promise<SetupRenderer>((resolve, reject) => {
    const el = document.createElement('script');
    el.src = SETUP_SCRIPT;
    el.onload = () => (window.hostIsolationSetup ? resolve(window.hostIsolationSetup) : reject(new Error('host-setup.js did not define hostIsolationSetup')));
    el.onerror = () => reject(new Error(`${SETUP_SCRIPT} did not load`));
    document.head.appendChild(el);
  }).catch((e: unknown) => {
    setupLoading = null;
    throw e;
  });
  return setupLoading;
}

/**
 * isolation-target's "Host set-up" section (its HTML: target-form.ts targetSetup): the set-up of
 * this target's account, rendered in the page by the host-setup command's own renderer
 * (src/driver/setup.ts) for the form's user, the table and features ticked and the public key
 * pasted here, as a shell script or an Ansible task list. The private key in the credential store
 * is never read: the public key is pasted. A refused input shows the renderer's message instead of
 * a script. Nothing of the section is saved with the node.
 */
function setupSection(translate?: Translate): void {
  // the catalog's text (locales/<lang>/isolation-target.json: isolation-target.setup.*), through the
  // node definition's own translator (the edited node's `_`, which adds the node set's namespace);
  // without it, RED._ with that namespace spelled out
  const t: Translate = translate ?? ((k) => (window.RED?._ ? window.RED._(`${TARGET_NS}:${k}`) : k));
  const say = (k: string) => t(`isolation-target.setup.${k}`);
  const S = '#node-config-setup';
  const section = $(S);
  const out = $(`${S}-output`);
  const error = $(`${S}-error`);
  let renderer: SetupRenderer | null = null;
  const show = (script: string | null, problem: string | null) => {
    out.text(script ?? '').toggle(script !== null);
    error.text(problem ?? '').toggle(problem !== null);
    $(`${S}-copy`).prop('disabled', script === null);
  };
  const render = () => {
    if (!renderer || !section.is(':visible')) return;
    const features = $(`${S}-features input:checked`)
      .map(function (this: HTMLElement) {
        return $(this).attr('data-feature');
      })
      .get() as string[];
    const key = String($(`${S}-key`).val() ?? '');
    if (key.trim() === '') return show(null, say('needKey'));
    try {
      show(
        renderer.hostSetup({
          user: String($('#node-config-input-username').val() ?? '').trim(),
          table: String($(`${S}-table`).val() ?? '').trim(),
          features,
          publicKey: key,
          format: $(`${S}-format`).val() === 'ansible' ? 'ansible' : 'sh',
        }),
        null,
      );
    } catch (e) {
      show(null, (e as Error).message);
    }
  };
  $(`${S}-toggle`).on('click', () => {
    section.toggle();
    $(`${S}-toggle i`).toggleClass('fa-caret-right', !section.is(':visible')).toggleClass('fa-caret-down', section.is(':visible'));
    if (!section.is(':visible')) return;
    if (renderer) return render();
    show(null, say('loading'));
    setupRenderer().then(
      (r) => {
        renderer = r;
        render();
      },
      (e: unknown) => show(null, (e as Error).message),
    );
  });
  $(`${S}-table, ${S}-key, #node-config-input-username`).on('change keyup input', render);
  $(`${S}-features input, ${S}-format`).on('change', render);
  $(`${S}-copy`).on('click', () => {
    const script = out.text();
    const fallback = () => {
      const range = document.createRange();
      range.selectNodeContents(out[0]);
      const sel = window.getSelection();
      sel?.removeAllRanges();
      sel?.addRange(range);
      document.execCommand('copy');
    };
    if (navigator.clipboard) navigator.clipboard.writeText(script).catch(fallback);
    else fallback();
  });
}

/** Reads the list boxes back into the node (entries split at newlines and commas, blanks dropped), and the version. */
function targetSave(node: Config): void {
  for (const k of LIST_FIELDS) {
    node[k] = String($(`#node-config-input-${k}Text`).val() ?? '')
      .split(/[\n,]/)
      .map((s) => s.trim())
      .filter((s) => s !== '');
  }
  node.version = version('isolation-target');
}

function validNumber(name: string, min: number, max: number, integer?: boolean): Validator {
  return (v, opt) => verdict(rules().numberProblem(v, min, max, integer !== false), opt, name);
}

const api = {
  exceptionList,
  readExceptions,
  presetBoxes,
  readPresets,
  keyBox,
  migrated,
  version,
  targetPrepare,
  targetSave,
  setupSection,
  validExceptions: ((v, opt) => verdict(rules().exceptionsProblem(v, rules().ICMP_TYPES), opt)) as Validator,
  validPresets: ((v, opt) => {
    const R = rules();
    if (v === undefined || v === null || v === '') return true;
    if (!Array.isArray(v)) return verdict('presets must be a list', opt);
    const bad = v.filter((p) => R.PRESET_NAMES.indexOf(p as string) < 0);
    return verdict(bad.length ? `unknown preset ${bad.join(', ')} (one of ${R.PRESET_NAMES.join(', ')})` : null, opt);
  }) as Validator,
  validHost: ((v, opt) => verdict(rules().hostProblem(v), opt)) as Validator,
  validUsername: ((v, opt) => verdict(rules().usernameProblem(v), opt)) as Validator,
  /** kind: 'hosts' (names, IPs, CIDRs) or 'cidrs' */
  validList: (kind: 'hosts' | 'cidrs', name: string): Validator => (v, opt) => verdict(rules().listProblem(v, kind), opt, name),
  /** a target's DNS, NTP or LDAP servers: the driver's server rules (no wider than /16 or /48) */
  validServers: (name: string): Validator => (v, opt) => verdict(rules().serversProblem(v), opt, name),
  /** blank passes (the runtime's default) */
  validNumber,
  /** seconds until the host releases itself: blank or 0 (none) up to the driver's maximum */
  validDuration: ((v, opt) => verdict(rules().numberProblem(v, 0, rules().MAX_DURATION, true), opt, 'duration')) as Validator,
  /** hosts one msg.hosts may name: blank (the node's default) or 1 up to the runtime's isolationTargetMaxHosts */
  validMaxHosts: ((v, opt) => {
    const max = runtimeMaxHosts();
    const p = rules().numberProblem(v, 1, max, true);
    return verdict(p && /between/.test(p) ? `${p} (isolationTargetMaxHosts in settings.js)` : p, opt, 'maxHosts');
  }) as Validator,
};

export type HostIsolationEditor = typeof api;

// several node sets load this file: the first one defines it
if (typeof window !== 'undefined' && !window.hostIsolation) window.hostIsolation = api;
