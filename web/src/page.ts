/// <reference lib="dom" />
/**
 * The pruning page: a dropped `.onnx` file is read here and handed to a worker that prunes it
 * with the library (the wasm core); the controls are made from the option table, the report and
 * chart come from the report's HTML renderer, and the pruned model is offered as a download. No
 * byte of the model is sent anywhere.
 *
 * @module
 */
import {
  choicesFor,
  type OptionSection,
  optionsFor,
  type OptionSpec,
  type OptionValues,
} from "../../src/option_table.ts";
import { escapeHtml, REPORT_CSS, reportHtml } from "../../src/report/html.ts";
import { humanCount } from "../../src/format_report.ts";
import type { JobReply, JobRequest } from "../../src/job.ts";
import type { GroupReport, PruneReport } from "../../src/report.ts";
import { WORKER_ELEMENT_ID } from "../../src/serve/page.ts";

/** A browser's ArrayBuffer holds at most this much (larger models: the command line). */
const MAX_BYTES = 2 ** 31 - 1;

const SECTIONS: [OptionSection, string][] = [
  ["heads", "Attention"],
  ["mlp", "MLP channels and embedding width"],
  ["target", "Target"],
  ["run", "Ranking and compute"],
  ["names", "Per node"],
];

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el;
}

// ---- the worker ----------------------------------------------------------------------------

let worker: Worker | undefined;
let nextId = 1;
const pending = new Map<number, { resolve: (r: JobReply) => void; reject: (e: Error) => void }>();

function startWorker(): Worker {
  const source = JSON.parse($(WORKER_ELEMENT_ID).textContent ?? "") as string;
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  // A classic worker: a module worker from a Blob does not start in a page opened as a file.
  const w = new Worker(url);
  w.onmessage = (event: MessageEvent<JobReply>) => {
    const job = pending.get(event.data.id);
    pending.delete(event.data.id);
    job?.resolve(event.data);
  };
  w.onerror = (event) => {
    event.preventDefault();
    fail(`the pruning worker stopped: ${event.message || "out of memory?"}`);
  };
  return w;
}

/** Ends the worker and every job waiting on it; the next job starts a new one. */
function fail(message: string) {
  worker?.terminate();
  worker = undefined;
  for (const job of pending.values()) job.reject(new Error(message));
  pending.clear();
}

function send(request: Omit<JobRequest, "id" | "surface">): Promise<JobReply> {
  worker ??= startWorker();
  const id = nextId++;
  const full: JobRequest = { ...request, id, surface: "page" };
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker!.postMessage(full, request.bytes ? [request.bytes.buffer as ArrayBuffer] : []);
  });
}

// ---- state ---------------------------------------------------------------------------------

let file: File | undefined;
let modelSent = false;
let downloadUrl: string | undefined;
let runs = 0;

/** A message where the user is looking: under the drop zone while loading, under the Prune
 * button after it (the previous result is hidden then: it is not what was asked). */
function showError(message: string | undefined, where: "load" | "prune" = "load") {
  for (const id of ["load-error", "error"]) {
    const box = $(id);
    const here = message !== undefined && id === (where === "load" ? "load-error" : "error");
    box.hidden = !here;
    box.textContent = here ? message : "";
    if (here) box.scrollIntoView({ block: "nearest" });
  }
  if (message !== undefined && where === "prune") $("result").hidden = true;
}

function status(text: string) {
  $("status").textContent = text;
}

function megabytes(n: number): string {
  return `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} MB`;
}

/** The model's bytes go to the worker once; it keeps them for every run. */
async function ensureModel(): Promise<Uint8Array | undefined> {
  if (modelSent || !file) return undefined;
  modelSent = true;
  return new Uint8Array(await file.arrayBuffer());
}

async function run(values: OptionValues, dryRun: boolean): Promise<JobReply> {
  const bytes = await ensureModel();
  try {
    return await send({ ...(bytes ? { bytes } : {}), keep: true, values, dryRun });
  } catch (e) {
    modelSent = false; // the worker that held it is gone
    throw e;
  }
}

async function load(chosen: File) {
  showError(undefined);
  $("loaded").hidden = true;
  $("result").hidden = true;
  if (chosen.size > MAX_BYTES) {
    showError(
      `${chosen.name} is ${megabytes(chosen.size)}: a browser reads at most 2 GiB at once. ` +
        `Prune it with the command line (deno run -A jsr:@prune/vit ${chosen.name} …).`,
    );
    return;
  }
  file = chosen;
  modelSent = false;
  fail("a new model was chosen");
  status(`reading ${chosen.name} (${megabytes(chosen.size)})…`);
  const started = performance.now();
  let reply: JobReply;
  try {
    reply = await run({}, true);
  } catch (e) {
    status("");
    showError((e as Error).message);
    return;
  }
  if (!reply.ok) {
    status("");
    showError(reply.error.message);
    return;
  }
  status(
    `${chosen.name} · ${megabytes(chosen.size)} · analysed in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`,
  );
  $("model-name").textContent = chosen.name;
  $("detected").innerHTML = detectedHtml(reply.report);
  $("loaded").hidden = false;
}

