import type { Node, NodeAPI, NodeDef } from 'node-red';
import { ValidationError, type Exception, type PresetName } from '../driver';
import { arrayField, driver, handleInput } from './shared';

interface IsolateHostConfig extends NodeDef {
  target: string;
  presets?: PresetName[];
  exceptions?: Exception[];
  mode?: string;
  duration?: number | string;
  verify?: boolean;
}

export = function (RED: NodeAPI): void {
  function IsolateHostNode(this: Node, config: IsolateHostConfig) {
    RED.nodes.createNode(this, config);
    const presets = Array.isArray(config.presets) ? config.presets : ['ssh'];
    const exceptions = Array.isArray(config.exceptions) ? config.exceptions : [];
    handleInput(RED, this, config.target, (target, msg) => {
      const duration = Number(msg.duration ?? config.duration ?? 0);
      if (!Number.isFinite(duration) || duration < 0) {
        throw new ValidationError('duration must be a number of seconds >= 0', [{ path: 'duration', message: 'invalid' }]);
      }
      if (duration > 0) {
        throw new ValidationError('duration (timed auto-release) is not available yet; use 0 and unisolate-host', [
          { path: 'duration', message: 'not supported yet' },
        ]);
      }
      return driver.isolate(target, {
        presets: [...presets, ...arrayField(msg, 'presets')] as PresetName[],
        exceptions: [...exceptions, ...arrayField(msg, 'exceptions')] as Exception[],
        mode: (msg.mode ?? config.mode ?? 'enforce') as 'enforce',
        reason: msg.reason === undefined || msg.reason === null ? undefined : (msg.reason as string),
      });
    });
  }
  RED.nodes.registerType('isolate-host', IsolateHostNode);
};
