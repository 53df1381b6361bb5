// Every relative link in the repository's Markdown resolves (part of `npm test`): for each tracked
// *.md file, each `[text](path)`, `![alt](path)`, `[text](path#anchor)`, `[text](#anchor)` and
// reference definition `[label]: path` must name an existing file, and an anchor must match a
// heading of the target Markdown file (GitHub's slugs) or an explicit `<a id="…">` / `<a name="…">`.
// External links (a scheme such as https: or mailto:) are not fetched. Links inside code are text.
// Prints each broken link as file:line and exits 1 if there is one. No dependencies.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(import.meta.url), "..", "..");

function markdownFiles() {
  try {
    return execFileSync("git", ["ls-files", "-z", "--", "*.md"], { cwd: root, encoding: "utf8" }).split("\0").filter(Boolean);
  } catch {
    // Not a git checkout (an unpacked archive): every Markdown file outside node_modules.
    const found = [];
    const walk = (dir) => {
      for (const name of readdirSync(join(root, dir))) {
        if (name === "node_modules" || name.startsWith(".")) continue;
        const path = join(dir, name);
        if (statSync(join(root, path)).isDirectory()) walk(path);
        else if (name.endsWith(".md")) found.push(path.split(sep).join("/"));
      }
    };
    walk(".");
    return found.map((p) => p.replace(/^\.\//, ""));
  }
}

/**
 * The lines of a Markdown file with code blanked out: fenced blocks, indented blocks are left
 * (the repository's Markdown does not use them for code) and inline code spans become spaces, so
 * brackets inside code are never read as links. Line numbers are kept.
 */
function proseLines(text) {
  const lines = text.split(/\r?\n/);
  let fence = null;
  return lines.map((line) => {
    const marker = line.match(/^\s{0,3}(`{3,}|~{3,})/);
    if (fence) {
      if (marker && marker[1][0] === fence[0] && marker[1].length >= fence.length && !line.slice(line.indexOf(marker[1]) + marker[1].length).trim()) fence = null;
      return "";
    }
    if (marker) {
      fence = marker[1];
      return "";
    }
    return line.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (span) => " ".repeat(span.length));
  });
}

/** GitHub's heading slug (github-slugger): lower case; drop what is not a letter, mark, number, `_`, `-` or space; spaces to `-`. */
function slug(heading) {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{Nd}\p{Nl}\p{Pc}\p{Alphabetic} -]/gu, "")
    .replace(/ /g, "-");
}

/** A heading's text as GitHub renders it: links become their text, images their alt, code its content, HTML tags nothing. */
function headingText(raw) {
  return raw
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/`([^`]*)`/g, "$1")
    .replace(/<[^>]+>/g, "")
    .trim();
}

const anchorCache = new Map();

/** Every anchor a Markdown file defines: its headings' slugs (duplicates get -1, -2, …) and explicit ids. */
function anchorsOf(file) {
  if (anchorCache.has(file)) return anchorCache.get(file);
  const anchors = new Set();
  const text = readFileSync(join(root, file), "utf8");
  // Which lines are headings is read with code blanked out; a heading's text from the raw line (code spans count).
  const raw = text.split(/\r?\n/);
  const prose = proseLines(text);
  const occurrences = new Map();
  const add = (heading) => {
    const base = slug(headingText(heading));
    let id = base;
    while (occurrences.has(id)) {
      occurrences.set(base, occurrences.get(base) + 1);
      id = `${base}-${occurrences.get(base)}`;
    }
    occurrences.set(id, 0);
    anchors.add(id);
  };
  for (const [i, line] of prose.entries()) {
    for (const [, id] of line.matchAll(/<a\s[^>]*?(?:id|name)\s*=\s*["']([^"']+)["'][^>]*>/gi)) anchors.add(id);
    if (/^\s{0,3}#{1,6}\s/.test(line)) {
      add(raw[i].replace(/^\s{0,3}#{1,6}\s+/, "").replace(/\s+#+\s*$/, ""));
      continue;
    }
    // A setext heading: a line of text underlined with === or ---.
    const next = prose[i + 1];
    if (next !== undefined && /^\s{0,3}(=+|-+)\s*$/.test(next) && line.trim() && !/^\s*([-*+>|]|\d+[.)]\s)/.test(line)) add(raw[i].trim());
  }
  anchorCache.set(file, anchors);
  return anchors;
}

/** The links of one line: inline links and images, and reference definitions. */
function linksOf(line) {
  const found = [];
  for (const m of line.matchAll(/!?\[(?:[^[\]]|\[[^[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+["'(][^)]*)?\)/g)) found.push(m[1]);
  const definition = line.match(/^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)/);
  if (definition) found.push(definition[1]);
  return found.map((target) => target.replace(/^<(.*)>$/, "$1"));
}

const problems = [];
for (const file of markdownFiles()) {
  if (!existsSync(join(root, file))) continue; // deleted in the work tree, not yet in the index
  proseLines(readFileSync(join(root, file), "utf8")).forEach((line, i) => {
    for (const target of linksOf(line)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//")) continue;
      const hash = target.indexOf("#");
      const pathPart = decodeURIComponent(hash === -1 ? target : target.slice(0, hash));
      const anchor = hash === -1 ? null : decodeURIComponent(target.slice(hash + 1));
      const resolved = pathPart
        ? normalize(pathPart.startsWith("/") ? pathPart.slice(1) : join(dirname(file), pathPart))
            .split(sep)
            .join("/")
        : file;
      const where = `${file}:${i + 1}: (${target})`;
      if (resolved.startsWith("..")) {
        problems.push(`${where} points outside the repository`);
        continue;
      }
      if (!existsSync(join(root, resolved))) {
        problems.push(`${where} names ${resolved}, which does not exist`);
        continue;
      }
      if (anchor === null || anchor === "") continue;
      const markdown = statSync(join(root, resolved)).isDirectory() ? join(resolved, "README.md") : resolved;
      if (!markdown.endsWith(".md")) continue; // #L10 and the like on source files are GitHub's, not headings
      if (!existsSync(join(root, markdown))) {
        problems.push(`${where} has an anchor, but ${relative(root, join(root, resolved))} has no README.md`);
        continue;
      }
      if (!anchorsOf(markdown).has(anchor)) problems.push(`${where} names #${anchor}, which is no heading or id in ${markdown}`);
    }
  });
}

if (problems.length) {
  console.log(problems.join("\n"));
  console.log(`${problems.length} broken link${problems.length === 1 ? "" : "s"}`);
  process.exit(1);
}
