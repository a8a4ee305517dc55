// A stand-in for vitrine-gateway: serves gateway/web/index.html at GET / and
// fakes the HTTP API the page uses, so the page and its browser test
// (web_page_test.mjs --mock) run without a daemon or a model.
//
//   node tests/gateway/mock_gateway.mjs [--port 8080] [--token SECRET] [--delay-ms 25]
//
// Faked, in the shapes the real gateway returns: POST /v1/chat/completions
// (server-sent events when "stream" is true, one chat.completion otherwise;
// the last chunk carries the "vitrine" field), POST /v1/compare, POST
// /v1/feedback (only for response ids it handed out), GET /v1/models, and
// OpenAI-style errors ({"error": {"message","type","code"}}), 401 when
// --token is set and a /v1 request does not carry it. A text of exactly
// "mock:error" gets a 400, so a test can see how the page shows errors.
//
// Non-goals: anything a model does. Answers are canned sentences; the
// "classifier" is: a catalogue title is described, a text ending in "?" is
// a question, anything else is described.
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const kPagePath = fileURLToPath(new URL("../../gateway/web/index.html", import.meta.url));

// A few records of ../shared/data/amazon_titles_sample.jsonl.
const kCatalogue = [
  { uid: "0000031909", title: "Girls Ballet Tutu Neon Pink" },
  { uid: "0000032034", title: "Adult Ballet Tutu Yellow" },
  { uid: "0000913154", title: "The Way Things Work: An Illustrated Encyclopedia of Technology" },
  { uid: "0001360000", title: "Mog's Kittens" },
  { uid: "0001381245", title: "Misty of Chincoteague" },
  { uid: "0001712799", title: "The Prophet" },
];
const kModels = { "vitrine": "auto", "vitrine-describe": "describe", "vitrine-qa": "qa", "base": "base" };

function openai_error(status, message, type, code) {
  return { status, body: { error: { message, type, code } } };
}

function normalise(text) { return text.toLowerCase().replace(/\s+/g, " ").trim(); }

// The route the daemon would take, and the catalogue records the answer is about.
function route_and_sources(text, model) {
  const route = kModels[model];
  const exact = kCatalogue.find((p) => normalise(p.title) === normalise(text));
  let agent, evidence, confidence;
  if (route === "describe" || route === "qa") {
    [agent, evidence, confidence] = [route, "forced", 1];
  } else if (exact) {
    [agent, evidence, confidence] = ["describe", "catalogue title", 1];
  } else {
    [agent, evidence, confidence] = [text.trim().endsWith("?") ? "qa" : "describe", "classifier", 0.93];
  }
  const mentioned = exact ? [exact] : kCatalogue.filter((p) => normalise(text).includes(normalise(p.title)));
  const sources = mentioned.map((p) => ({ uid: p.uid, title: p.title, score: exact ? 1 : 0.82 }));
  // A question the classifier routed, about no product: no model runs, and
  // the titles sharing most words with it are offered (the daemon's
  // unknown-product agent, "say").
  const unknown = route === "auto" && agent === "qa" && sources.length === 0;
  const adapter = route === "base" || unknown ? "" : agent;
  return {
    route: { agent, adapter, adapter_version: adapter ? 1 : 0, classifier_confidence: confidence, evidence },
    sources,
    product_found: sources.length > 0,
    closest: unknown ? closest_titles(text) : [],
  };
}

function words(text) { return new Set(normalise(text).split(/[^a-z0-9]+/).filter((w) => w.length > 2)); }

// Up to three catalogue titles sharing a word with `text`, most shared first.
function closest_titles(text) {
  const asked = words(text);
  return kCatalogue
    .map((p) => ({ p, shared: [...words(p.title)].filter((w) => asked.has(w)).length }))
    .filter((x) => x.shared > 0)
    .sort((a, b) => b.shared - a.shared)
    .slice(0, 3)
    .map(({ p, shared }) => ({ uid: p.uid, title: p.title, score: Math.min(0.5, 0.1 * shared + 0.15) }));
}

function canned_answer(text, decision) {
  if (decision.route.agent === "qa" && !decision.route.adapter && !decision.product_found) {
    const titles = decision.closest.map((c) => `"${c.title}"`).join(" and ");
    return "I don't know that product: nothing in the catalogue matches your question, so I won't make up an answer." +
      (titles ? ` The closest titles in the catalogue are ${titles}.` : " Ask me about a product by its title.");
  }
  const about = decision.sources[0] ? decision.sources[0].title : "this product";
  if (!decision.route.adapter) return `Once upon a time there was a little ${about.toLowerCase()} that wanted to be read.`;
  if (decision.route.agent === "qa") {
    return decision.product_found
      ? `${about} is a well-loved book: the description says readers come back to it for its short, plain chapters.`
      : "I could not find that product in the catalogue.";
  }
  return `${about}: a catalogue favourite, described here in a few plain sentences by the mock gateway.`;
}