// ---- what was detected ---------------------------------------------------------------------

function sizeOf(g: GroupReport | undefined, key: string): number | undefined {
  return g?.size[key];
}

function detectedHtml(report: PruneReport): string {
  const attention = report.groups.filter((g) => g.kind === "attention");
  const mlp = report.groups.filter((g) => g.kind === "mlp");
  const embedding = report.groups.find((g) => g.kind === "embedding");
  const n = Math.max(attention.length, mlp.length);
  const cell = (v: string | number | undefined, num = true) =>
    `<td${num ? ' class="num"' : ""}>${escapeHtml(v === undefined ? "–" : String(v))}</td>`;
  const rows: string[] = [];
  for (let i = 0; i < n; i++) {
    const a = attention[i], m = mlp[i];
    const qk = sizeOf(a, "qkDim"), v = sizeOf(a, "vDim");
    const kv = sizeOf(a, "kvHeads");
    const why = [
      a?.blocked ? `heads fixed: ${a.blocked}` : "",
      a?.dimsBlocked ? `dims fixed: ${a.dimsBlocked}` : "",
      m?.blocked ? `MLP fixed: ${m.blocked}` : "",
    ].filter((x) => x).join("; ");
    const title = escapeHtml([a?.name, m?.name].filter((x) => x).join(" · "));
    const heads = a ? `${sizeOf(a, "heads")}${kv !== undefined ? ` (KV ${kv})` : ""}` : undefined;
    const dims = a ? (qk === v ? `${qk}` : `QK ${qk}, V ${v}`) : undefined;
    rows.push(
      `<tr title="${title}">${cell(i)}${cell(a?.name, false)}${cell(heads)}${cell(dims)}` +
        `${cell(sizeOf(m, "channels"))}${cell(why, false)}</tr>`,
    );
  }
  const totals = `<p>params ${escapeHtml(humanCount(report.params.before))} · MACs ${
    escapeHtml(humanCount(report.macs.before))
  }${
    embedding
      ? ` · embedding width ${sizeOf(embedding, "channels")}${
        embedding.blocked ? ` (fixed: ${escapeHtml(embedding.blocked)})` : ""
      }`
      : ""
  }</p>`;
  if (n === 0) {
    return totals +
      `<p>No attention or MLP block was recognised.</p>` +
      (report.problems?.length
        ? `<ul>${report.problems.slice(0, 5).map((p) => `<li>${escapeHtml(p)}</li>`).join("")}</ul>`
        : "");
  }
  return totals +
    `<table class="detected" id="detected-blocks"><thead><tr><th>block</th><th>attention</th>` +
    `<th>heads</th><th>head dim</th><th>MLP width</th><th></th></tr></thead>` +
    `<tbody>${rows.join("\n")}</tbody></table>`;
}

// ---- the controls, from the option table ----------------------------------------------------

const PAGE_OPTIONS = optionsFor("page");

function control(o: OptionSpec): HTMLElement {
  const id = `opt-${o.name}`;
  let input: HTMLInputElement | HTMLSelectElement;
  if (o.kind === "choice") {
    const select = document.createElement("select");
    select.add(new Option("(default)", ""));
    for (const c of choicesFor(o, "page")) select.add(new Option(c, c));
    input = select;
  } else {
    const el = document.createElement("input");
    if (o.kind === "flag") el.type = "checkbox";
    else if (o.kind === "ratio") {
      Object.assign(el, { type: "number", min: "0", max: "0.99", step: "0.05", placeholder: "0" });
    } else if (o.kind === "int") {
      Object.assign(el, { type: "number", min: "1", step: "1" });
    } else {
      el.type = "text";
      el.placeholder = o.kind === "amount"
        ? "50% or 25M"
        : o.multiple
        ? `${o.arg ?? "NAME"}, …`
        : (o.arg ?? "");
    }
    if (o.initial !== undefined) {
      if (typeof o.initial === "boolean") el.checked = o.initial;
      else el.value = o.initial;
    }
    input = el;
  }
  input.id = id;
  input.name = o.name;
  const field = document.createElement("div");
  field.className = "field";
  field.dataset.kind = o.kind;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.title = o.help.join(" ");
  label.append(o.label);
  const flag = document.createElement("code");
  flag.textContent = `--${o.name}`;
  label.append(flag);
  field.append(label, input);
  if (o.excludes) {
    input.addEventListener("change", () => {
      const other = document.getElementById(`opt-${o.excludes}`) as HTMLInputElement | null;
      if ((input as HTMLInputElement).checked && other) other.checked = false;
    });
  }
  return field;
}

