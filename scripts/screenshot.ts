/**
 * `node dist/scripts/screenshot.js [--out FILE] [--runtime 4|5]`: re-shoots the README's picture,
 * docs/images/editor-alert-flow.png, with the real browser and a real Node-RED runtime: one lab host
 * (so the example flows are wired as the demo wires them), Node-RED with every example flow
 * deployed, Debian's Chromium at 1280x640, the "Alert to isolation" tab, the sidebar closed so the
 * whole flow shows, and the palette scrolled to the pack's own category, "host isolation".
 *
 * As root, under the shared lab lock, since it builds lab namespaces and starts Node-RED:
 *   npm run build && NRHI_TREE_CACHE=/root/.lab/trees flock /tmp/nrhi-lab.lock node dist/scripts/screenshot.js
 * It removes everything it made when it ends, whether the shot succeeded or not.
 */
import * as fs from 'fs';
import * as path from 'path';
import { launchChromium, type Chromium } from '../test/lab/browser';
import { createLab, type Lab } from '../test/lab/lab';
import { REPO_ROOT, startNodeRed, type NodeRed } from '../test/lab/nodered';
import { wiredExamples } from './demo';

declare const RED: {
  nodes: { filterNodes(q: { type: string }): unknown[] };
  workspaces: { show(id: string): void };
  menu: { setSelected(id: string, on: boolean): void; isSelected(id: string): boolean };
};

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

async function main(): Promise<void> {
  const out = path.resolve(arg('--out', path.join(REPO_ROOT, 'docs', 'images', 'editor-alert-flow.png')));
  const rt = arg('--runtime', '4') === '5' ? '5' : '4';
  let lab: Lab | undefined;
  let red: NodeRed | undefined;
  let browser: Chromium | undefined;
  try {
    lab = await createLab({ hosts: 1 });
    red = await startNodeRed({ runtime: rt });
    await red.deploy(wiredExamples(lab));
    browser = await launchChromium({ width: 1280, height: 640 });
    const { page } = browser;
    await page.goto(red.url);
    await page.waitForSelector('#red-ui-palette-base-category-host_isolation', { timeout: 60_000 });
    await page.waitForFunction(() => typeof RED !== 'undefined' && RED.nodes.filterNodes({ type: 'isolate-host' }).length > 0, undefined, { timeout: 30_000 });
    // the example's tab (f1 in examples/01-alert-to-isolation.json), the sidebar closed: the whole flow in view
    await page.evaluate(() => {
      RED.workspaces.show('f1');
      if (RED.menu.isSelected('menu-item-sidebar')) RED.menu.setSelected('menu-item-sidebar', false);
    });
    // the palette scrolled so the pack's category shows, its five node types under "host isolation"
    await page.evaluate(() => document.getElementById('red-ui-palette-base-category-host_isolation')?.scrollIntoView({ block: 'start' }));
    await page.waitForTimeout(800); // the sidebar's slide and the canvas redraw
    const shown = await page.evaluate(() => {
      const cat = document.getElementById('red-ui-palette-base-category-host_isolation')?.getBoundingClientRect();
      const nodes = Array.from(document.querySelectorAll('#red-ui-workspace-chart .red-ui-flow-node-group')).map((g) => g.getBoundingClientRect());
      const chart = document.getElementById('red-ui-workspace-chart')?.getBoundingClientRect();
      return { cat: cat && cat.top >= 0 && cat.top < window.innerHeight, right: Math.max(...nodes.map((r) => r.right)), chartRight: chart?.right ?? 0, nodes: nodes.length };
    });
    if (!shown.cat) throw new Error('the host isolation category is not in view');
    if (!(shown.nodes > 0 && shown.right <= shown.chartRight)) throw new Error(`the flow is cut off at the right (${JSON.stringify(shown)})`);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    await page.screenshot({ path: out });
    if (browser.consoleErrors.length) console.warn(`browser console errors:\n  ${browser.consoleErrors.join('\n  ')}`);
    console.log(`wrote ${path.relative(process.cwd(), out)} (${red.runtime.label}; ${shown.nodes} nodes, rightmost at ${Math.round(shown.right)} px of ${Math.round(shown.chartRight)})`);
  } finally {
    await browser?.close();
    await red?.stop();
    if (red) fs.rmSync(red.userDir, { recursive: true, force: true });
    await lab?.close();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack ?? err.message : String(err));
  process.exitCode = 1;
});
