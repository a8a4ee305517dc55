// Browser test of the gateway's web page (gateway/web/index.html): headless
// Chromium asks a question as a person would and checks what the page shows.
//
// Usage:
//   node tests/gateway/web_page_test.mjs --gateway http://127.0.0.1:8080 \
//        [--screenshot docs/img/web-page.png] [--ab-screenshot docs/img/web-ab.png] \
//        [--token T | $VITRINE_TOKEN] [--question TEXT] [--ab-question TEXT] \
//        [--unknown-question TEXT] [--unknown-screenshot FILE] [--max-tokens 48] [--timeout 180] [--chromium /usr/bin/chromium]
//   node tests/gateway/web_page_test.mjs --mock      # against mock_gateway.mjs, no daemon
//
// Setup, once: apt-get install -y chromium npm (scripts/setup.sh), then
// `npm ci` in tests/gateway (puppeteer-core, which downloads no browser).
//
// Checks, against a running gateway with vitrined behind it:
//  1. the page loads from GET / and asks for nothing outside the gateway;
//  2. a question typed in #question and sent with #ask streams in (the request
//     has "stream": true and the answer is text/event-stream) and finishes;
//     a 401 shows the token field, and the page retries once --token is saved;
//  3. the route badge says describe or qa, with adapter version and confidence;
//  4. the sources list shows uid, title and score, or "no catalogue product matched";
//     a question about no product (--unknown-question) lists the closest titles
//     the answer names, and a click on one puts it in the question box;
//  5. thumbs up posts /v1/feedback for that answer, gets 200 and shows it was recorded;
//  6. the A/B view sends one /v1/compare and shows text and timings on both sides;
//  7. with --mock also: the 401 flow (the mock requires a token) and an error
//     shown readably (HTTP status and message).
// The page must throw no uncaught error. Screenshots of the Ask view (after
// the thumbs) and the A/B view are written where --screenshot and
// --ab-screenshot say.
//
// Exit: 0 all passed; 1 a check failed (the message names it and what the
// page showed); 2 bad arguments; 77 skipped: no chromium, or no node_modules.
//
// Non-goals: the gateway's API itself (its own tests cover that), answer
// quality, browsers other than Chromium.
import { existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const kSkip = 77;
const kHere = dirname(fileURLToPath(import.meta.url));

function usage_error(message) {
  console.error(`web_page_test: ${message}\nusage: node web_page_test.mjs (--gateway URL | --mock) [--screenshot PNG] [--ab-screenshot PNG] [--token T]`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({ options: {
    gateway: { type: "string" },
    mock: { type: "boolean", default: false },
    screenshot: { type: "string" },
    "ab-screenshot": { type: "string" },
    token: { type: "string", default: process.env.VITRINE_TOKEN || "" },
    question: { type: "string", default: "What is The Prophet about?" },
    "ab-question": { type: "string", default: "Misty of Chincoteague" },
    "unknown-question": { type: "string", default: "What is the battery life of the zq-9000 hyperdrive?" },
    "unknown-screenshot": { type: "string" },
    "max-tokens": { type: "string", default: "48" },
    timeout: { type: "string", default: "180" },  // seconds, per wait
    chromium: { type: "string", default: process.env.CHROMIUM || "/usr/bin/chromium" },
  } }));
} catch (err) { usage_error(err.message); }
if (!args.mock === !args.gateway) usage_error("give exactly one of --gateway URL and --mock");
const timeout_ms = Number(args.timeout) * 1000;
if (!(timeout_ms > 0)) usage_error(`--timeout must be a positive number of seconds, not "${args.timeout}"`);

if (!existsSync(args.chromium)) {
  console.log(`SKIP: no Chromium at ${args.chromium} (apt-get install -y chromium, or pass --chromium PATH)`);
  process.exit(kSkip);
}
let puppeteer;
try {
  puppeteer = (await import("puppeteer-core")).default;
} catch (err) {
  console.log(`SKIP: puppeteer-core is not installed (cd ${kHere} && npm ci): ${err.message.split("\n")[0]}`);
  process.exit(kSkip);
}

class CheckFailed extends Error {}
const results = { passed: 0, failed: 0 };
function check(condition, message) { if (!condition) throw new CheckFailed(message); }
async function step(name, body) {
  const started = Date.now();
  try {
    await body();
  } catch (err) {
    if (err instanceof CheckFailed) err.message = `${name}: ${err.message}`;
    throw err;
  }
  results.passed++;
  console.log(`PASS ${name} (${Date.now() - started} ms)`);
}

let mock = null;
let gateway = args.gateway;
if (args.mock) {
  const { start_mock_gateway } = await import("./mock_gateway.mjs");
  args.token = "mock-token";  // so the 401 flow is exercised too
  mock = await start_mock_gateway({ token: args.token });
  gateway = mock.url;
}
const origin = new URL(gateway).origin;

const browser = await puppeteer.launch({
  executablePath: args.chromium,
  headless: true,  // Chromium's new headless mode (--headless=new)
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run", "--renderer-process-limit=2"],
});
let page;
const page_errors = [];
const outside = [];
const chat_requests = [];

// Waits until fn(...fn_args) is true in the page; on timeout fails with what describe() says the page shows.
async function wait_for(what, fn, fn_args = [], describe = async () => "") {
  try {
    await page.waitForFunction(fn, { timeout: timeout_ms, polling: 100 }, ...fn_args);
  } catch (err) {
    if (err.name !== "TimeoutError") throw err;
    throw new CheckFailed(`timed out after ${args.timeout} s waiting for ${what}; the page shows: ${await describe()}`);
  }
}
const text_of = (selector) => page.$eval(selector, (n) => n.innerText.trim()).catch(() => `(no ${selector})`);
const kLastTurn = "[data-testid=turn]:last-of-type";
const turns_count = () => page.$$eval("[data-testid=turn]", (l) => l.length);

async function shoot(path) {
  if (!path) return;
  mkdirSync(dirname(resolve(path)), { recursive: true });
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
}

// Types text into #question, clicks Ask, answers a 401 with the token, waits for the answer to end.
async function ask(text, { expect_error = false } = {}) {
  const before = await turns_count();
  await page.$eval("#question", (n) => { n.value = ""; });
  await page.type("#question", text);
  await page.click("#ask");
  const ended = (n0) => {
    const turns = document.querySelectorAll("[data-testid=turn]");
    const answer = turns.length > n0 && turns[turns.length - 1].querySelector("[data-testid=answer]");
    return (answer && answer.dataset.state !== "streaming") || !document.getElementById("token-panel").hidden;
  };
  await wait_for(`the answer to "${text}"`, ended, [before], () => text_of(kLastTurn));
  if (await page.$eval("#token-panel", (n) => !n.hidden)) {
    check(args.token, "the gateway asks for a token (401): pass --token or set VITRINE_TOKEN");
    await page.type("#token", args.token);
    await page.click("#token-save");  // the page asks again with the token
    await wait_for(`the answer to "${text}" after saving the token`,
                   () => !!document.querySelector("[data-testid=turn]:last-of-type [data-testid=answer]:not([data-state=streaming])"),
                   [], () => text_of(kLastTurn));
    check(await page.$eval("#token-panel", (n) => n.hidden), "the token field is still shown after saving a token");
    check(await page.evaluate(() => localStorage.getItem("vitrine.token")) === args.token, "the token was not kept in localStorage");
  }
  const state = await page.$eval(`${kLastTurn} [data-testid=answer]`, (n) => n.dataset.state);
  if (!expect_error) check(state === "done", `the answer to "${text}" ended in state "${state}": ${await text_of(kLastTurn)}`);
  return state;
}

try {
  page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 820 });
  page.on("pageerror", (err) => page_errors.push(String(err.message || err)));
  page.on("request", (req) => {
    const url = req.url();
    if (!url.startsWith("data:") && new URL(url).origin !== origin) outside.push(url);
    if (url.endsWith("/v1/chat/completions")) chat_requests.push(req);
  });

  await step("the page loads from GET /", async () => {
    const response = await page.goto(`${origin}/`, { waitUntil: "load", timeout: timeout_ms }).catch((err) => {
      throw new CheckFailed(`could not open ${origin}/: ${err.message.split("\n")[0]} (is vitrine-gateway running there?)`);
    });
    check(response && response.ok(), `GET / answered ${response ? response.status() : "nothing"}`);
    check(await page.$("#question") && await page.$("#ask"), "the page has no #question or #ask");
    check(/vitrine/i.test(await page.title()), `the page's title is "${await page.title()}"`);
  });

  await step("a question streams in and finishes", async () => {
    if (args["max-tokens"]) await page.type("#max-tokens", args["max-tokens"]);
    await ask(args.question);
    const request = chat_requests[chat_requests.length - 1];
    check(request, "no POST /v1/chat/completions was sent");
    const body = JSON.parse(request.postData() || "{}");
    check(body.stream === true && body.messages?.[0]?.content === args.question,
          `the request was not a streamed question: ${request.postData()}`);
    const type = request.response()?.headers()["content-type"] || "";
    check(type.startsWith("text/event-stream"), `the answer came as "${type}", not text/event-stream`);
    const answer = await page.$eval(`${kLastTurn} [data-testid=answer]`, (n) => ({ text: n.innerText.trim(), pieces: n.childNodes.length }));
    check(answer.text && answer.text !== "(empty answer)", "the answer is empty");
    if (args.mock) check(answer.pieces >= 2, `the answer arrived in ${answer.pieces} piece(s), not streamed`);
    console.log(`     answer, ${answer.pieces} piece(s): ${JSON.stringify(answer.text.slice(0, 100))}`);
  });

  await step("the route badge says describe or qa", async () => {
    const badge = await page.$eval(`${kLastTurn} [data-testid=route]`,
                                   (n) => ({ route: n.dataset.route, text: n.innerText, label: n.getAttribute("aria-label") }))
                            .catch(() => null);
    check(badge, "no route badge on the answer");
    check(["describe", "qa"].includes(badge.route) && badge.text.includes(badge.route),
          `the route badge shows "${badge && badge.text}" (data-route "${badge && badge.route}")`);
    check(/confidence \d+%/.test(badge.label) && /(v\d+|no adapter)/.test(badge.text),
          `the route badge lacks adapter version or confidence: "${badge.label}"`);
    console.log(`     ${badge.label}`);
  });

  await step("the sources, or that no product matched", async () => {
    const sources = await page.$eval(`${kLastTurn} [data-testid=sources]`, (n) => ({
      text: n.innerText.trim(),
      items: [...n.querySelectorAll("li")].map((li) => ({ uid: li.dataset.uid, text: li.innerText })),
    })).catch(() => null);
    check(sources, "no sources block on the answer");
    if (sources.items.length === 0) {
      check(/no catalogue product matched/i.test(sources.text), `no sources and no "no catalogue product matched": "${sources.text}"`);
    } else {
      for (const item of sources.items) {
        check(item.uid && item.text.includes(item.uid) && /match \d\.\d\d/.test(item.text), `a source lacks uid or score: "${item.text}"`);
      }
    }
    if (args.mock) check(sources.items.some((i) => i.uid === "0001712799"), `the mock's source is not listed: ${sources.text}`);
    console.log(`     ${sources.text.replace(/\s+/g, " ").slice(0, 160)}`);
  });

  await step("thumbs up is recorded", async () => {
    const posted = page.waitForResponse((r) => r.url().endsWith("/v1/feedback"), { timeout: timeout_ms });
    await page.click(`${kLastTurn} [data-testid=thumbs-up]`);
    const response = await posted;
    const body = JSON.parse(response.request().postData() || "{}");
    check(response.status() === 200, `POST /v1/feedback answered ${response.status()}: ${await response.text()}`);
    check(body.rating === 1 && body.response_id, `the feedback sent was ${response.request().postData()}`);
    await wait_for("the page to show the rating was recorded",
                   (sel) => document.querySelector(sel)?.dataset.state === "recorded",
                   [`${kLastTurn} [data-testid=feedback-status]`], () => text_of(`${kLastTurn} .feedback`));
    check(await page.$eval(`${kLastTurn} [data-testid=thumbs-up]`, (n) => n.getAttribute("aria-pressed")) === "true",
          "the thumbs-up button is not shown pressed");
    if (mock) check(mock.feedback.some((f) => f.response_id === body.response_id && f.rating === 1), "the mock got no rating");
    await shoot(args.screenshot);
  });

  await step("a question about no product offers the closest titles", async () => {
    await ask(args["unknown-question"]);
    const shown = await page.$eval(`${kLastTurn}`, (n) => ({
      answer: n.querySelector("[data-testid=answer]")?.innerText.trim() || "",
      route: n.querySelector("[data-testid=route]")?.dataset.route || "",
      sources: n.querySelectorAll("[data-testid=sources] > ol:not([data-testid=closest]) li").length,
      no_product: !!n.querySelector("[data-testid=no-product]"),
      closest: [...n.querySelectorAll("[data-testid=closest] li")].map((li) => ({
        uid: li.dataset.uid, title: li.querySelector("[data-testid=closest-title]")?.innerText || "", text: li.innerText })),
    }));
    check(/^I don't know that product/.test(shown.answer), `the answer does not say the product is unknown: "${shown.answer}"`);
    check(shown.route === "qa" && shown.sources === 0 && shown.no_product,
          `route "${shown.route}", ${shown.sources} source(s), "no catalogue product matched" ${shown.no_product ? "shown" : "missing"}`);
    check(shown.closest.length >= 1 && shown.closest.length <= 3, `${shown.closest.length} closest titles listed`);
    for (const c of shown.closest) {
      check(c.uid && c.title && /match \d\.\d\d/.test(c.text), `a closest title lacks uid, title or score: "${c.text}"`);
      check(shown.answer.includes(`"${c.title}"`), `the answer does not name the listed title "${c.title}"`);
    }
    // A click on a title puts it in the question box, to ask about it.
    await page.click(`${kLastTurn} [data-testid=closest-title]`);
    const typed = await page.$eval("#question", (n) => n.value);
    check(typed === shown.closest[0].title, `the question box holds "${typed}" after the click, not "${shown.closest[0].title}"`);
    await shoot(args["unknown-screenshot"]);
    await page.$eval("#question", (n) => { n.value = ""; });
    console.log(`     closest: ${shown.closest.map((c) => c.title).join(" | ").slice(0, 160)}`);
  });

  if (args.mock) {
    await step("an error is shown readably (mock)", async () => {
      await ask("mock:error", { expect_error: true });
      const error = await text_of(`${kLastTurn} [data-testid=error]`);
      check(/HTTP 400/.test(error) && /max_input_chars/.test(error), `the error reads "${error}"`);
      await page.$eval("#question", (n) => { n.value = ""; });
    });
  }

  await step("A/B: base and tuned answers side by side", async () => {
    await page.click("#tab-ab");
    check(await page.$eval("#view-ab", (n) => !n.hidden) && await page.$eval("#view-ask", (n) => n.hidden),
          "the A/B tab does not show the A/B view");
    await page.$eval("#ab-question", (n) => { n.value = ""; });
    await page.type("#ab-question", args["ab-question"]);
    const answered = page.waitForResponse((r) => r.url().endsWith("/v1/compare"), { timeout: timeout_ms });
    await page.click("#ab-run");
    const response = await answered;
    check(response.status() === 200, `POST /v1/compare answered ${response.status()}: ${await response.text()}`);
    await wait_for("both A/B answers",
                   () => ["ab-base", "ab-tuned"].every((s) => !["idle", "streaming"].includes(document.querySelector(`[data-testid=${s}]`).dataset.state)),
                   [], () => text_of("#view-ab"));
    for (const side of ["ab-base", "ab-tuned"]) {
      const shown = await page.$eval(`[data-testid=${side}]`, (n) => ({
        state: n.dataset.state,
        text: n.querySelector("[data-testid=answer]")?.innerText.trim() || "",
        timings: n.querySelector("[data-testid=timings]")?.innerText || "",
        route: n.querySelector("[data-testid=route]")?.innerText || "",
      }));
      check(shown.state === "done", `the ${side} side ended in state "${shown.state}": ${await text_of(`[data-testid=${side}]`)}`);
      check(shown.text && shown.text !== "(empty answer)", `the ${side} side has no text`);
      check(/total \d/.test(shown.timings), `the ${side} side shows no timings: "${shown.timings}"`);
      console.log(`     ${side}: ${shown.route.replace(/\s+/g, " ")}; ${shown.timings}; ${JSON.stringify(shown.text.slice(0, 80))}`);
    }
    await shoot(args["ab-screenshot"]);
  });

  await step("the page stayed self-contained and threw nothing", async () => {
    check(outside.length === 0, `the page asked for things outside the gateway: ${outside.join(", ")}`);
    check(page_errors.length === 0, `the page threw: ${page_errors.join("; ")}`);
  });
} catch (err) {
  results.failed++;
  console.error(`FAIL: ${err instanceof CheckFailed ? err.message : err.stack || err}`);
  if (page_errors.length) console.error(`page errors: ${page_errors.join("; ")}`);
  const failure_png = args.screenshot ? args.screenshot.replace(/(\.png)?$/i, "-failure.png")
                                      : join(tmpdir(), "vitrine-web-page-failure.png");
  if (page) await page.screenshot({ path: failure_png, fullPage: true })
    .then(() => console.error(`the page at the failure: ${failure_png}`), () => {});
} finally {
  await browser.close().catch(() => {});
  if (mock) await mock.close();
}
console.log(`web page: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed ? 1 : 0);
