/** The id of a Stripe expandable field: the id itself, or the expanded object's (null when unset). */
export function idOf(value: string | { id: string } | null | undefined): string | null {
  return typeof value === "string" ? value : (value?.id ?? null);
}
