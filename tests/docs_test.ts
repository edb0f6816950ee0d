// The documentation's relative links lead somewhere: every link of the
// README, docs/, CONTRIBUTING.md and bench/README.md to a file of the
// repository names one that exists, and every `#anchor` one that a heading of
// its Markdown target makes (GitHub's rule). The TypeScript examples of the
// same files are type-checked by `deno task test` itself (`deno check
// --doc-only`), before the tests run.

import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";

const ROOT = new URL("../", import.meta.url).pathname;

/** The Markdown files whose links are checked, from the repository's root. */
async function documents(): Promise<string[]> {
  const files = ["README.md", "CONTRIBUTING.md", "bench/README.md"];
  for await (const entry of Deno.readDir(join(ROOT, "docs"))) {
    if (entry.isFile && entry.name.endsWith(".md")) {
      files.push(`docs/${entry.name}`);
    }
  }
  return files.sort();
}

/** The text of a Markdown file outside fenced code blocks, line by line. */
function proseLines(markdown: string): string[] {
  const lines: string[] = [];
  let fence: string | undefined;
  for (const line of markdown.split("\n")) {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === undefined && marker !== undefined) {
      fence = marker;
    } else if (fence !== undefined) {
      if (line.trim().startsWith(fence[0].repeat(fence.length))) {
        fence = undefined;
      }
    } else {
      lines.push(line);
    }
  }
  return lines;
}

/**
 * The anchors a Markdown file's headings make, as GitHub makes them: the
 * heading's text in lower case, without punctuation (letters, digits,
 * spaces, `-` and `_` stay), each space a hyphen; a repeated one gets
 * `-1`, `-2`, ... Also `<a id>` and `<a name>` anchors.
 */
export function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of proseLines(markdown)) {
    for (const [, id] of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) {
      found.add(id);
    }
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const text = heading
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // links and images: their text
      .replace(/<[^>]+>/g, "") // inline HTML
      .replace(/[`*]/g, ""); // code spans and emphasis
    const slug = text.toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, "")
      .replace(/ /g, "-");
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    found.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return found;
}

/** The link targets of a Markdown file, outside code: inline and reference. */
export function links(markdown: string): string[] {
  const targets: string[] = [];
  for (let line of proseLines(markdown)) {
    line = line.replace(/(`+)[^`]*?\1/g, ""); // code spans
    for (const [, target] of line.matchAll(/\]\(\s*<?([^)\s>]*)>?[^)]*\)/g)) {
      targets.push(target);
    }
    const definition = /^\s*\[[^\]]+\]:\s*<?([^\s>]+)>?/.exec(line)?.[1];
    if (definition !== undefined) targets.push(definition);
  }
  return targets;
}

/**
 * The relative links of `files` (paths from `root`) that lead nowhere, as
 * `file: target (why)`.
 */
export async function deadLinks(
  root: string,
  files: string[],
): Promise<string[]> {
  const dead: string[] = [];
  const anchorsOf = new Map<string, Set<string>>();
  const read = async (path: string) => {
    let found = anchorsOf.get(path);
    if (found === undefined) {
      found = anchors(await Deno.readTextFile(join(root, path)));
      anchorsOf.set(path, found);
    }
    return found;
  };
  for (const file of files) {
    const markdown = await Deno.readTextFile(join(root, file));
    for (const target of links(markdown)) {
      // Another scheme (https:, mailto:), or another host: not ours to check.
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//")) {
        continue;
      }
      const hash = target.indexOf("#");
      const path = hash < 0 ? target : target.slice(0, hash);
      const anchor = hash < 0 ? undefined : target.slice(hash + 1);
      const resolved = path === ""
        ? file
        : relative(root, join(root, dirname(file), decodeURI(path)));
      if (resolved.startsWith("..")) {
        dead.push(`${file}: ${target} (outside the repository)`);
        continue;
      }
      let stat: Deno.FileInfo;
      try {
        stat = await Deno.stat(join(root, resolved));
      } catch {
        dead.push(`${file}: ${target} (no file ${resolved})`);
        continue;
      }
      if (anchor === undefined || !stat.isFile || !resolved.endsWith(".md")) {
        continue;
      }
      if (!(await read(resolved)).has(decodeURIComponent(anchor))) {
        dead.push(`${file}: ${target} (no heading makes #${anchor})`);
      }
    }
  }
  return dead;
}

Deno.test("docs: every relative link of README.md, docs/, CONTRIBUTING.md and bench/README.md leads to a file, and every #anchor to a heading", async () => {
  const files = await documents();
  assert.ok(files.includes("docs/live.md"), files.join());
  assert.deepEqual(await deadLinks(ROOT, files), []);
});

Deno.test("docs: the link check finds a missing file, a missing anchor and a link out of the repository, and ignores code and other schemes", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(root, "docs"));
    await Deno.writeTextFile(
      join(root, "docs/a.md"),
      [
        "# Page A",
        "",
        "## Mounting on Deno.serve, Hono or Oak: upgradeWebSocket()",
        "",
        "## Notes",
        "",
        "## Notes",
        "",
        "[ok](#page-a) [ok](#mounting-on-denoserve-hono-or-oak-upgradewebsocket)",
        "[ok](#notes-1) [ok](../README.md) [ok](b.md#why-1006) [ok](https://x.y/#z)",
        "[gone](missing.md) [no anchor](b.md#nowhere) [out](../../etc/passwd)",
        "[no local anchor](#notes-2)",
        "`[in code](nothing.md)`",
        "",
        "```md",
        "[in a block](nothing.md)",
        "```",
        "",
        "[ref]: c.md",
      ].join("\n"),
    );
    await Deno.writeTextFile(join(root, "docs/b.md"), "## Why 1006?\n");
    await Deno.writeTextFile(join(root, "README.md"), "# Readme\n");
    assert.deepEqual(await deadLinks(root, ["docs/a.md"]), [
      "docs/a.md: missing.md (no file docs/missing.md)",
      "docs/a.md: b.md#nowhere (no heading makes #nowhere)",
      "docs/a.md: ../../etc/passwd (outside the repository)",
      "docs/a.md: #notes-2 (no heading makes #notes-2)",
      "docs/a.md: c.md (no file docs/c.md)",
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