function buildForm() {
  const form = $("options") as HTMLFormElement;
  const mode = document.createElement("div");
  mode.className = "mode";
  mode.innerHTML = `<label><input type="radio" name="mode" value="ratios" checked> ratios</label>` +
    `<label><input type="radio" name="mode" value="target"> a target (parameters or MACs)</label>`;
  form.append(mode);
  for (const [section, title] of SECTIONS) {
    const options = PAGE_OPTIONS.filter((o) => o.section === section);
    if (options.length === 0) continue;
    const set = document.createElement("fieldset");
    set.id = `section-${section}`;
    const legend = document.createElement("legend");
    legend.textContent = title;
    set.append(legend, ...options.map(control));
    if (section === "names" || section === "run") {
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = section === "names" ? "per node options" : "ranking and compute";
      details.append(summary, set);
      form.append(details);
    } else {
      form.append(set);
    }
  }
  form.addEventListener("change", applyMode);
  applyMode();
}

function targetMode(): boolean {
  return (document.querySelector('input[name="mode"]:checked') as HTMLInputElement)?.value ===
    "target";
}

/** Ratios and a target exclude each other: the controls of the other mode are disabled. */
function applyMode() {
  const target = targetMode();
  ($("section-target") as HTMLFieldSetElement).disabled = !target;
  for (const o of PAGE_OPTIONS) {
    if (o.kind !== "ratio") continue;
    ($(`opt-${o.name}`) as HTMLInputElement).disabled = target;
  }
}

/** The values of the enabled controls, as the option table names them. */
function values(): OptionValues {
  const out: Record<string, string | boolean | string[]> = {};
  for (const o of PAGE_OPTIONS) {
    const el = $(`opt-${o.name}`) as HTMLInputElement | HTMLSelectElement;
    if (el.disabled || (el.closest("fieldset") as HTMLFieldSetElement | null)?.disabled) continue;
    if (o.kind === "flag") {
      if ((el as HTMLInputElement).checked) out[o.name] = true;
      continue;
    }
    const text = el.value.trim();
    if (text === "") continue;
    out[o.name] = o.multiple ? text.split(",").map((s) => s.trim()).filter((s) => s) : text;
  }
  return out as OptionValues;
}

function shellQuote(s: string): string {
  return /^[\w.,:=%/+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function commands(v: OptionValues, name: string, output: string): [string, string] {
  const args: string[] = [];
  const query: string[] = [];
  for (const [key, value] of Object.entries(v)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one === true) {
        args.push(`--${key}`);
        query.push(key);
      } else {
        args.push(`--${key}`, shellQuote(String(one)));
        query.push(`${key}=${encodeURIComponent(String(one))}`);
      }
    }
  }
  const origin = location.protocol.startsWith("http") ? location.origin : "http://127.0.0.1:8000";
  return [
    ["deno run -A jsr:@prune/vit", shellQuote(name), "-o", shellQuote(output), ...args].join(" "),
    `curl --data-binary @${shellQuote(name)} -o ${shellQuote(output)} '${origin}/prune?${
      query.join("&")
    }'`,
  ];
}

async function prune() {
  if (!file) return;
  const button = $("prune") as HTMLButtonElement;
  showError(undefined);
  button.disabled = true;
  $("timing").textContent = "pruning…";
  const asked = values();
  const output = file.name.replace(/\.onnx$/i, "") + ".pruned.onnx";
  try {
    const reply = await run(asked, false);
    if (!reply.ok) {
      $("timing").textContent = "";
      showError(reply.error.message, "prune");
      return;
    }
    $("timing").textContent = `pruned in ${(reply.ms / 1000).toFixed(1)} s`;
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    const blob = new Blob([reply.bytes! as Uint8Array<ArrayBuffer>], {
      type: "application/octet-stream",
    });
    downloadUrl = URL.createObjectURL(blob);
    const link = $("download") as HTMLAnchorElement;
    link.href = downloadUrl;
    link.download = output;
    link.textContent = `Download ${output}`;
    $("download-size").textContent = `${megabytes(blob.size)} (was ${megabytes(file.size)})`;
    $("report").innerHTML = reportHtml(reply.report, { title: output });
    const [cli, service] = commands(asked, file.name, output);
    $("cli-command").textContent = cli;
    $("service-command").textContent = service;
    $("result").hidden = false;
  } catch (e) {
    $("timing").textContent = "";
    showError((e as Error).message, "prune");
  } finally {
    button.disabled = false;
    // Runs so far: what a test (or a script driving the page) waits on.
    document.body.dataset.runs = String(++runs);
  }
}

// ---- wiring --------------------------------------------------------------------------------

function init() {
  const style = document.createElement("style");
  style.textContent = REPORT_CSS;
  document.head.append(style);
  buildForm();
  const drop = $("drop");
  const input = $("file") as HTMLInputElement;
  input.addEventListener("change", () => {
    if (input.files?.[0]) void load(input.files[0]);
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const dropped = e.dataTransfer?.files?.[0];
    if (dropped) void load(dropped);
  });
  $("prune").addEventListener("click", () => void prune());
  document.body.dataset.ready = "true";
}

init();
