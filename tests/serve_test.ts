/**
 * The service, started as `deno task serve` starts it (only --allow-net and --allow-env) and
 * sent real requests: the pruned bytes equal the library's for the same options; bad bytes,
 * bad options, oversize bodies, a full queue and a job past its time get clear 4xx/5xx answers;
 * 20 clients at once all get the right model while the server's memory stays bounded.
 */
import assert from "node:assert/strict";
import { prune } from "../mod.ts";
import { parseCliArgs } from "../src/cli.ts";
import type { PruneReport } from "../src/report.ts";
import { type RunningService, startService } from "./helpers/service.ts";
import { runOnce } from "./helpers/ort_run.ts";
import { buildMlpModel } from "./helpers/onnx_builders.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { pruneToTarget } from "../src/target.ts";

const FMNIST = await Deno.readFile(new URL("./fixtures/fmnist_vit.onnx", import.meta.url));
const SMALL = await Deno.readFile(new URL("./fixtures/timm_vit.onnx", import.meta.url));

/** The library's result for the command line's spelling of the options. */
async function library(model: Uint8Array, args: string[], dryRun = false) {
  const parsed = parseCliArgs(["m.onnx", ...args]);
  assert.ok(typeof parsed === "object");
  return await prune(model, { ...parsed.options, ...(dryRun ? { dryRun } : {}) });
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function post(
  service: RunningService,
  path: string,
  body: BodyInit | null,
  headers: Record<string, string> = {},
) {
  const res = await fetch(`${service.url}${path}`, { method: "POST", body, headers });
  return res;
}

/** A failing answer: the status, a JSON body whose message matches, no stack trace. */
async function assertRefused(res: Response, status: number, pattern: RegExp, label: string) {
  const text = await res.text();
  assert.equal(res.status, status, `${label}: status (body: ${text})`);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/, label);
  const body = JSON.parse(text) as { error: string; code: string };
  assert.match(body.error, pattern, `${label}: message`);
  assert.doesNotMatch(body.error, /\n\s+at /, `${label}: no stack trace`);
}

Deno.test("service: /prune answers the library's bytes, /report its report", async () => {
  const service = await startService();
  try {
    const cases: [string, string[]][] = [
      [
        "prune-num-heads&head-pruning-ratio=0.5&pruning-ratio=0.3",
        ["--prune-num-heads", "--head-pruning-ratio", "0.5", "--pruning-ratio", "0.3"],
      ],
      [
        "prune-head-dims&head-pruning-ratio=0.25&round-to=8",
        ["--prune-head-dims", "--head-pruning-ratio", "0.25", "--round-to", "8"],
      ],
      ["target-macs=60%25&prune-num-heads", ["--target-macs", "60%", "--prune-num-heads"]],
    ];
    for (const [query, args] of cases) {
      const res = await post(service, `/prune?${query}`, FMNIST);
      assert.equal(res.status, 200, `${query}: ${res.status}`);
      assert.equal(res.headers.get("content-type"), "application/octet-stream");
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (args[0] !== "--target-macs") {
        const expected = await library(FMNIST, args);
        assert.ok(sameBytes(bytes, expected.bytes), `${query}: the library's bytes`);
      }
      const summary = JSON.parse(res.headers.get("x-prune-summary")!);
      assert.ok(summary.params.after < summary.params.before, query);
      assert.deepEqual(await runOnce(bytes), [1, 10], `${query}: runs in onnxruntime`);
    }

    // A target run prunes in steps: the same steps as the library's.
    const targetBytes = new Uint8Array(
      await (await post(service, "/prune?target-macs=60%25&prune-num-heads", FMNIST))
        .arrayBuffer(),
    );
    const viaLibrary = await pruneToTarget(decodeModel(FMNIST), { macs: 0.6 }, {
      pruneNumHeads: true,
    });
    assert.ok(sameBytes(targetBytes, encodeModel(viaLibrary.model)), "target: library's bytes");

    const res = await post(service, "/report?prune-num-heads&head-pruning-ratio=0.5", FMNIST);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /application\/json/);
    const report = await res.json() as PruneReport;
    const expected = await library(
      FMNIST,
      ["--prune-num-heads", "--head-pruning-ratio", "0.5"],
      true,
    );
    assert.deepEqual(report.blocks, expected.report.blocks);
    assert.deepEqual(report.groups, expected.report.groups);
    assert.deepEqual(report.params, expected.report.params);

    // The whole report with the model: a form of two parts.
    const form = await (await post(service, "/prune?pruning-ratio=0.5", FMNIST, {
      accept: "multipart/form-data",
    })).formData();
    const model = new Uint8Array(await (form.get("model") as File).arrayBuffer());
    const full = JSON.parse(await (form.get("report") as File).text()) as PruneReport;
    const mlp = await library(FMNIST, ["--pruning-ratio", "0.5"]);
    assert.ok(sameBytes(model, mlp.bytes), "multipart: the library's bytes");
    assert.deepEqual(full.blocks, mlp.report.blocks);
  } finally {
    await service.stop();
  }
});

