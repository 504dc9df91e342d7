/**
 * The isolation-target's fields, declared once. From this list come: the config's type and what
 * the runtime copies of it (common/target.ts, isolation-target.ts), the credentials it registers,
 * the editor's defaults with their checks, its form rows and the list boxes' filling and reading
 * (rendered into isolation-target.html at build by src/editor/target-form.ts; editor.ts), and the
 * English labels of the form (merged into locales/en-US/isolation-target.json at build). Adding a
 * field is one entry here (and its use in targetOf). Pure data: bundled into the editor too.
 */

/** How the editor checks a field (the driver's rules, src/editor/rules.ts). */
export type FieldRule =
  | { kind: 'host'; optional?: boolean }
  | { kind: 'username' }
  | { kind: 'number'; min: number; max: number; integer: boolean; name: string }
  | { kind: 'list'; list: 'hosts' | 'cidrs'; name: string }
  | { kind: 'servers'; name: string };

export interface Field {
  /** the editor's default for a new node */
  readonly value: string | number | boolean | readonly string[];
  /** text box, number box, check box, multi-line text, a list (one entry a line), another target, a password, a private key */
  readonly input: 'text' | 'number' | 'checkbox' | 'textarea' | 'list' | 'target' | 'password' | 'key';
  /** the form's label (English; the build writes it into the en-US catalog) */
  readonly label: string;
  /** Font Awesome icon of the label; none: the field shares the row of the field before it */
  readonly icon?: string;
  readonly required?: boolean;
  readonly rule?: FieldRule;
  /** rows of a multi-line box */
  readonly rows?: number;
  /** the box's width (CSS) */
  readonly width?: string;
  readonly placeholder?: string;
  /** a catalog key (isolation-target.placeholder.*) for the placeholder instead */
  readonly placeholderKey?: string;
  /** a tip under the field (isolation-target.tip.*) */
  readonly tip?: string;
  /** text after the box (a unit) */
  readonly suffix?: string;
}

