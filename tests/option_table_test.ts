/**
 * The option table: the command line, the service's query parameters and the page's controls
 * are derived from it and checked by one validator.
 */
import assert from "node:assert/strict";
import { HELP, parseCliArgs, UsageError } from "../src/cli.ts";
import { OPTIONS, optionsFor, parseArgsOptions } from "../src/option_table.ts";
import { pruneOptionsFrom, targetFrom, valuesFromParams } from "../src/option_values.ts";

function fromQuery(query: string, surface: "service" | "page" = "service") {
  const values = valuesFromParams(new URLSearchParams(query), surface);
  const options = pruneOptionsFrom(values, surface);
  const target = targetFrom(values, options, surface);
  return { options, target };
}

function cliOptions(args: string[]) {
  const parsed = parseCliArgs(["m.onnx", ...args]);
  assert.ok(typeof parsed === "object");
  return { options: parsed.options, target: parsed.target };
}

Deno.test("every option of the table is a parseArgs option and is named in --help", () => {
  const spec = parseArgsOptions();
  assert.deepEqual(Object.keys(spec).sort(), optionsFor("cli").map((o) => o.name).sort());
  for (const o of OPTIONS) {
    assert.ok(HELP.includes(`--${o.name}`), `--help names --${o.name}`);
    assert.equal(spec[o.name].type, o.kind === "flag" ? "boolean" : "string");
  }
  assert.equal(spec.output.short, "o");
  assert.equal(spec.ignore.multiple, true);
  assert.match(HELP, /^ {6}--report PATH {9}write the report as a self-contained HTML page/m);
});

Deno.test("a query string gives the same options as the command line", () => {
  const cases: [string, string[]][] = [
    ["prune-num-heads&head-pruning-ratio=0.5", [
      "--prune-num-heads",
      "--head-pruning-ratio",
      "0.5",
    ]],
    [
      "pruning-ratio=0.25&round-to=8&criterion=l1&allocation=global",
      ["--pruning-ratio", "0.25", "--round-to", "8", "--criterion", "l1", "--allocation", "global"],
    ],
    [
      "prune-head-dims&qk-pruning-ratio=0.25&v-pruning-ratio=0.5&ignore=a&ignore=b",
      [
        "--prune-head-dims",
        "--qk-pruning-ratio",
        "0.25",
        "--v-pruning-ratio",
        "0.5",
        "--ignore",
        "a",
        "--ignore",
        "b",
      ],
    ],
    [
      "num-heads=qkv%3D4&layer-ratio=fc1%3D0.5&dim=seq%3D16&prune-num-heads=true",
      ["--num-heads", "qkv=4", "--layer-ratio", "fc1=0.5", "--dim", "seq=16", "--prune-num-heads"],
    ],
    [
      "target-macs=50%25&steps=2&prune-embedding",
      ["--target-macs", "50%", "--steps", "2", "--prune-embedding"],
    ],
    [
      "target-params=0.5&min-keep=0.25",
      ["--target-params", "0.5", "--min-keep", "0.25"],
    ],
  ];
  for (const [query, args] of cases) {
    assert.deepEqual(fromQuery(query), cliOptions(args), query);
  }
  assert.deepEqual(fromQuery("prune-num-heads=false&pruning-ratio=0.1").options, {
    pruningRatio: 0.1,
  });
});

Deno.test("bad query parameters are refused naming the parameter", () => {
  const refused: [string, RegExp][] = [
    ["head-pruning-ratio=1.5", /^head-pruning-ratio: 1\.5 is out of range/],
    ["head-pruning-ratio=abc", /^head-pruning-ratio: "abc" is not a number/],
    ["head-pruning-ratio=", /head-pruning-ratio needs a value/],
    ["pruning-ratio=0.1&pruning-ratio=0.2", /pruning-ratio is given twice/],
    ["prune-num-heads=maybe", /prune-num-heads is a flag/],
    ["prune-num-heads&prune-head-dims", /prune-num-heads and prune-head-dims cannot be combined/],
    ["pruning_ratio=0.5", /unknown option "pruning_ratio" \(did you mean "pruning-ratio"\?\)/],
    ["nope=1", /unknown option "nope"/],
    ["output=x.onnx", /output is an option of the command line only/],
    ["calibration=images", /calibration is an option of the command line only/],
    ["target-speedup=2", /target-speedup is an option of the command line only/],
    ["criterion=wanda", /criterion: "wanda" needs calibration data.*\(here: l1, l2\)/],
    ["criterion=l3", /criterion: "l3" is not one of l1, l2/],
    ["num-heads=qkv", /num-heads: "qkv" is not of the form NODE=H/],
    ["steps=2", /steps goes with a target-… option/],
    ["target-macs=50%25&pruning-ratio=0.5", /target-macs decides how much to prune/],
    ["target-macs=150%25", /target-macs: 150% is not below 100%/],
    ["min-keep=0.25", /min-keep goes with a target-… option/],
    ["target-macs=50%25&min-keep=1", /min-keep: 1 is out of range/],
    ["target-macs=50%25&check-rounds=3", /check-rounds is an option of the command line only/],
  ];
  for (const [query, pattern] of refused) {
    assert.throws(
      () => fromQuery(query),
      (e: unknown) => e instanceof UsageError && pattern.test(e.message),
      query,
    );
  }
});

Deno.test("the page and the service offer the same options; the command line offers all", () => {
  const names = (s: "service" | "page") => optionsFor(s).map((o) => o.name);
  assert.deepEqual(names("page"), names("service"));
  assert.ok(names("service").includes("prune-num-heads"));
  assert.ok(!names("service").includes("verify-run"), "needs onnxruntime");
  assert.equal(optionsFor("cli").length, OPTIONS.length);
  for (const o of optionsFor("page")) {
    assert.ok(o.label.length > 0 && o.label.length < 60, `${o.name}: a short label`);
  }
});
