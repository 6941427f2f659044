/**
 * The job the page and the service hand to their worker, run here directly; and the page that
 * carries the worker's source.
 */
import assert from "node:assert/strict";
import { prune } from "../mod.ts";
import { jobError, runJob } from "../src/job.ts";
import { PruneError } from "../src/errors.ts";
import { composePage, WORKER_ELEMENT_ID } from "../src/serve/page.ts";

const MODEL = await Deno.readFile(new URL("./fixtures/timm_vit.onnx", import.meta.url));

Deno.test("job: a kept model prunes again and again as given; errors come back as values", async () => {
  const given = MODEL.slice();
  const state = {};
  const first = await runJob(state, {
    id: 1,
    bytes: given,
    keep: true,
    values: {},
    surface: "page",
    dryRun: true,
  });
  assert.ok(first.reply.ok && !first.reply.bytes, "a dry run answers the report only");
  assert.ok(first.reply.report.groups.some((g) => g.kind === "attention"));
  const values = { "prune-num-heads": true, "head-pruning-ratio": "0.5" } as const;
  const expected = await prune(MODEL, { pruneNumHeads: true, headPruningRatio: 0.5 });
  for (const id of [2, 3]) {
    const { reply, transfer } = await runJob(state, { id, values, surface: "page", keep: true });
    assert.ok(reply.ok, JSON.stringify(reply));
    assert.deepEqual(reply.bytes, expected.bytes, `job ${id}: the library's bytes`);
    assert.equal(transfer.length, 1, "the pruned bytes are transferred, not copied");
  }
  assert.deepEqual(given, MODEL, "the kept model's bytes are unchanged");

  const bad = await runJob(state, {
    id: 4,
    values: { "pruning-ratio": "2" },
    surface: "page",
  });
  assert.deepEqual(bad.reply, {
    id: 4,
    ok: false,
    error: {
      kind: "usage",
      code: "bad-option",
      message: "pruning-ratio: 2 is out of range (expected 0 ≤ R < 1)",
    },
  });
  const notOnnx = await runJob({}, {
    id: 5,
    bytes: new TextEncoder().encode("hello"),
    values: {},
    surface: "service",
  });
  assert.ok(!notOnnx.reply.ok && notOnnx.reply.error.kind === "model");
  assert.match(notOnnx.reply.error.message, /^the request body: not an ONNX model/);
  const none = await runJob({}, { id: 6, values: {}, surface: "service" });
  assert.ok(!none.reply.ok && /no model/.test(none.reply.error.message));
});

Deno.test("the page carries the worker's source exactly, whatever it holds", () => {
  const worker = 'const s = "</script><!-- x -->"; self.onmessage = () => {};\n';
  const page = composePage("<body><!-- worker-source --></body>", worker);
  const m = page.match(
    new RegExp(`<script type="application/json" id="${WORKER_ELEMENT_ID}">(.*)</script>`),
  );
  assert.ok(m && !m[1].includes("<"), "no < inside the element");
  assert.equal(JSON.parse(m[1]), worker);
  assert.throws(() => composePage("<body></body>", worker), /must hold <!-- worker-source -->/);
});

Deno.test("job: onnxruntime missing where it runs is the model's need, not a defect", () => {
  for (
    const e of [
      new TypeError("Failed to resolve module specifier 'onnxruntime-web'"),
      new PruneError(
        "probe-failed",
        "onnxruntime cannot load the model: no available backend found",
      ),
    ]
  ) {
    const error = jobError(e);
    assert.equal(error.kind, "model");
    assert.equal(error.code, "needs-onnxruntime");
    assert.match(error.message, /^the shapes of this model's tensors cannot be worked out/);
  }
  assert.deepEqual(jobError(new RangeError("boom")), {
    kind: "internal",
    code: "internal",
    message: "internal error: boom",
  });
  assert.equal(jobError(new PruneError("not-onnx", "x")).kind, "model");
  assert.equal(jobError(new PruneError("bad-option", "x")).kind, "usage");
});
