/**
 * The pruning page in a real headless browser (Debian's chromium, driven by playwright-core):
 * opened from the service and as a file, a model chosen, detected blocks shown, pruned in the
 * page, the download checked in onnxruntime and against the library's bytes. Every request the
 * page makes is recorded: the model is never sent.
 *
 * Without chromium the test is skipped, unless PRUNE_VIT_REQUIRE_BROWSER=1 (as in CI), where it
 * fails. PRUNE_VIT_CHROMIUM names another browser binary; PRUNE_VIT_SCREENSHOT=PATH saves a
 * screenshot of the pruned page (the README's).
 */
import assert from "node:assert/strict";
import { chromium, type Page } from "playwright-core";
import { prune } from "../mod.ts";
import { startService } from "./helpers/service.ts";
import { runOnce } from "./helpers/ort_run.ts";
import { buildMlpModel } from "./helpers/onnx_builders.ts";
import { encodeModel } from "../src/onnx/model_io.ts";
import { Buffer } from "node:buffer";

const FIXTURE = new URL("./fixtures/fmnist_vit.onnx", import.meta.url).pathname;
const PAGE_FILE = new URL("../web/index.html", import.meta.url).href;

function findBrowser(): string | undefined {
  const given = Deno.env.get("PRUNE_VIT_CHROMIUM");
  for (const p of [given, "/usr/bin/chromium", "/usr/bin/chromium-browser"]) {
    if (!p) continue;
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not there */ }
  }
  return undefined;
}

Deno.test("web: the page's script has no `using` declarations (not every browser parses them)", async () => {
  const page = await Deno.readTextFile(new URL(PAGE_FILE));
  const found = page.match(/[;{}()]\s*(?:await\s+)?using\s+[A-Za-z_$][\w$]*\s*=/);
  assert.equal(found, null, `the bundle keeps a \`using\` declaration: ${found?.[0]}`);
});

const BROWSER = findBrowser();
const REQUIRED = Deno.env.get("PRUNE_VIT_REQUIRE_BROWSER") === "1";

function browserTest(name: string, fn: () => Promise<void>) {
  const missing = BROWSER ? "" : "no chromium (apt-get install chromium)";
  Deno.test({
    name: missing && !REQUIRED ? `web: ${name} — SKIPPED (${missing})` : `web: ${name}`,
    ignore: !!missing && !REQUIRED,
    fn: async () => {
      if (missing) throw new Error(`PRUNE_VIT_REQUIRE_BROWSER=1 but ${missing}`);
      await fn();
    },
    // playwright keeps its own timers and pipes beyond a test's end.
    sanitizeOps: false,
    sanitizeResources: false,
  });
}

