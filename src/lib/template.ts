/** Merge tags available to the 402 body and to behavioral emails. */
export const MERGE_TAGS = [
  "customer.id",
  "customer.name",
  "customer.first_name",
  "customer.email",
  "balance.available",
  "balance.available_cents",
  "balance.minimum",
  "balance.minimum_cents",
  "request.price",
  "request.price_cents",
  "topup_url",
  "credit.expiring_soon",
  "key.cap",
  "portal_url",
] as const;
export type MergeTag = (typeof MERGE_TAGS)[number];
/** Merge tags only the `auto_topup_changed` notice has (on top of MERGE_TAGS). */
export const NOTICE_MERGE_TAGS = ["auto_topup.change"] as const;
export type MergeValues = Record<MergeTag, string | number>;

const TAG = /\{\{\s*([^{}]*?)\s*\}\}/g;
const WHOLE_TAG = /^\{\{\s*([^{}]*?)\s*\}\}$/;
const KNOWN = new Set<string>(MERGE_TAGS);

/** Every unknown merge tag used anywhere in a string or a nested JSON value, with its path; `extra` tags are known too. */
export function unknownMergeTags(value: unknown, path = "", extra: readonly string[] = []): string[] {
  if (typeof value === "string") {
    return [...value.matchAll(TAG)]
      .map((m) => m[1] ?? "")
      .filter((tag) => !KNOWN.has(tag) && !extra.includes(tag))
      .map((tag) => `${path}: {{${tag}}}`);
  }
  if (Array.isArray(value)) return value.flatMap((v, i) => unknownMergeTags(v, `${path}[${i}]`, extra));
  if (value && typeof value === "object") {
    return Object.entries(value).flatMap(([k, v]) => unknownMergeTags(v, path ? `${path}.${k}` : k, extra));
  }
  return [];
}

export function renderString(template: string, values: MergeValues & Partial<Record<string, string | number>>): string {
  return template.replace(TAG, (_, tag: string) => String(values[tag]));
}

/** Renders every string leaf; a string that is exactly one numeric tag becomes that number. */
export function renderJson(template: unknown, values: MergeValues): unknown {
  if (typeof template === "string") {
    const whole = WHOLE_TAG.exec(template);
    if (whole && typeof values[whole[1] as MergeTag] === "number") return values[whole[1] as MergeTag];
    return renderString(template, values);
  }
  if (Array.isArray(template)) return template.map((v) => renderJson(v, values));
  if (template && typeof template === "object") {
    return Object.fromEntries(Object.entries(template).map(([k, v]) => [k, renderJson(v, values)]));
  }
  return template;
}

export function escapeHtmlText(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c);
}

export function escapeHtml(values: MergeValues): MergeValues {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, typeof v === "string" ? escapeHtmlText(v) : v])) as MergeValues;
}

export function firstName(name: string | null | undefined): string {
  return (name ?? "").trim().split(/\s+/)[0] ?? "";
}
