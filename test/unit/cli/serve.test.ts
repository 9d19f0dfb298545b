/**
 * `webtune serve` in-process on the embedded demo model, driven by OpenAI's own client: the models it lists, greedy
 * answers equal to core's generate (the oracle) for the base model and for an adapter, chat and streaming, stop
 * strings, seeds, 16 concurrent requests, OpenAI-shaped errors, a client that leaves mid-stream, and /metrics.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI, { BadRequestError, NotFoundError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  loadModel,
  LoraModel,
  saveAdapterToDirectory,
  type GenerateOptions,
  type PretrainedModel,
} from "@webtune/core";
import {
  startServer,
  type RequestLogRecord,
  type RunningServer,
} from "../../../packages/cli/src/serve/index.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";

const DEMO_BASE = fileURLToPath(
  new URL("../../../demo/public/models/webtune-demo-base", import.meta.url),
);
const BASE = "webtune-demo-base";
const ADAPTER = "dictionary-x";
const PROMPT = "Cat, n.";
/** Fits both core's ChatMessage and OpenAI's message params. */
const CHAT: { role: "system" | "user"; content: string }[] = [
  { role: "system", content: "You write dictionary entries." },
  { role: "user", content: "Define a cat." },
];

let model: PretrainedModel;
let peft: LoraModel;
let server: RunningServer;
let client: OpenAI;
const logs: RequestLogRecord[] = [];

beforeAll(async () => {
  if (!(await startGpu())) return;
  model = await loadModel(DEMO_BASE, { cache: false });
  // An adapter with random A and B (init_lora_weights false), so that it answers differently from the base;
  // saved and loaded back from its folder, as `webtune serve --adapter` loads one.
  const maker = new LoraModel(model);
  maker.addAdapter(
    "made",
    {
      r: 4,
      loraAlpha: 16,
      targetModules: ["q_proj", "v_proj"],
      initLoraWeights: false,
    },
    { seed: 3 },
  );
  const dir = mkdtempSync(join(tmpdir(), "webtune-serve-adapter-"));
  await saveAdapterToDirectory(await maker.saveAdapter(), dir);
  maker.dispose();
  peft = new LoraModel(model);
  await peft.loadAdapter(ADAPTER, dir);
  server = await startServer({
    model,
    peft,
    port: 0,
    log: (r) => logs.push(r),
  });
  client = new OpenAI({
    baseURL: `${server.url}/v1`,
    apiKey: "unused",
    maxRetries: 0,
  });
});

afterAll(async () => {
  await server?.close();
  peft?.dispose();
  model?.dispose();
  disposeRuntime();
});

/** Core's own answer, the oracle: generate on the same LoraModel with the adapter chosen explicitly. */
async function oracle(
  adapter: string | undefined,
  prompt: string | number[],
  options: GenerateOptions,
) {
  if (adapter === undefined)
    return peft.withAdaptersDisabled(() => peft.generate(prompt, options));
  peft.setAdapter(adapter);
  return peft.generate(prompt, options);
}

const chatPrompt = () =>
  model.tokenizer!.applyChatTemplate(CHAT, {
    addGenerationPrompt: true,
    tokenize: true,
  });

/** The log record of the request whose response ended last, once it is there. */
async function nextLog(after: number): Promise<RequestLogRecord> {
  for (let i = 0; i < 200 && logs.length <= after; i++)
    await new Promise((resolve) => setTimeout(resolve, 10));
  return logs[after]!;
}

