/** `webtune generate`: stream a continuation of --prompt to stdout. */
import { loadForCommand } from "./common.js";

export async function generateCommand(o: {
  model: string;
  adapter?: string;
  prompt: string;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}): Promise<void> {
  const { model, peft } = await loadForCommand(o.model, o.adapter);
  let printed = "";
  const result = await peft.generate(o.prompt, {
    maxNewTokens: o.maxNewTokens,
    temperature: o.temperature,
    topK: o.topK,
    topP: o.topP,
    seed: o.seed,
    onToken: ({ text }) => {
      // Decoding the whole continuation each time keeps multi-byte characters whole; print what is new.
      if (text.startsWith(printed))
        process.stdout.write(text.slice(printed.length));
      printed = text;
    },
  });
  process.stdout.write(`\n`);
  process.stderr.write(
    `[${result.ids.length} tokens, stopped by ${result.stopReason}]\n`,
  );
  peft.dispose();
  model.dispose();
}