async function withPage(fn: (page: Page, requests: string[]) => Promise<void>) {
  const browser = await chromium.launch({
    executablePath: BROWSER,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  try {
    const context = await browser.newContext({
      viewport: { width: 1280, height: 900 },
      acceptDownloads: true,
    });
    const page = await context.newPage();
    const requests: string[] = [];
    page.on("request", (r) => {
      requests.push(
        `${r.method()} ${r.url()}${r.postDataBuffer()?.length ? " (with a body)" : ""}`,
      );
    });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await fn(page, requests);
    assert.deepEqual(errors, [], "no script error in the page");
  } finally {
    await browser.close();
  }
}

/** Chooses the model and waits for the detected blocks (or an error). */
async function load(page: Page) {
  await page.waitForSelector("body[data-ready=true]");
  await page.setInputFiles("#file", FIXTURE);
  await page.waitForSelector("#loaded:not([hidden]), #load-error:not([hidden])", {
    timeout: 60_000,
  });
  assert.equal(
    await page.isHidden("#load-error"),
    true,
    await page.textContent("#load-error") ?? "",
  );
}

async function pruneInPage(page: Page) {
  const runs = Number(await page.getAttribute("body", "data-runs") ?? 0);
  await page.click("#prune");
  await page.waitForSelector(`body[data-runs="${runs + 1}"]`, { timeout: 60_000 });
}

async function download(page: Page): Promise<Uint8Array> {
  const [file] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
  assert.equal(file.suggestedFilename(), "fmnist_vit.pruned.onnx");
  return await Deno.readFile(await file.path());
}

browserTest(
  "load, see the blocks, prune, download: the library's model, run in onnxruntime",
  async () => {
    const service = await startService();
    try {
      await withPage(async (page, requests) => {
        await page.goto(`${service.url}/`);
        await load(page);
        // Six blocks of 3 heads of 32 dims and 384 MLP channels, embedding width 96.
        const rows = await page.$$eval(
          "#detected-blocks tbody tr",
          (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)),
        );
        assert.equal(rows.length, 6);
        for (const [i, r] of rows.entries()) {
          assert.deepEqual(
            [r[0], r[2], r[3], r[4]],
            [String(i), "3", "32", "384"],
            `block ${i}: ${r.join(" | ")}`,
          );
        }
        assert.match(await page.textContent("#detected") ?? "", /embedding width 96/);

        await page.fill("#opt-head-pruning-ratio", "0.5");
        await page.fill("#opt-pruning-ratio", "0.25");
        await page.check("#opt-prune-num-heads");
        await pruneInPage(page);
        assert.equal(await page.isHidden("#error"), true, await page.textContent("#error") ?? "");
        const report = await page.textContent("#report") ?? "";
        assert.match(report, /3 → 1/, "heads before → after in the table");
        assert.match(report, /384 → 288/, "MLP channels before → after");
        assert.equal(await page.locator("#report svg rect[fill='#4e79a7']").count(), 7, "chart");
        assert.match(
          await page.textContent("#cli-command") ?? "",
          /--pruning-ratio 0\.25 --head-pruning-ratio 0\.5 --prune-num-heads$/,
        );

        const bytes = await download(page);
        const expected = await prune(await Deno.readFile(FIXTURE), {
          pruneNumHeads: true,
          headPruningRatio: 0.5,
          pruningRatio: 0.25,
        });
        assert.deepEqual(bytes, expected.bytes, "the page's model is the library's");
        assert.deepEqual(await runOnce(bytes), [1, 10], "the download runs in onnxruntime");

        // A bad value is refused in the page, naming the option, as the command line would.
        await page.fill("#opt-pruning-ratio", "1.5");
        await pruneInPage(page);
        assert.match(
          await page.textContent("#error") ?? "",
          /^pruning-ratio: 1\.5 is out of range \(expected 0 ≤ R < 1\)$/,
        );
        // Where the user is looking (by the Prune button), and the earlier result is gone.
        const inView = await page.evaluate(
          `(() => { const r = document.getElementById("error").getBoundingClientRect();
            return r.top >= 0 && r.bottom <= innerHeight; })()`,
        );
        assert.equal(inView, true, "the message is in view");
        assert.equal(await page.isHidden("#result"), true);

        // A target instead of ratios.
        await page.check('input[name="mode"][value="target"]');
        assert.equal(await page.isDisabled("#opt-pruning-ratio"), true);
        await page.fill("#opt-target-macs", "50%");
        await pruneInPage(page);
        assert.equal(await page.isHidden("#error"), true, await page.textContent("#error") ?? "");
        assert.match(
          await page.textContent("#report") ?? "",
          /MACs ≤ 5\.84 M: reached [\d.]+ M from 11\.7 M in \d steps? \(met\)/,
        );

        // Only the page itself was fetched (and the blobs the page made: the worker, the download);
        // no request carried a body.
        assert.ok(requests.length >= 1);
        for (const r of requests) {
          const local = r.startsWith(`GET ${service.url}/`) ||
            r.startsWith(`GET blob:${service.url}/`);
          assert.ok(local, `only the page (and the page's own blobs) is fetched: ${r}`);
          assert.ok(!r.endsWith("(with a body)"), r);
        }
      });
    } finally {
      await service.stop();
    }
  },
);

browserTest("the page works as a file, with no server at all", async () => {
  await withPage(async (page, requests) => {
    await page.goto(PAGE_FILE);
    await load(page);
    await pruneInPage(page);
    assert.equal(await page.isHidden("#error"), true, await page.textContent("#error") ?? "");
    const bytes = await download(page);
    const expected = await prune(await Deno.readFile(FIXTURE), {
      pruneNumHeads: true,
      headPruningRatio: 0.5,
      pruningRatio: 0.3,
    });
    assert.deepEqual(bytes, expected.bytes, "the defaults: whole heads 0.5, MLP 0.3");
    const shot = Deno.env.get("PRUNE_VIT_SCREENSHOT");
    if (shot) await page.screenshot({ path: shot, fullPage: true });

    // A file dropped on the page is read as one chosen.
    const small = await Deno.readFile(new URL("./fixtures/timm_vit.onnx", import.meta.url));
    // (Page code as text: this file is type-checked without the DOM's types.)
    await page.evaluate(`(() => {
      const data = new DataTransfer();
      data.items.add(new File([new Uint8Array(${JSON.stringify([...small])})], "timm_vit.onnx"));
      document.getElementById("drop").dispatchEvent(
        new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }),
      );
    })()`);
    await page.waitForFunction(`document.getElementById("model-name").textContent ===
      "timm_vit.onnx" && !document.getElementById("loaded").hidden`);
    assert.ok(await page.locator("#detected-blocks tbody tr").count() > 0);

    // A model that needs onnxruntime to be sized is refused, saying so.
    await page.setInputFiles("#file", {
      name: "mlp.onnx",
      mimeType: "application/octet-stream",
      buffer: Buffer.from(encodeModel(buildMlpModel())),
    });
    await page.waitForSelector("#load-error:not([hidden])", { timeout: 60_000 });
    assert.match(
      await page.textContent("#load-error") ?? "",
      /^the shapes of this model's tensors cannot be worked out from the graph alone/,
    );
    assert.equal(await page.isHidden("#loaded"), true);
    for (const r of requests) assert.ok(/^GET (file:|blob:)/.test(r), r);
  });
});
