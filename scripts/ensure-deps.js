'use strict';
// The quick start's commands work on a fresh clone: install the npm dependencies from the lock
// file (npm ci) when they are not there yet.
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
if (!fs.existsSync(path.join(root, 'node_modules', '.package-lock.json'))) {
  console.log('installing npm dependencies (npm ci) ...');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
}