export const TARGET_FIELDS = {
  name: { value: '', input: 'text', label: 'Name', icon: 'tag' },
  host: { value: '', input: 'text', label: 'Host', icon: 'server', required: true, rule: { kind: 'host' }, width: '50%', placeholder: '198.18.0.2' },
  // blank port and timeout: the runtime's defaults (22, 20 s), as a flow written by hand may leave them out
  port: { value: 22, input: 'number', label: 'Port', rule: { kind: 'number', min: 1, max: 65535, integer: true, name: 'port' }, width: '60px' },
  username: { value: '', input: 'text', label: 'User', icon: 'user', required: true, rule: { kind: 'username' }, placeholder: 'isolator' },
  privateKey: { value: '', input: 'key', label: 'Private key', icon: 'key', rows: 4, placeholderKey: 'privateKey' },
  passphrase: { value: '', input: 'password', label: 'Passphrase', icon: 'lock' },
  password: { value: '', input: 'password', label: 'Password', icon: 'lock' },
  knownHosts: { value: '', input: 'textarea', label: 'Known hosts', icon: 'certificate', required: true, rows: 4, placeholder: '198.18.0.2 ssh-ed25519 AAAAC3Nza...', tip: 'knownHosts' },
  allowedHosts: { value: [], input: 'list', label: 'Allowed hosts', icon: 'list', rows: 3, placeholder: '198.18.0.0/24', rule: { kind: 'list', list: 'hosts', name: 'allowed hosts' } },
  managementCidrs: { value: [], input: 'list', label: 'Management CIDRs', icon: 'life-ring', rows: 2, placeholder: '198.18.0.0/28', rule: { kind: 'list', list: 'cidrs', name: 'management CIDRs' } },
  protectedHosts: { value: [], input: 'list', label: 'Protected hosts', icon: 'ban', rows: 2, placeholder: 'dc1.corp.example', rule: { kind: 'list', list: 'hosts', name: 'protected hosts' } },
  // the servers the dns/ntp/ldap presets open to; empty: read from the host's own configuration
  dnsServers: { value: [], input: 'list', label: 'DNS servers', icon: 'book', rows: 1, placeholderKey: 'servers', rule: { kind: 'servers', name: 'DNS servers' } },
  ntpServers: { value: [], input: 'list', label: 'NTP servers', icon: 'clock-o', rows: 1, placeholderKey: 'servers', rule: { kind: 'servers', name: 'NTP servers' } },
  ldapServers: { value: [], input: 'list', label: 'LDAP servers', icon: 'address-book', rows: 1, placeholderKey: 'servers', rule: { kind: 'servers', name: 'LDAP servers' }, tip: 'servers' },
  sudo: { value: false, input: 'checkbox', label: 'Use sudo', icon: 'shield' },
  timeout: { value: 20, input: 'number', label: 'Timeout', icon: 'clock-o', rule: { kind: 'number', min: 0.1, max: 600, integer: false, name: 'timeout' }, width: '60px', suffix: 's' },
  // the jump host (bastion): another target, or these fields; all empty: reached directly
  jumpTarget: { value: '', input: 'target', label: 'Jump via target', icon: 'random' },
  jumpHost: { value: '', input: 'text', label: 'Jump host', icon: 'random', rule: { kind: 'host', optional: true }, width: '50%', placeholder: '198.19.0.2' },
  jumpPort: { value: 22, input: 'number', label: 'Port', rule: { kind: 'number', min: 1, max: 65535, integer: true, name: 'port' }, width: '60px' },
  jumpUser: { value: '', input: 'text', label: 'Jump user', icon: 'user' },
  jumpPrivateKey: { value: '', input: 'key', label: 'Jump key', icon: 'key', rows: 3, placeholderKey: 'privateKey' },
  jumpPassphrase: { value: '', input: 'password', label: 'Jump passphrase', icon: 'lock' },
  jumpPassword: { value: '', input: 'password', label: 'Jump password', icon: 'lock' },
  jumpKnownHosts: { value: '', input: 'textarea', label: 'Jump known hosts', icon: 'certificate', rows: 2, placeholder: '198.19.0.2 ssh-ed25519 AAAAC3Nza...', tip: 'jump' },
} as const satisfies Record<string, Field>;

type Fields = typeof TARGET_FIELDS;
export type TargetFieldName = keyof Fields;

/** credentials (kept by Node-RED apart from the flow, encrypted): passwords and keys */
export type CredentialName = { [K in TargetFieldName]: Fields[K]['input'] extends 'password' | 'key' ? K : never }[TargetFieldName];
export type ConfigFieldName = Exclude<TargetFieldName, CredentialName>;

/** a value as a saved flow may hold it: lists as arrays or text, numbers as numbers or text */
type Saved<F extends Field> = F['input'] extends 'list' ? string[] | string : F['input'] extends 'number' ? number | string : F['input'] extends 'checkbox' ? boolean : string;

/** The config node's saved properties (the driver validates every value of them). */
export type TargetConfig = { [K in ConfigFieldName as Fields[K] extends { required: true } ? K : never]: Saved<Fields[K]> } & {
  [K in ConfigFieldName as Fields[K] extends { required: true } ? never : K]?: Saved<Fields[K]>;
};
export type TargetCredentials = { [K in CredentialName]?: string };

const isCredential = (f: Field) => f.input === 'password' || f.input === 'key';

export const CONFIG_FIELDS = (Object.keys(TARGET_FIELDS) as TargetFieldName[]).filter((k) => !isCredential(TARGET_FIELDS[k])) as ConfigFieldName[];
export const CREDENTIAL_FIELDS = (Object.keys(TARGET_FIELDS) as TargetFieldName[]).filter((k) => isCredential(TARGET_FIELDS[k])) as CredentialName[];
export const LIST_FIELDS = CONFIG_FIELDS.filter((k) => TARGET_FIELDS[k].input === 'list');