export async function start_mock_gateway({ port = 0, host = "127.0.0.1", token = "", delay_ms = 25 } = {}) {
  const page = await readFile(kPagePath);
  const answered = new Set();  // response ids Feedback accepts
  const feedback = [];          // what was rated, for tests
  let next_id = 1;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function answer(text, model) {
    const decision = route_and_sources(text, model);
    const response_id = `mock-${next_id++}`;
    answered.add(response_id);
    const content = canned_answer(text, decision);
    const vitrine = {
      response_id, ...decision, experiment: "", arm: "",
      timings: { queue_ms: 0.4, first_token_ms: 21.5, total_ms: 180 + content.length },
    };
    return { content, vitrine };
  }

  // Returns {status, body} for JSON answers, or streams itself and returns null.
  async function handle(req, res, body) {
    const path = new URL(req.url, "http://mock").pathname;
    if (req.method === "GET" && (path === "/" || path === "/index.html")) {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" });
      res.end(page);
      return null;
    }
    if (req.method === "GET" && path === "/healthz") return { status: 200, body: { status: "ok" } };
    if (!path.startsWith("/v1/")) return openai_error(404, `no route ${req.method} ${path}`, "invalid_request_error", "not_found");
    if (token && req.headers.authorization !== `Bearer ${token}`) {
      return openai_error(401, "missing or unknown bearer token", "authentication_error", "unauthenticated");
    }
    if (req.method === "GET" && path === "/v1/models") {
      return { status: 200, body: { object: "list", data: Object.keys(kModels).map((id) => ({ id, object: "model", owned_by: "vitrine" })) } };
    }
    if (req.method !== "POST") return openai_error(405, `${req.method} ${path} is not allowed`, "invalid_request_error", "method_not_allowed");
    let request;
    try { request = JSON.parse(body || "{}"); } catch (err) {
      return openai_error(400, `the body is not JSON: ${err.message}`, "invalid_request_error", "invalid_json");
    }

    if (path === "/v1/feedback") {
      if (request.rating !== 1 && request.rating !== -1) return openai_error(400, "rating must be 1 or -1", "invalid_request_error", "invalid_argument");
      if (!answered.has(request.response_id)) return openai_error(404, `no response with id "${request.response_id}"`, "not_found_error", "not_found");
      feedback.push({ response_id: request.response_id, rating: request.rating, comment: request.comment || "" });
      return { status: 200, body: {} };
    }

    const model = request.model || "vitrine";
    if (!(model in kModels)) return openai_error(404, `unknown model "${model}": vitrine, vitrine-describe, vitrine-qa or base`, "invalid_request_error", "model_not_found");
    const text = path === "/v1/compare" ? request.text
      : (request.messages || []).filter((m) => m.role === "user").map((m) => m.content).pop();
    if (typeof text !== "string" || !text.trim()) return openai_error(400, "text is empty", "invalid_request_error", "invalid_argument");
    if (text.trim() === "mock:error") return openai_error(400, "max_input_chars exceeded (mock error)", "invalid_request_error", "invalid_argument");

    if (path === "/v1/compare") {
      if (model === "base") return openai_error(400, "compare needs a tuned route, not base", "invalid_request_error", "invalid_argument");
      await sleep(delay_ms * 8);
      const base = answer(text, "base");
      const tuned = answer(text, model);
      return { status: 200, body: {
        base: { text: base.content, finish_reason: "stop", vitrine: base.vitrine },
        tuned: { text: tuned.content, finish_reason: "stop", vitrine: tuned.vitrine },
      } };
    }
    if (path !== "/v1/chat/completions") return openai_error(404, `no route POST ${path}`, "invalid_request_error", "not_found");

    const { content, vitrine } = answer(text, model);
    const id = `chatcmpl-${vitrine.response_id}`;
    const created = Math.floor(Date.now() / 1000);
    if (!request.stream) {
      return { status: 200, body: {
        id, object: "chat.completion", created, model,
        choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
        usage: { prompt_tokens: 12, completion_tokens: content.split(" ").length, total_tokens: 12 + content.split(" ").length },
        vitrine,
      } };
    }
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive" });
    const send = (delta, finish_reason = null, extra = {}) => res.write(`data: ${JSON.stringify({
      id, object: "chat.completion.chunk", created, model,
      choices: [{ index: 0, delta, finish_reason }], ...extra })}\n\n`);
    send({ role: "assistant" });
    for (const piece of content.match(/\S+\s*/g)) {
      if (res.destroyed) return null;
      await sleep(delay_ms);
      send({ content: piece });
    }
    send({}, "stop", { vitrine });
    res.end("data: [DONE]\n\n");
    return null;
  }

  const server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (part) => { body += part; });
    req.on("end", async () => {
      try {
        const reply = await handle(req, res, body);
        if (!reply) return;
        res.writeHead(reply.status, { "Content-Type": "application/json" });
        res.end(JSON.stringify(reply.body));
      } catch (err) {
        if (!res.headersSent) res.writeHead(500, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ error: { message: String(err), type: "server_error", code: "internal" } }));
      }
    });
  });
  await new Promise((resolve, reject) => { server.once("error", reject); server.listen(port, host, resolve); });
  const address = server.address();
  return {
    url: `http://${host}:${address.port}`,
    feedback,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: {
    port: { type: "string", default: "8080" }, host: { type: "string", default: "127.0.0.1" },
    token: { type: "string", default: "" }, "delay-ms": { type: "string", default: "25" },
  } });
  const mock = await start_mock_gateway({ port: Number(values.port), host: values.host, token: values.token,
                                          delay_ms: Number(values["delay-ms"]) });
  console.log(`mock gateway: ${mock.url}/${values.token ? " (token required)" : ""}`);
  const stop = async () => { await mock.close(); process.exit(0); };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