Deno.test("service: bad bytes, bad options, wrong routes and oversize bodies get clear answers", async () => {
  const service = await startService({ PRUNE_VIT_MAX_MODEL_MB: "3" });
  try {
    await assertRefused(
      await post(service, "/prune?pruning-ratio=0.5", new TextEncoder().encode("not a model")),
      422,
      /not an ONNX model/,
      "bad bytes",
    );
    await assertRefused(
      await post(service, "/prune?pruning-ratio=0.5", FMNIST.slice(0, 100_000)),
      422,
      /truncated|not an ONNX model/,
      "truncated model",
    );
    await assertRefused(
      await post(service, "/prune?pruning-ratio=0.5", new Uint8Array()),
      400,
      /body is empty/,
      "empty body",
    );
    await assertRefused(
      await post(service, "/prune?head-pruning-ratio=1.5", SMALL),
      400,
      /^head-pruning-ratio: 1\.5 is out of range/,
      "ratio out of range",
    );
    await assertRefused(
      await post(service, "/prune?pruning_ratio=0.5", SMALL),
      400,
      /unknown option "pruning_ratio" \(did you mean "pruning-ratio"\?\)/,
      "unknown option",
    );
    await assertRefused(
      await post(service, "/prune?calibration=images", SMALL),
      400,
      /calibration is an option of the command line only/,
      "command-line option",
    );
    await assertRefused(
      await post(
        service,
        "/prune?num-heads=nope%3D3&prune-num-heads&head-pruning-ratio=0.5",
        SMALL,
      ),
      400,
      /num-heads: no node or initializer named "nope"/,
      "a name the model does not have",
    );
    await assertRefused(
      await post(
        service,
        "/prune?prune-num-heads&head-pruning-ratio=0.5&num-heads=%2Fblocks%2Fblocks.0%2Fattn%2Fqkv%2FMatMul%3D4",
        FMNIST,
      ),
      400,
      /num-heads: attention block .* has 3 heads in the graph/,
      "a head count the model does not have",
    );
    // A model the static shape rules cannot size needs onnxruntime, which the service lacks.
    const res = await post(
      service,
      "/prune?pruning-ratio=0.5",
      encodeModel(buildMlpModel()).slice(),
    );
    assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
    const body = await res.json();
    assert.equal(res.status, 422);
    assert.equal(body.code, "needs-onnxruntime");
    assert.match(
      body.error,
      /cannot be worked out from the graph alone.*prune it with the command line/,
    );
    await assertRefused(await post(service, "/nope", SMALL), 404, /POST \/prune/, "route");
    await assertRefused(await fetch(`${service.url}/prune`), 405, /\/prune takes POST/, "method");

    // Over 3 MiB: refused from the declared length, and from the bytes when none is declared.
    const big = new Uint8Array(3 * 2 ** 20 + 1);
    await assertRefused(await post(service, "/prune", big), 413, /larger than .* 3 MiB/, "413");
    const chunks = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 4; i++) c.enqueue(new Uint8Array(2 ** 20));
        c.close();
      },
    });
    await assertRefused(
      await post(service, "/prune", chunks),
      413,
      /PRUNE_VIT_MAX_MODEL_MB/,
      "chunked",
    );

    // Still serving after all that.
    assert.equal((await post(service, "/prune?pruning-ratio=0.5", SMALL)).status, 200);
    const page = await (await fetch(`${service.url}/`)).text();
    assert.match(page, /<title>Prune a transformer ONNX model<\/title>/);
    assert.match(page, /<script type="application\/json" id="worker-source">/);
  } finally {
    await service.stop();
  }
});

