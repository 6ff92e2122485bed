// Drives the page `igpt-onnx package --web` writes in a real headless Chromium (Debian's
// package, through playwright-core) and reports what the page did, for the Rust tests and the
// bench to judge: `node ci/adapters/browser.mjs PLAN.json OUT.json`.
//
// PLAN: {
//   root: the folder served at http://127.0.0.1:PORT/ (nothing else is reachable),
//   chromium: the browser (default /usr/bin/chromium),
//   args: more Chromium flags,
//   isolate: serve with COOP/COEP headers (cross-origin isolation: onnxruntime-web's threads),
//   screenshot: {page: NAME, path: PNG} (optional),
//   pages: [{ name, url (path and query under the root), timeout_s,
//             abort: [substrings of request URLs answered with a network error],
//             upload: {selector, file} (set a file input, then wait),
//             evaluate: an async function's source, called with no arguments in the page,
//             wait: 'ready' (the model loaded), 'tokens' (a generation ended; default: until
//                   igpt.done or igpt.error),
//             after: 'generate' (click Generate once the first wait ends, and wait again) }]
// }
// OUT: {chromium: version, seconds, pages: {NAME: {igpt, error_text, pixels, evaluated,
//        after, console_errors, seconds}}}
import { createReadStream, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { chromium } from 'playwright-core';

const started = Date.now();
const [planPath, outPath] = process.argv.slice(2);
if (!planPath || !outPath) {
  process.stderr.write('usage: browser.mjs PLAN.json OUT.json\n');
  process.exit(2);
}
const plan = JSON.parse(readFileSync(planPath, 'utf8'));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.mjs': 'text/javascript',
  '.js': 'text/javascript',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.txt': 'text/plain',
};

const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  let file = normalize(join(plan.root, path));
  if (!file.startsWith(normalize(plan.root))) {
    res.writeHead(403).end();
    return;
  }
  try {
    if (statSync(file).isDirectory()) file = join(file, 'index.html');
    statSync(file);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    return;
  }
  const headers = { 'content-type': TYPES[extname(file)] || 'application/octet-stream' };
  if (plan.isolate) {
    headers['cross-origin-opener-policy'] = 'same-origin';
    headers['cross-origin-embedder-policy'] = 'require-corp';
  }
  res.writeHead(200, headers);
  createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: plan.chromium || '/usr/bin/chromium',
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    ...(plan.args || []),
  ],
});

const settled = () => window.igpt && (window.igpt.done || window.igpt.error);
const snapshot = () => {
  const g = window.igpt;
  const pick = ({ done, tokens, error, backend, tokensPerSecond, labels, classifyTokens, stopped }) => ({
    done, tokens, error, backend, tokensPerSecond, labels, classifyTokens, stopped,
  });
  const e = document.getElementById('error');
  const status = document.getElementById('status');
  return {
    igpt: pick(g),
    error_text: e && !e.hidden ? e.textContent : null,
    status: status ? status.textContent : null,
    pixels: g.pixels ? g.pixels() : null,
  };
};

const out = { chromium: browser.version(), pages: {} };
try {
  for (const p of plan.pages) {
    const t0 = Date.now();
    const page = await browser.newPage();
    const consoleErrors = [];
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    for (const a of p.abort || []) await page.route((u) => u.href.includes(a), (r) => r.abort('internetdisconnected'));
    const timeout = (p.timeout_s || 60) * 1e3;
    const r = {};
    if (p.stop_at) {
      // The Stop button, clicked once as the progress bar reaches `stop_at` tokens (from the
      // page's own event loop, so where it lands does not depend on the driver's latency).
      await page.addInitScript((n) => {
        document.addEventListener('DOMContentLoaded', () => {
          const bar = document.getElementById('progress');
          new MutationObserver(() => {
            if (bar.value >= n && !window.igptStopClicked) {
              window.igptStopClicked = true;
              document.getElementById('stop').click();
            }
          }).observe(bar, { attributes: true });
        });
      }, p.stop_at);
    }
    try {
      await page.goto(origin + p.url);
      if (p.upload) {
        await page.waitForFunction(() => window.igpt && document.getElementById('status').textContent === 'ready', null, { timeout });
        await page.setInputFiles(p.upload.selector, p.upload.file);
        // An image taken as the prompt: nothing settles until Generate is clicked.
        await page.waitForFunction(
          () => window.igpt.error || document.getElementById('status').textContent.startsWith('prompt:'),
          null,
          { timeout },
        );
      }
      if (p.upload && p.after === 'generate' && !(await page.evaluate(() => window.igpt.error))) {
        // Straight to the click below.
      } else if (p.wait === 'tokens') {
        await page.waitForFunction(() => window.igpt && (window.igpt.tokens || window.igpt.error), null, { timeout, polling: 50 });
      } else if (p.wait === 'ready') {
        await page.waitForFunction(() => window.igpt && document.getElementById('status').textContent === 'ready', null, { timeout });
      } else {
        await page.waitForFunction(settled, null, { timeout, polling: 50 });
      }
      Object.assign(r, await page.evaluate(snapshot));
      if (p.evaluate) r.evaluated = await page.evaluate(`(${p.evaluate})()`);
      if (p.after === 'generate') {
        await page.evaluate(() => {
          window.igpt.error = null;
        });
        await page.click('#generate');
        await page.waitForFunction(settled, null, { timeout, polling: 50 });
        r.after = await page.evaluate(snapshot);
      }
      if (plan.screenshot && plan.screenshot.page === p.name) {
        await page.screenshot({ path: plan.screenshot.path, fullPage: true });
      }
    } catch (e) {
      r.driver_error = String(e && e.message ? e.message : e).split('\n')[0];
      try {
        Object.assign(r, await page.evaluate(snapshot));
      } catch {}
    }
    r.console_errors = consoleErrors;
    r.seconds = (Date.now() - t0) / 1e3;
    out.pages[p.name] = r;
    await page.close();
  }
} finally {
  await browser.close();
  server.close();
}
out.seconds = (Date.now() - started) / 1e3;
writeFileSync(outPath, JSON.stringify(out));
