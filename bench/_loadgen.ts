/**
 * Builds and runs the C load generator (bench/loadgen.c): compiled with `cc`
 * into a temporary directory once per process, run as a subprocess whose
 * stdout is one JSON object and whose stderr marks the measured window.
 *
 * @module
 */

/** The compiler's answer when there is none, or the build failed. */
export class LoadgenUnavailableError extends Error {
  override name = "LoadgenUnavailableError";
}

/** What one run of the generator measured (see loadgen.c for each mode). */
export type LoadgenResult = Record<string, number | string>;

/** Options for {@linkcode runLoadgen}. */
export interface LoadgenRunOptions {
  /** Called as the measured window opens. */
  onCountStart?: () => void;
  /** Called as the measured window closes. */
  onCountEnd?: () => void;
  /** Called with each other line the generator writes to stderr. */
  onNote?: (line: string) => void;
}

let built: Promise<{ binary: string; dir: string }> | undefined;

/**
 * Compiles bench/loadgen.c (`cc -O2`), once per process.
 *
 * @returns The binary's path.
 * @throws {LoadgenUnavailableError} When `cc` is missing or fails.
 */
export async function buildLoadgen(): Promise<string> {
  built ??= (async () => {
    const source = new URL("./loadgen.c", import.meta.url).pathname;
    const dir = await Deno.makeTempDir({ prefix: "scope-ws-loadgen-" });
    const binary = `${dir}/loadgen`;
    let output: Deno.CommandOutput;
    try {
      output = await new Deno.Command("cc", {
        args: ["-O2", "-o", binary, source],
        stdin: "null",
      }).output();
    } catch (error) {
      await Deno.remove(dir, { recursive: true });
      throw new LoadgenUnavailableError(`cc could not run: ${error}`);
    }
    if (!output.success) {
      await Deno.remove(dir, { recursive: true });
      throw new LoadgenUnavailableError(
        `cc failed: ${new TextDecoder().decode(output.stderr).trim()}`,
      );
    }
    return { binary, dir };
  })();
  try {
    return (await built).binary;
  } catch (error) {
    built = undefined;
    throw error;
  }
}

/** Removes the compiled generator, if any. */
export async function removeLoadgen(): Promise<void> {
  const current = built;
  built = undefined;
  if (!current) return;
  const { dir } = await current.catch(() => ({ dir: undefined }));
  if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
}

/**
 * Runs the generator with `args` and returns its JSON result.
 *
 * @param args Its flags (`--mode`, `--port`, …).
 * @param options Callbacks for the measured window and notes.
 * @returns The parsed result.
 */
export async function runLoadgen(
  args: string[],
  options: LoadgenRunOptions = {},
): Promise<LoadgenResult> {
  const binary = await buildLoadgen();
  const child = new Deno.Command(binary, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const notes: string[] = [];
  const stderr = (async () => {
    let text = "";
    for await (
      const chunk of child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      text += chunk;
      let end: number;
      while ((end = text.indexOf("\n")) !== -1) {
        const line = text.slice(0, end);
        text = text.slice(end + 1);
        if (line === "#start") options.onCountStart?.();
        else if (line === "#end") options.onCountEnd?.();
        else {
          notes.push(line);
          options.onNote?.(line);
        }
      }
    }
    if (text) notes.push(text);
  })();
  const [stdout, status] = await Promise.all([
    new Response(child.stdout).text(),
    child.status,
    stderr,
  ]);
  if (!status.success) {
    throw new Error(
      `The load generator failed (exit ${status.code}): ${
        notes.slice(-3).join(" / ") || "no message"
      }`,
    );
  }
  return JSON.parse(stdout) as LoadgenResult;
}
