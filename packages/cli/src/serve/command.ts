/**
 * `webtune serve`: load a model and its adapters on Dawn, start the server, print its URL, and on SIGINT or
 * SIGTERM close it and free the model. A thin wrapper: everything else is startServer's.
 */
import { basename } from "node:path";
import { ConfigError } from "@webtune/core";
import { loadForCommand } from "../common.js";
import { startServer } from "./server.js";

export interface ServeFlags {
  model: string;
  /** Each `name=dir`, or `dir` alone (named after its folder). */
  adapter: string[];
  host: string;
  port: number;
}

/** commander's collector for a repeatable --adapter. */
export function collectAdapter(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** `name=dir`, or `dir` alone: a "=" counts only after a valid adapter name, so paths may hold one. */
export function parseAdapterFlag(value: string): { name: string; dir: string } {
  const named = /^([\w.-]+)=(.+)$/.exec(value);
  if (named) return { name: named[1]!, dir: named[2]! };
  const name = basename(value.replace(/[\\/]+$/, ""));
  if (!/^[\w.-]+$/.test(name))
    throw new ConfigError(
      `--adapter ${value}: its folder name "${name}" cannot name a model (letters, digits, "_", "-", "."); ` +
        `give one as --adapter <name>=<dir>.`,
    );
  return { name, dir: value };
}

/** Whether `host` accepts connections from this machine only. */
export function isLoopback(host: string): boolean {
  return (
    host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host)
  );
}

export async function serveCommand(o: ServeFlags): Promise<void> {
  if (o.port > 65535)
    throw new ConfigError(`--port must be at most 65535, got ${o.port}.`);
  const adapters = o.adapter.map(parseAdapterFlag);
  const names = adapters.map((a) => a.name);
  const repeated = names.find((n, i) => names.indexOf(n) !== i);
  if (repeated !== undefined)
    throw new ConfigError(
      `Two --adapter flags are named "${repeated}"; give each its own name with --adapter <name>=<dir>.`,
    );
  const { model, peft } = await loadForCommand(o.model);
  for (const { name, dir } of adapters) await peft.loadAdapter(name, dir);
  const server = await startServer({ model, peft, host: o.host, port: o.port });
  if (!isLoopback(o.host))
    process.stderr.write(
      `warning: listening on ${o.host}, not only this machine, and the server has no authentication: ` +
        `anyone who can reach ${server.url} can use the model. Put it behind an authenticating proxy.\n`,
    );
  process.stdout.write(
    `webtune serve: ${server.url}/v1 ready (models: ${server.models.map((m) => m.id).join(", ")})\n`,
  );
  const signal = await untilSignal();
  process.stderr.write(`webtune serve: ${signal}, closing\n`);
  await server.close();
  peft.dispose();
  model.dispose();
}

/** The first SIGINT or SIGTERM; a second one gets Node's default (exit at once). */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
      resolve(signal);
    };
    process.once("SIGINT", on);
    process.once("SIGTERM", on);
  });
}