/** The value of one Prometheus sample, e.g. metric('webtune_requests_total{route="/v1/completions",...}'). */
async function metric(sample: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

describe("webtune serve", () => {
  it("lists the base model and each adapter, and retrieves one by id or by the alias base", async (ctx) => {
    await needGpu(ctx);
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual([BASE, ADAPTER]);
    for (const m of list.data) {
      expect(m.object).toBe("model");
      expect(m.owned_by).toBe("webtune");
      expect(Math.abs(m.created - Date.now() / 1000)).toBeLessThan(600);
    }
    expect((await client.models.retrieve("base")).id).toBe(BASE);
    expect((await client.models.retrieve(ADAPTER)).id).toBe(ADAPTER);
  });

  it("answers a greedy completion with core's own greedy continuation, in OpenAI's shape", async (ctx) => {
    await needGpu(ctx);
    const expected = await oracle(undefined, PROMPT, {
      maxNewTokens: 12,
      temperature: 0,
    });
    const answer = await client.completions.create({
      model: BASE,
      prompt: PROMPT,
      max_tokens: 12,
      temperature: 0,
    });
    expect(answer.id).toMatch(/^cmpl-[0-9a-f]{32}$/);
    expect(answer.object).toBe("text_completion");
    expect(answer.model).toBe(BASE);
    expect(answer.choices).toEqual([
      {
        text: expected.text,
        index: 0,
        logprobs: null,
        finish_reason: expected.stopReason === "length" ? "length" : "stop",
      },
    ]);
    expect(expected.text.length).toBeGreaterThan(10);
    const promptTokens = model.tokenizer!.encode(PROMPT).length;
    expect(answer.usage).toEqual({
      prompt_tokens: promptTokens,
      completion_tokens: expected.ids.length,
      total_tokens: promptTokens + expected.ids.length,
    });
  });

  it("answers with the adapter that `model` names, which differs from the base", async (ctx) => {
    await needGpu(ctx);
    const options = { maxNewTokens: 10, temperature: 0 };
    const base = await oracle(undefined, PROMPT, options);
    const adapted = await oracle(ADAPTER, PROMPT, options);
    expect(adapted.text).not.toBe(base.text);
    const ask = (m: string) =>
      client.completions.create({
        model: m,
        prompt: [PROMPT],
        max_tokens: 10,
        temperature: 0,
      });
    const viaAdapter = await ask(ADAPTER);
    expect(viaAdapter.model).toBe(ADAPTER);
    expect(viaAdapter.choices[0]!.text).toBe(adapted.text);
    const viaAlias = await ask("base");
    expect(viaAlias.model).toBe(BASE);
    expect(viaAlias.choices[0]!.text).toBe(base.text);
  });

  it("answers a chat with the chat template's prompt, whole and streamed alike", async (ctx) => {
    await needGpu(ctx);
    const expected = await oracle(undefined, chatPrompt(), {
      maxNewTokens: 10,
      temperature: 0,
    });
    const request = {
      model: BASE,
      messages: CHAT,
      max_completion_tokens: 10,
      temperature: 0,
    };
    const whole = await client.chat.completions.create(request);
    expect(whole.id).toMatch(/^chatcmpl-/);
    expect(whole.object).toBe("chat.completion");
    expect(whole.choices).toEqual([
      {
        index: 0,
        message: { role: "assistant", content: expected.text, refusal: null },
        logprobs: null,
        finish_reason: expected.stopReason === "length" ? "length" : "stop",
      },
    ]);
    expect(whole.usage!.prompt_tokens).toBe(chatPrompt().length);
    expect(whole.usage!.completion_tokens).toBe(expected.ids.length);

    const stream = await client.chat.completions.create({
      ...request,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta).toEqual({
      role: "assistant",
      content: "",
    });
    const pieces = chunks.slice(1, -2);
    expect(pieces.length).toBeGreaterThan(1);
    for (const c of chunks) {
      expect(c.object).toBe("chat.completion.chunk");
      expect(c.id).toBe(chunks[0]!.id);
    }
    const content = pieces
      .map((c) => c.choices[0]!.delta.content ?? "")
      .join("");
    expect(content).toBe(whole.choices[0]!.message.content);
    const finish = chunks.at(-2)!;
    expect(finish.choices[0]!.delta).toEqual({});
    expect(finish.choices[0]!.finish_reason).toBe(
      whole.choices[0]!.finish_reason,
    );
    const usage = chunks.at(-1)!;
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual(whole.usage);
  });

  it("streams /v1/completions as server-sent events that end with [DONE]", async (ctx) => {
    await needGpu(ctx);
    const response = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({
        model: ADAPTER,
        prompt: PROMPT,
        max_tokens: 8,
        temperature: 0,
        stream: true,
      }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = (await response.text()).split("\n\n").filter(Boolean);
    expect(events.at(-1)).toBe("data: [DONE]");
    const chunks = events.slice(0, -1).map(
      (e) =>
        JSON.parse(e.replace(/^data: /, "")) as {
          object: string;
          choices: { text: string; finish_reason: string | null }[];
        },
    );
    const expected = await oracle(ADAPTER, PROMPT, {
      maxNewTokens: 8,
      temperature: 0,
    });
    expect(chunks.every((c) => c.object === "text_completion")).toBe(true);
    expect(chunks.map((c) => c.choices[0]!.text).join("")).toBe(expected.text);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe(
      expected.stopReason === "length" ? "length" : "stop",
    );
    expect(
      chunks.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null),
    ).toBe(true);
  });

  it("stops before a stop string, whole and streamed alike, never streaming part of it", async (ctx) => {
    await needGpu(ctx);
    const full = await oracle(undefined, PROMPT, {
      maxNewTokens: 24,
      temperature: 0,
    });
    // A stop string of several characters from the middle of the greedy answer.
    const stop = full.text.slice(12, 17);
    const expected = full.text.slice(0, full.text.indexOf(stop));
    expect(expected.length).toBeGreaterThan(5);
    const request = {
      model: BASE,
      prompt: PROMPT,
      max_tokens: 24,
      temperature: 0,
      stop: [stop, "never in the text"],
    };
    const whole = await client.completions.create(request);
    expect(whole.choices[0]!.text).toBe(expected);
    expect(whole.choices[0]!.finish_reason).toBe("stop");
    const stream = await client.completions.create({
      ...request,
      stream: true,
    });
    let streamed = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      streamed += chunk.choices[0]!.text;
      finish = chunk.choices[0]!.finish_reason ?? finish;
      // Nothing sent may go past the text that the stop string ends.
      expect(expected.startsWith(streamed)).toBe(true);
    }
    expect(streamed).toBe(expected);
    expect(finish).toBe("stop");
  });

  it("samples at temperature 1 the same answer for the same seed, as core does", async (ctx) => {
    await needGpu(ctx);
    const ask = (seed: number) =>
      client.completions
        .create({
          model: ADAPTER,
          prompt: PROMPT,
          max_tokens: 12,
          temperature: 1,
          seed,
        })
        .then((a) => a.choices[0]!.text);
    const [a, b, c] = [await ask(7), await ask(7), await ask(8)];
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    const expected = await oracle(ADAPTER, PROMPT, {
      maxNewTokens: 12,
      temperature: 1,
      seed: 7,
    });
    expect(a).toBe(expected.text);
  });

  it("answers 16 concurrent requests, one at a time on the GPU, each as it would alone", async (ctx) => {
    await needGpu(ctx);
    const words =
      "Cat Dog Horse Apple Run Word List Tree Stone Water Fire Light Bird Fish House Bread".split(
        " ",
      );
    const ask = (word: string, i: number) =>
      client.completions
        .create({
          model: i % 2 ? ADAPTER : BASE,
          prompt: `${word}, n.`,
          max_tokens: 6,
          temperature: 0,
        })
        .then((a) => a.choices[0]!.text);
    const alone: string[] = [];
    for (const [i, word] of words.entries()) alone.push(await ask(word, i));
    const before = logs.length;
    const together = await Promise.all(words.map(ask));
    expect(together).toEqual(alone);
    expect(new Set(alone).size).toBeGreaterThan(8);
    // They waited for each other: the last to get the GPU queued while others generated.
    const records = logs.slice(before);
    expect(records).toHaveLength(16);
    expect(records.every((r) => r.status === 200)).toBe(true);
    expect(Math.max(...records.map((r) => r.queue_ms!))).toBeGreaterThan(
      Math.min(...records.map((r) => r.latency_ms)),
    );
  });

  it("refuses malformed JSON and wrongly typed or out-of-range fields with a 400 naming the field", async (ctx) => {
    await needGpu(ctx);
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: '{"model": "base", "messages": [',
    });
    expect(response.status).toBe(400);
    const body = (await response.json()) as {
      error: { message: string; type: string; code: string };
    };
    expect(body.error.type).toBe("invalid_request_error");
    expect(body.error.code).toBe("invalid_json");
    expect(body.error.message).toMatch(/could not parse the JSON body/);

    const refused = async (
      request: Record<string, unknown>,
      param: string,
      message: RegExp,
    ) => {
      const error = await client.completions
        .create({
          model: BASE,
          prompt: PROMPT,
          max_tokens: 4,
          ...request,
        } as OpenAI.CompletionCreateParamsNonStreaming)
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(error).toBeInstanceOf(BadRequestError);
      const bad = error as BadRequestError;
      expect(bad.status).toBe(400);
      expect(bad.param).toBe(param);
      expect(bad.message).toMatch(message);
    };
    await refused(
      { max_tokens: "4" },
      "max_tokens",
      /'max_tokens' must be an integer, got the string "4"/,
    );
    await refused(
      { temperature: 2.5 },
      "temperature",
      /between 0 and 2, got 2.5/,
    );
    await refused({ n: 2 }, "n", /one choice/);
    await refused({ echo: true }, "echo", /not supported/);
    await refused({ prompt: ["a", "b"] }, "prompt", /array of 2 prompts/);
    await refused({ stop: ["a", "b", "c", "d", "e"] }, "stop", /at most 4/);
    await refused(
      { best_of_all: 1 },
      "best_of_all",
      /Unrecognized request argument/,
    );
    await refused(
      { prompt: "word ".repeat(600) },
      "prompt",
      /maximum context length is 512 tokens.*\(\d+ in the prompt, 4 for the completion\)/,
    );
    const chat = await client.chat.completions
      .create({
        model: BASE,
        messages: [
          {
            role: "user",
            content: [{ type: "image_url", image_url: { url: "x" } }],
          },
        ],
      })
      .then(
        () => undefined,
        (e: unknown) => e as BadRequestError,
      );
    expect(chat).toBeInstanceOf(BadRequestError);
    expect(chat!.param).toBe("messages[0].content[0]");
  });

  it("answers an unknown model, route or method, and an oversize body, as OpenAI does", async (ctx) => {
    await needGpu(ctx);
    const error = await client.chat.completions
      .create({ model: "gpt-4o", messages: CHAT })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(NotFoundError);
    const notFound = error as NotFoundError;
    expect(notFound.status).toBe(404);
    expect(notFound.code).toBe("model_not_found");
    expect(notFound.param).toBe("model");
    expect(notFound.message).toMatch(
      /The model 'gpt-4o' does not exist.*'webtune-demo-base', 'dictionary-x'/,
    );

    const route = await fetch(`${server.url}/v1/embeddings`, {
      method: "POST",
      body: "{}",
    });
    expect(route.status).toBe(404);
    expect(
      ((await route.json()) as { error: { code: string } }).error.code,
    ).toBe("unknown_url");
    const method = await fetch(`${server.url}/v1/completions`);
    expect(method.status).toBe(405);
    expect(method.headers.get("allow")).toBe("POST");
    const big = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ model: BASE, prompt: "a".repeat(2 ** 21) }),
    });
    expect(big.status).toBe(413);
    expect(
      ((await big.json()) as { error: { message: string } }).error.message,
    ).toMatch(/at most 1048576/);
  });

  it("stops the generation of a client that leaves mid-stream, and answers the next request", async (ctx) => {
    await needGpu(ctx);
    // "The word" runs greedily to the 48-token limit without an EOS.
    const full = await oracle(undefined, "The word", {
      maxNewTokens: 48,
      temperature: 0,
    });
    expect(full.ids).toHaveLength(48);
    const before = logs.length;
    const controller = new AbortController();
    const stream = await client.completions.create(
      {
        model: BASE,
        prompt: "The word",
        max_tokens: 48,
        temperature: 0,
        stream: true,
      },
      { signal: controller.signal },
    );
    let received = "";
    // OpenAI's client ends the iteration quietly when its request is aborted.
    for await (const chunk of stream) {
      received += chunk.choices[0]!.text;
      if (received.length > 0) controller.abort();
    }
    expect(received.length).toBeGreaterThan(0);
    expect(full.text.startsWith(received)).toBe(true);
    const record = await nextLog(before);
    expect(record.status).toBe(499);
    expect(record.completion_tokens).toBeGreaterThan(0);
    expect(record.completion_tokens).toBeLessThan(24);

    const next = await client.completions.create({
      model: BASE,
      prompt: PROMPT,
      max_tokens: 12,
      temperature: 0,
    });
    const expected = await oracle(undefined, PROMPT, {
      maxNewTokens: 12,
      temperature: 0,
    });
    expect(next.choices[0]!.text).toBe(expected.text);
  });

  it("counts requests, tokens and times in /metrics, and logs one record per request", async (ctx) => {
    await needGpu(ctx);
    const ok = `webtune_requests_total{route="/v1/completions",model="${ADAPTER}",status="200"}`;
    const missing = `webtune_requests_total{route="/v1/chat/completions",model="",status="404"}`;
    const generated = `webtune_generated_tokens_total{model="${ADAPTER}"}`;
    const prompted = `webtune_prompt_tokens_total{model="${ADAPTER}"}`;
    const ttft = `webtune_time_to_first_token_seconds_count{route="/v1/completions",model="${ADAPTER}"}`;
    const start = await Promise.all(
      [ok, missing, generated, prompted, ttft].map(metric),
    );
    const before = logs.length;
    const answers: OpenAI.Completion[] = [];
    for (const prompt of ["Dog, n.", "Tree, n."])
      answers.push(
        await client.completions.create({
          model: ADAPTER,
          prompt,
          max_tokens: 5,
          temperature: 0,
        }),
      );
    await client.chat.completions
      .create({ model: "nope", messages: CHAT })
      .catch(() => undefined);
    const end = await Promise.all(
      [ok, missing, generated, prompted, ttft].map(metric),
    );
    const sum = (key: "completion_tokens" | "prompt_tokens") =>
      answers.reduce((n, a) => n + a.usage![key], 0);
    expect(end[0]! - start[0]!).toBe(2);
    expect(end[1]! - start[1]!).toBe(1);
    expect(end[2]! - start[2]!).toBe(sum("completion_tokens"));
    expect(end[3]! - start[3]!).toBe(sum("prompt_tokens"));
    expect(end[4]! - start[4]!).toBe(2);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(text).toMatch(/^webtune_queue_depth 0$/m);
    expect(text).toMatch(/^webtune_requests_in_flight 0$/m);
    expect(text).toMatch(/^# TYPE webtune_tokens_per_second histogram$/m);
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);

    // One record per request: the metrics scrapes (5 + 5 + 1 before this) and the three API calls.
    const records = logs.slice(before);
    const api = records.filter((r) => r.route !== "/metrics");
    expect(api.map((r) => [r.route, r.status])).toEqual([
      ["/v1/completions", 200],
      ["/v1/completions", 200],
      ["/v1/chat/completions", 404],
    ]);
    const first = api[0]!;
    expect(first.model).toBe(ADAPTER);
    expect(first.prompt_tokens).toBe(answers[0]!.usage!.prompt_tokens);
    expect(first.completion_tokens).toBe(answers[0]!.usage!.completion_tokens);
    expect(first.ttft_ms).toBeGreaterThan(0);
    expect(first.ttft_ms).toBeLessThanOrEqual(first.latency_ms);
    expect(first.tokens_per_s).toBeGreaterThan(0);
    expect(api[2]!.error).toMatch(/'nope' does not exist/);
  });

  it("on close, stops a running stream with a 503 error event and frees the port", async (ctx) => {
    await needGpu(ctx);
    const second = await startServer({
      model,
      peft,
      port: 0,
      log: () => undefined,
    });
    const secondClient = new OpenAI({
      baseURL: `${second.url}/v1`,
      apiKey: "unused",
      maxRetries: 0,
    });
    const stream = await secondClient.completions.create({
      model: BASE,
      prompt: "The word",
      max_tokens: 48,
      temperature: 0,
      stream: true,
    });
    const reading = (async () => {
      let closing: Promise<void> | undefined;
      for await (const chunk of stream)
        if (chunk.choices[0]!.text) closing ??= second.close();
      await closing;
    })();
    await expect(reading).rejects.toThrow(/shutting down/);
    await second.close();
    await expect(fetch(`${second.url}/health`)).rejects.toThrow();
  });
});
