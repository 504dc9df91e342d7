import type { Node, NodeAPI, NodeDef } from 'node-red';
import { ValidationError, type Exception, type PresetName } from '../driver';
import { arrayField, handleInput, sharedDriver, wallOf } from './shared';

interface IsolateHostConfig extends NodeDef {
  target: string;
  presets?: PresetName[];
  exceptions?: Exception[];
  mode?: string;
  duration?: number | string;
  verify?: boolean;
  force?: boolean;
  wall?: string;
  persist?: boolean;
}

export = function (RED: NodeAPI): void {
  const driver = sharedDriver(RED.settings as unknown as Record<string, unknown>);
  function IsolateHostNode(this: Node, config: IsolateHostConfig) {
    RED.nodes.createNode(this, config);
    const presets = Array.isArray(config.presets) ? config.presets : ['ssh'];
    const exceptions = Array.isArray(config.exceptions) ? config.exceptions : [];
    handleInput(RED, this, config.target, (target, msg, info) => {
      const raw = msg.duration ?? config.duration ?? 0;
      const duration = raw === '' ? 0 : Number(raw);
      if (typeof raw === 'object' || typeof raw === 'boolean' || !Number.isInteger(duration) || duration < 0) {
        throw new ValidationError('duration must be a whole number of seconds >= 0 (0 = until unisolated)', [{ path: 'duration', message: 'invalid' }]);
      }
      return driver.isolate(target, {
        duration,
        presets: [...presets, ...arrayField(msg, 'presets')] as PresetName[],
        exceptions: [...exceptions, ...arrayField(msg, 'exceptions')] as Exception[],
        mode: (msg.mode ?? config.mode ?? 'enforce') as 'enforce',
        reason: msg.reason === undefined || msg.reason === null ? undefined : (msg.reason as string),
        force: (msg.force ?? config.force ?? false) as boolean,
        verify: config.verify !== false,
        wall: wallOf(msg, config.wall),
        persist: (msg.persist ?? config.persist ?? false) as boolean,
      }, info);
    }, 'isolate');
  }
  RED.nodes.registerType('isolate-host', IsolateHostNode);
};
