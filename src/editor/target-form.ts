/**
 * Build-time parts of the nodes' editor HTML (scripts/copy-assets.js fills each
 * `<!-- #shared NAME -->`, as for the help): the isolation-target's defaults, credentials and form
 * rows rendered from its field list (src/nodes/isolation-target/fields.ts), and each node's config
 * version (its migrations). Nothing of it is written twice by hand.
 */
import { currentVersion } from '../nodes/common/migrate';
import { CONFIG_FIELDS, CREDENTIAL_FIELDS, TARGET_FIELDS, type Field, type FieldRule, type TargetFieldName } from '../nodes/isolation-target/fields';
import { DEFAULT_TABLE } from '../driver/policy';
import { SUDOERS_FEATURES } from '../driver/sudoers';
import { NODE_MIGRATIONS } from './migrations';

const PREFIX = 'node-config-input';
const attr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

/** the `validate` of a default: the editor's shared check (looked up when used) */
function validator(rule: FieldRule): string {
  const call = (() => {
    switch (rule.kind) {
      case 'host':
        return rule.optional ? '!v || window.hostIsolation.validHost(v, opt)' : 'window.hostIsolation.validHost(v, opt)';
      case 'username':
        return 'window.hostIsolation.validUsername(v, opt)';
      case 'number':
        return `window.hostIsolation.validNumber(${JSON.stringify(rule.name)}, ${rule.min}, ${rule.max}${rule.integer ? '' : ', false'})(v, opt)`;
      case 'list':
        return `window.hostIsolation.validList(${JSON.stringify(rule.list)}, ${JSON.stringify(rule.name)})(v, opt)`;
      case 'servers':
        return `window.hostIsolation.validServers(${JSON.stringify(rule.name)})(v, opt)`;
    }
  })();
  return `function (v, opt) { return ${call}; }`;
}

/** `defaults: { ... }` of isolation-target's registerType, with `version`. */
export function targetDefaults(): string {
  const rows = CONFIG_FIELDS.map((k) => {
    const f: Field = TARGET_FIELDS[k];
    const parts = [`value: ${JSON.stringify(f.value)}`];
    if (f.required) parts.push('required: true');
    if (f.input === 'target') parts.push("type: 'isolation-target'", 'required: false');
    if (f.rule) parts.push(`validate: ${validator(f.rule)}`);
    return `      ${k}: { ${parts.join(', ')} }`;
  });
  rows.splice(1, 0, `      version: { value: ${currentVersion(NODE_MIGRATIONS['isolation-target'])} }`);
  return `{\n${rows.join(',\n')}\n    }`;
}

/** `credentials: { ... }`: every password and key field. */
export function targetCredentials(): string {
  return `{\n${CREDENTIAL_FIELDS.map((k) => `      ${k}: { type: 'password' }`).join(',\n')}\n    }`;
}

function control(k: TargetFieldName, f: Field): string {
  const id = `${PREFIX}-${k}`;
  const style = (extra: string) => `style="${f.width ? `width: ${f.width};` : extra}${f.input === 'textarea' || f.input === 'list' || f.input === 'key' ? ' font-family: monospace;' : ''}"`;
  const ph = f.placeholderKey ? ` data-i18n="[placeholder]isolation-target.placeholder.${f.placeholderKey}"` : f.placeholder ? ` placeholder="${attr(f.placeholder)}"` : '';
  switch (f.input) {
    case 'checkbox':
      return `<input type="checkbox" id="${id}" style="width: auto;">`;
    case 'password':
      return `<input type="password" id="${id}">`;
    case 'textarea':
      return `<textarea id="${id}" rows="${f.rows ?? 2}" ${style('width: 70%;')}${ph}></textarea>`;
    case 'list':
      // a list is edited as text, one entry a line (editor.ts: targetPrepare, targetSave)
      return `<textarea id="${id}Text" rows="${f.rows ?? 2}" ${style('width: 70%;')}${ph}></textarea>`;
    case 'key':
      // the credential's own input stays hidden: Node-RED puts __PWRD__ there for a stored key (editor.ts: keyBox);
      // a text area, as a password input would drop the key's newlines
      return `<textarea id="${id}" style="display: none;"></textarea><textarea id="${id}Text" rows="${f.rows ?? 2}" ${style('width: 70%;')}${ph}></textarea>`;
    default:
      return `<input type="text" id="${id}"${f.width ? ` style="width: ${f.width}"` : ''}${ph}>${f.suffix ? ` ${f.suffix}` : ''}`;
  }
}