Deno.test("service: 20 clients at once all get the library's model; memory stays bounded", async () => {
  const service = await startService({ PRUNE_VIT_MAX_JOBS: "2", PRUNE_VIT_MAX_QUEUE: "32" });
  try {
    const expected = await library(SMALL, ["--prune-num-heads", "--head-pruning-ratio", "0.5"]);
    for (let round = 0; round < 2; round++) {
      const answers = await Promise.all(Array.from({ length: 20 }, async () => {
        const res = await post(service, "/prune?prune-num-heads&head-pruning-ratio=0.5", SMALL);
        return { status: res.status, bytes: new Uint8Array(await res.arrayBuffer()) };
      }));
      for (const [i, a] of answers.entries()) {
        assert.equal(a.status, 200, `client ${i}`);
        assert.ok(sameBytes(a.bytes, expected.bytes), `client ${i}: the library's bytes`);
      }
    }
    const health = await (await fetch(`${service.url}/health`)).json();
    assert.deepEqual(health.jobs, { running: 0, waiting: 0 });
    // Two workers at a time whatever the number of clients (one per client would pass 1 GiB).
    const peak = await service.peakRss();
    assert.ok(peak < 700 * 2 ** 20, `peak memory ${(peak / 2 ** 20).toFixed(0)} MiB`);
  } finally {
    await service.stop();
  }
});

Deno.test("service: a full queue is answered 503 at once, a job past its time 504, a slow body 408", async () => {
  const busy = await startService({ PRUNE_VIT_MAX_JOBS: "1", PRUNE_VIT_MAX_QUEUE: "0" });
  try {
    const answers = await Promise.all(
      Array.from({ length: 4 }, () => post(busy, "/prune?pruning-ratio=0.5", FMNIST)),
    );
    const statuses = answers.map((r) => r.status).sort();
    assert.ok(statuses.includes(200), `one runs: ${statuses}`);
    const refused = answers.filter((r) => r.status === 503);
    assert.ok(refused.length >= 1, `the others are refused: ${statuses}`);
    assert.equal(refused[0].headers.get("retry-after"), "5");
    await assertRefused(refused[0], 503, /busy: 1 jobs running/, "busy");
    for (const r of answers) if (!r.bodyUsed) await r.arrayBuffer();
  } finally {
    await busy.stop();
  }
  const slow = await startService({
    PRUNE_VIT_TIME_LIMIT_S: "0.05",
    PRUNE_VIT_BODY_TIME_LIMIT_S: "0.5",
  });
  try {
    await assertRefused(
      await post(slow, "/prune?pruning-ratio=0.5", FMNIST),
      504,
      /longer than the service's limit of 0\.05 s/,
      "time limit",
    );
    const health = await (await fetch(`${slow.url}/health`)).json();
    assert.deepEqual(health.jobs, { running: 0, waiting: 0 }, "the slot is free again");
    // A body that trickles in past its limit (0.5 s here) is answered 408.
    let sent = 0;
    const trickle = new ReadableStream<Uint8Array>({
      async pull(c) {
        await new Promise((r) => setTimeout(r, 100));
        if (++sent > 15) c.close();
        else c.enqueue(new Uint8Array(1000));
      },
    });
    await assertRefused(
      await post(slow, "/prune?pruning-ratio=0.5", trickle),
      408,
      /took too long to arrive \(PRUNE_VIT_BODY_TIME_LIMIT_S\)/,
      "slow body",
    );
  } finally {
    await slow.stop();
  }
});

Deno.test("service: a bad limit in the environment stops it at start, naming the variable", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      new URL("../src/serve.ts", import.meta.url).pathname,
    ],
    env: { PORT: "0", PRUNE_VIT_MAX_JOBS: "two", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /PRUNE_VIT_MAX_JOBS: "two" is not a positive integer/,
  );
});