/** The form rows of isolation-target, in the list's order; a field without icon shares the row before it. */
export function targetForm(): string {
  const keys = Object.keys(TARGET_FIELDS) as TargetFieldName[];
  const out: string[] = [];
  let row: string[] | null = null;
  const close = () => {
    if (row) out.push(`  <div class="form-row">\n    ${row.join('\n    ')}\n  </div>`);
    row = null;
  };
  for (const k of keys) {
    const f: Field = TARGET_FIELDS[k];
    const forId = `${PREFIX}-${k}${f.input === 'list' || f.input === 'key' ? 'Text' : ''}`;
    const label = `<span data-i18n="isolation-target.label.${k}"></span>`;
    if (f.icon === undefined && row) {
      row.push(`<label for="${forId}" style="margin-left: 10px; width: 40px;">${label}</label>`, control(k, f));
    } else {
      close();
      row = [`<label for="${forId}"><i class="fa fa-${f.icon}"></i> ${label}</label>`, control(k, f)];
    }
    if (f.input === 'key') {
      close();
      out.push(
        `  <div class="form-row nrhi-key-stored" id="${PREFIX}-${k}Stored" style="display: none;">\n    <label></label>\n    <i class="fa fa-lock"></i> <span data-i18n="isolation-target.tip.keyStored"></span> <a href="#" class="nrhi-key-remove" data-i18n="isolation-target.tip.keyRemove"></a>\n  </div>`,
      );
    }
    if (f.tip) {
      close();
      out.push(`  <div class="form-tips" data-i18n="[html]isolation-target.tip.${f.tip}"></div>`);
    }
  }
  close();
  return out.join('\n');
}

/**
 * isolation-target's "Host set-up" section, under the form: closed until its button is pressed,
 * then the set-up of this target's account (src/driver/setup.ts, in the browser: editor.ts
 * setupSection) for the form's user, the table and features ticked here, and a public key pasted
 * here. Its inputs are not the node's properties (ids node-config-setup-*): nothing is saved.
 */
export function targetSetup(): string {
  const S = 'node-config-setup';
  const row = (label: string, icon: string, forId: string, body: string) =>
    `  <div class="form-row">\n    <label for="${forId}"><i class="fa fa-${icon}"></i> <span data-i18n="isolation-target.setup.${label}"></span></label>\n    ${body}\n  </div>`;
  const features = SUDOERS_FEATURES.map(
    (f) =>
      `<label style="width: auto; margin-right: 12px;" data-i18n="[title]isolation-target.setup.about.${f}"><input type="checkbox" id="${S}-feature-${f}" data-feature="${f}" style="width: auto; vertical-align: top; margin-right: 4px;"${f === 'isolate' ? ' checked disabled' : ''}>${f}</label>`,
  ).join('');
  return [
    `  <div class="form-row nrhi-setup-row">\n    <label><i class="fa fa-terminal"></i> <span data-i18n="isolation-target.setup.title"></span></label>\n    <button type="button" class="red-ui-button" id="${S}-toggle"><i class="fa fa-caret-right"></i> <span data-i18n="isolation-target.setup.show"></span></button>\n  </div>`,
    `  <div id="${S}" style="display: none;">`,
    `  <div class="form-tips" data-i18n="[html]isolation-target.setup.tip"></div>`,
    row('table', 'table', `${S}-table`, `<input type="text" id="${S}-table" value="${attr(DEFAULT_TABLE)}" style="width: 50%;">`),
    row('features', 'check-square-o', `${S}-feature-persist`, `<span id="${S}-features">${features}</span>`),
    row('publicKey', 'key', `${S}-key`, `<textarea id="${S}-key" rows="2" style="width: 70%; font-family: monospace;" data-i18n="[placeholder]isolation-target.setup.keyPlaceholder"></textarea>`),
    row(
      'format',
      'file-code-o',
      `${S}-format`,
      `<select id="${S}-format" style="width: 160px;"><option value="sh" data-i18n="isolation-target.setup.sh"></option><option value="ansible" data-i18n="isolation-target.setup.ansible"></option></select> <button type="button" class="red-ui-button" id="${S}-copy"><i class="fa fa-clipboard"></i> <span data-i18n="isolation-target.setup.copy"></span></button>`,
    ),
    `  <div class="form-row">\n    <div id="${S}-error" class="nrhi-setup-error" style="display: none; color: var(--red-ui-text-color-error, #d00); white-space: pre-wrap;"></div>\n    <pre id="${S}-output" style="display: none; max-height: 320px; overflow: auto; font-size: 11px; white-space: pre;"></pre>\n  </div>`,
    '  </div>',
  ].join('\n');
}

/** The English labels of the form, for the en-US catalog. */
export function targetLabels(): Record<string, string> {
  return Object.fromEntries((Object.keys(TARGET_FIELDS) as TargetFieldName[]).map((k) => [k, TARGET_FIELDS[k].label]));
}

/** The fragments the editor HTML takes: `<!-- #shared target-defaults -->`, ..., `<!-- #shared version-<type> -->`. */
export function editorFragments(): Record<string, string> {
  return {
    'target-defaults': targetDefaults(),
    'target-credentials': targetCredentials(),
    'target-form': `${targetForm()}\n${targetSetup()}`,
    ...Object.fromEntries(Object.entries(NODE_MIGRATIONS).map(([type, m]) => [`version-${type}`, String(currentVersion(m))])),
  };
}
